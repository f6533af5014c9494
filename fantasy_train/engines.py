"""What the trainer settles with the distributed engine accelerate was launched with, before ``prepare``: the run's
config wins over an accelerate config file where both speak (batch size, accumulation, clipping), and combinations
that cannot work are refused at the start rather than at the first step or the first checkpoint."""

from __future__ import annotations

from fantasy_core.training.config import TrainConfig


class EngineError(ValueError):
    """The accelerate config and the run's config do not go together."""


def apply_deepspeed_settings(deepspeed_config: dict, config: TrainConfig) -> dict:
    """Writes the run's micro-batch, accumulation and clipping into the DeepSpeed config, in place (accelerate reads
    this very dict; there is no DataLoader for it to take the batch size from), and makes ZeRO-3 gather the modules
    for the checkpoint file."""
    deepspeed_config["train_micro_batch_size_per_gpu"] = config.data.batch_size
    deepspeed_config["gradient_accumulation_steps"] = config.optimizer.gradient_accumulation
    deepspeed_config["gradient_clipping"] = config.optimizer.max_grad_norm  # 0: none, as [optimizer] max_grad_norm
    zero = deepspeed_config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return deepspeed_config


def configure_engine(accelerator, config: TrainConfig) -> None:
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        if not accelerator.is_fsdp2:
            raise EngineError(
                "The accelerate config uses FSDP1 (fsdp_version: 1), which cannot flatten the fp32 modules with the "
                "bf16 base into one unit. Set fsdp_version: 2 (fantasy_train/configs/accelerate/fsdp_8gpu.yaml)."
            )
        if not config.model.shard_base:
            raise EngineError(
                "The accelerate config shards with FSDP, which wraps the Wan blocks: set [model] shard_base = true, "
                "or use DDP (fantasy_train/configs/accelerate/ddp_8gpu.yaml) to keep a whole base on each GPU."
            )
        from torch.distributed.fsdp import MixedPrecisionPolicy

        # No casts by FSDP: autocast computes in bf16 as under DDP, the fp32 modules are gathered and their gradients
        # reduced in fp32, and inputs stay as given (a cast of the blocks' inputs, skipped in the checkpointed recompute,
        # would make the recompute differ from the forward).
        accelerator.state.fsdp_plugin.mixed_precision_policy = MixedPrecisionPolicy()
    elif kind == DistributedType.DEEPSPEED:
        apply_deepspeed_settings(accelerator.state.deepspeed_plugin.deepspeed_config, config)
    if kind != DistributedType.DEEPSPEED and accelerator.gradient_accumulation_steps != config.optimizer.gradient_accumulation:
        raise EngineError(
            f"The accelerate config sets gradient accumulation to {accelerator.gradient_accumulation_steps} but "
            f"[optimizer] gradient_accumulation is {config.optimizer.gradient_accumulation}: remove it from the "
            "accelerate config (the run's config decides)."
        )
