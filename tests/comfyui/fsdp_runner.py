"""The training step under FSDP2 on CPU (gloo): python -m torch.distributed.run --nproc_per_node 2 fsdp_runner.py
CONFIG.json OUT.safetensors. accelerate runs FSDP only on GPUs, so this applies torch's ``fully_shard`` as accelerate's
FSDP2 config does (each WanAttentionBlock, then the root, the frozen base registered by ``shard_base``) and runs the
trainer's own step pieces: its rows and draws per process, ``TrainingStep``, and the checkpoint gather and save.
Mixed precision is off so the result can be compared with one process in fp32."""

import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(here)), os.path.dirname(here)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(config_file: str, out_file: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from fantasy_comfy.host import import_comfyui

    import_comfyui(os.environ["COMFYUI_PATH"], "--cpu")
    from fantasy_core.dataset.reader import CachedClips
    from fantasy_core.training.config import config_from_dict
    from fantasy_core.training.trainable import build_trainable
    from fantasy_train.step import TrainingStep
    from fantasy_train.trainer import gathered_trainable_state, micro_batch
    from fantasy_train.wan import FrozenWan

    with open(config_file, encoding="utf-8") as f:
        config = config_from_dict(json.load(f))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = config.data
    dataset = CachedClips(data.dataset, {}, need_faces=config.modules.identity, need_omega=config.modules.motion)
    wan = FrozenWan.load(config.model.wan, config.model.base_dtype, torch.device("cpu"))
    sample = dataset[0]
    modules, _ = build_trainable(
        config.modules, wan.shape, sample["audio_features"].shape[-1], sample["face_embedding"].shape[-1], dataset.calibration, config.seed
    )
    step_module = TrainingStep(
        modules,
        wan,
        config.stage,
        data.frames,
        config.modules.identity_scale,
        config.objective.lip_loss,
        config.model.gradient_checkpointing,
        shard_base=config.model.shard_base,
    )
    mesh = init_device_mesh("cpu", (world,))
    blocks = list(wan.dit.blocks)
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(step_module, mesh=mesh)
    sharded = sum(1 for p in step_module.parameters() if type(p).__name__ == "DTensor")
    assert sharded == sum(1 for _ in step_module.parameters()), "every parameter, base and modules, is sharded"
    optim = config.optimizer
    trainable = [p for p in step_module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=optim.learning_rate, betas=(optim.beta1, optim.beta2), eps=optim.eps, weight_decay=optim.weight_decay
    )
    for step in range(config.steps):
        with step_module.installed():
            losses, _ = step_module(*micro_batch(config, dataset, step, 0, rank, world))
            losses.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    state = gathered_trainable_state(step_module.trainable)
    if rank == 0:
        modules.save(out_file, state=state)
        print(f"FSDP2: {world} processes, {len(blocks)} blocks wrapped, {sharded} parameters sharded", flush=True)
    dist.barrier()  # a rank tearing gloo down while the other still saves can abort ("terminate called ...")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
