"""Training benchmark: one DAVA step (forward, backward, AdamW) with and without gradient checkpointing, side by side
in one run, and the real-scale memory estimate from the shapes.

    python benchmarks/bench_training.py [--layers 8] [--frames 81] [--size 128] [--repeats 3]

1. A random-weight Wan2.1 I2V DiT in ComfyUI's layout (``--layers`` blocks, width 256), loaded by ComfyUI's own
   loader as the trainer loads it, with the audio, identity and motion modules at small sizes; stage 2 (frame-level
   windows, lip-focused loss) on a random clip of ``--frames`` frames at ``--size``². Reported per variant: the median
   step time, the bytes autograd keeps for the backward pass (every saved tensor's storage, counted once: what
   checkpointing trades for recomputation) and, on a GPU, the peak allocated memory. Checkpointed steps must produce
   the same gradients; the script checks it.
2. The real scale (Wan2.1-I2V-14B: 40 blocks, width 5120; the modules at the trainer's default sizes): trainable
   parameters and their fp32 weights + gradients + AdamW state, the frozen base, and the checkpointed block inputs of
   one 81-frame 512² clip. The README's "What fits where" table is built from these numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from fantasy_core.frames import latent_frames  # noqa: E402
from fantasy_core.training.config import IdentitySize, ModulesConfig  # noqa: E402
from fantasy_core.training.draws import DropoutRates, draw  # noqa: E402
from fantasy_core.training.trainable import WanShape, build_trainable  # noqa: E402

SMALL_MODULES = ModulesConfig(
    audio_context_dim=256, motion_hidden_dim=64, identity_size=IdentitySize(width=64, num_queries=8, num_layers=1, num_heads=4, ffn_dim=128)
)
WAN_WIDTH = 256
GB = 1e9


def save_wan(comfy, path: str, layers: int) -> str:
    from comfy.ldm.wan.model import WanModel
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = WanModel(
        model_type="i2v",
        in_dim=36,
        out_dim=16,
        text_dim=4096,
        operations=comfy.ops.disable_weight_init,
        dim=WAN_WIDTH,
        ffn_dim=2 * WAN_WIDTH,
        num_heads=2,
        num_layers=layers,
    )
    state = {
        key: (1 + 0.1 * torch.randn(t.shape)) if key.endswith("weight") and t.dim() == 1 else 0.05 * torch.randn(t.shape)
        for key, t in model.state_dict().items()
    }
    save_file(state, path)
    return path


def random_batch(frames: int, size: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    t, hw = latent_frames(frames), size // 8
    audio_tokens = round(frames / 23 * 50)
    mask = torch.zeros(1, t, hw, hw)  # the latent lip mask
    mask[..., hw // 2 : hw * 3 // 4, hw // 3 : hw * 2 // 3] = 1  # a mouth-sized box
    reference_mask = torch.ones(1, 1, t, hw, hw)
    reference_mask[:, :, 0] = 0
    return {
        "latents": torch.randn(1, 16, t, hw, hw, generator=gen),
        "reference_latents": torch.randn(1, 16, t, hw, hw, generator=gen),
        "reference_mask": reference_mask,
        "text": torch.randn(1, 512, 4096, generator=gen) * 0.1,
        "clip_vision": torch.randn(1, 257, 1280, generator=gen),
        "audio_features": torch.randn(1, audio_tokens, 768, generator=gen),
        "face_embedding": torch.nn.functional.normalize(torch.randn(1, 512, generator=gen), dim=-1),
        "omega": torch.tensor([[0.6, 0.4]]),
        "lip_mask": mask,
    }


class SavedBytes:
    """Bytes of every tensor storage autograd saves for backward, each storage counted once."""

    def __init__(self):
        self.storages = {}

    def __enter__(self):
        def pack(tensor):
            storage = tensor.untyped_storage()
            self.storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        self.hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.hooks.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def bench_tiny(args) -> None:
    from fantasy_comfy.host import import_comfyui

    import_comfyui(os.environ.get("COMFYUI_PATH"), "" if torch.cuda.is_available() else "--cpu")
    import comfy

    from fantasy_train.step import TrainingStep
    from fantasy_train.wan import FrozenWan

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as folder:
        wan = FrozenWan.load(save_wan(comfy, os.path.join(folder, "wan.safetensors"), args.layers), "fp32", device)
    modules, _ = build_trainable(SMALL_MODULES, wan.shape, 768, 512, None, seed=0)
    modules.to(device)
    batch = random_batch(args.frames, args.size)
    draws = draw(0, 0, [0], tuple(batch["latents"].shape[1:]), 5.0, DropoutRates(0, 0, 0), eta=0.0)
    tokens = batch["latents"][0, 0].numel() // 4
    print(
        f"Tiny scale on {device}: Wan {args.layers} blocks x width {WAN_WIDTH}, {args.frames} frames at {args.size}² "
        f"({tokens} video tokens), {sum(p.numel() for p in modules.parameters()) / 1e6:.2f} M trainable parameters, stage 2"
    )
    optimizer = torch.optim.AdamW(modules.parameters(), lr=1e-5)
    results, gradients = {}, {}

    def one_step(checkpointing: bool, measure: bool = False):
        step = TrainingStep(modules, wan, 2, args.frames, 0.5, "masked_mean", gradient_checkpointing=checkpointing)
        optimizer.zero_grad(set_to_none=True)
        saved = SavedBytes()
        with step.installed():
            if measure:
                with saved:
                    loss = step(batch, draws)[0].mean()
            else:
                loss = step(batch, draws)[0].mean()
            loss.backward()
        return saved.total

    for checkpointing in (False, True):  # gradients at the same weights, before any optimizer step
        one_step(checkpointing)
        gradients[checkpointing] = [p.grad.clone() for p in modules.parameters()]
    worst = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item() for a, b in zip(gradients[False], gradients[True]))
    print(f"  checkpointed gradients vs plain: largest relative difference {worst:.1e}")
    for checkpointing in (False, True):
        results[checkpointing] = {"saved": one_step(checkpointing, measure=True), "times": []}
    for _ in range(args.repeats):  # alternate, so both variants see the same machine state
        for checkpointing in (False, True):
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            one_step(checkpointing)
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
                results[checkpointing]["peak"] = torch.cuda.max_memory_allocated()
            results[checkpointing]["times"].append(time.perf_counter() - start)
    for checkpointing in (False, True):
        times = sorted(results[checkpointing]["times"])
        peak = f", peak GPU memory {results[checkpointing]['peak'] / GB:.2f} GB" if "peak" in results[checkpointing] else ""
        print(
            f"  gradient checkpointing {'on ' if checkpointing else 'off'}: step {times[len(times) // 2]:.3f} s (median of "
            f"{len(times)}), kept for backward {results[checkpointing]['saved'] / 1e6:.1f} MB{peak}"
        )
    ratio_time = sorted(results[True]["times"])[args.repeats // 2] / sorted(results[False]["times"])[args.repeats // 2]
    print(
        f"  checkpointing: {ratio_time:.2f}x the step time, "
        f"{results[True]['saved'] / results[False]['saved']:.3f}x the memory kept for backward"
    )


def real_scale_estimate() -> None:
    with torch.device("meta"):
        modules, _ = build_trainable(ModulesConfig(), WanShape(40, 5120), 768, 512, None, seed=0)
    count = {name: sum(p.numel() for p in getattr(modules, name).parameters()) for name in ("audio", "identity", "motion")}
    trainable = sum(count.values())
    tokens = latent_frames(81) * (512 // 16) ** 2
    print("Real scale (Wan2.1-I2V-14B, 40 blocks x 5120; modules at the trainer's default sizes):")
    print("  trainable: " + ", ".join(f"{name} {n / 1e9:.3f} B" for name, n in count.items()) + f"; {trainable / 1e9:.2f} B in all")
    print(
        f"  fp32 weights + gradients + AdamW (16 bytes each): {16 * trainable / GB:.1f} GB "
        f"({16 * count['audio'] / GB:.1f} GB audio adapter alone)"
    )
    print("  frozen base (14.0 B parameters): 28.0 GB bf16, 14.0 GB fp8")
    print(
        f"  one 81-frame 512² clip: {tokens} video tokens; checkpointed block inputs 40 x {tokens} x 5120 x 2 bytes = "
        f"{40 * tokens * 5120 * 2 / GB:.1f} GB bf16"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench_tiny(args)
    real_scale_estimate()


if __name__ == "__main__":
    main()
