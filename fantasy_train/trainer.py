"""The DAVA training loop on accelerate: one process per GPU (or CPU), gradients synchronised by accelerate's engine
(DDP, FSDP or DeepSpeed, as `accelerate launch` configures it), checkpoints in the nodes' file format plus
accelerate's full state for an exact resume, TensorBoard (and optionally W&B) logging and a progress bar.

Data order and every random draw are functions of (seed, step, sample), so a resumed run repeats exactly what the
uninterrupted one does, and N processes compute what one process computes on their combined batch."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace

import torch

from fantasy_comfy.model_folders import module_file_path
from fantasy_core.dataset.reader import CachedClips
from fantasy_core.training.config import TrainConfig, config_json
from fantasy_core.training.draws import SampleDraws, batch_samples, draw
from fantasy_core.training.trainable import build_trainable

from .encoders import MissingModelError
from .engines import configure_engine
from .step import TrainingStep
from .validation import ValidationRenderer, render_file, score_weights
from .wan import FrozenWan

RUN_FILE = "run.json"
STATES = "state"
CHECKPOINTS = "checkpoints"


class RunFolderError(ValueError):
    pass


def _accelerate():
    try:
        import accelerate
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("Training needs accelerate and tensorboard: pip install -r fantasy_train/requirements.txt") from error
    return accelerate


def state_dirs(output_dir: str) -> list[tuple[int, str]]:
    root = os.path.join(output_dir, STATES)
    if not os.path.isdir(root):
        return []
    found = [
        (int(name.split("-")[1]), os.path.join(root, name))
        for name in os.listdir(root)
        if name.startswith("step-") and os.path.isfile(os.path.join(root, name, "complete"))
    ]
    return sorted(found)


def module_file(output_dir: str, stage: int, step: int) -> str:
    return os.path.join(output_dir, CHECKPOINTS, f"fantasytalking-stage{stage}-step{step:07d}.safetensors")


def _check_run_folder(config: TrainConfig) -> None:
    """A folder holds one run: resuming with another configuration (other than steps, logging and validation) is refused."""
    path = os.path.join(config.output_dir, RUN_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            existing = json.load(f)
        wanted = json.loads(json.dumps(config.run_identity()))
        if existing != wanted:
            differences = sorted(_differences(existing, wanted))
            raise RunFolderError(
                f"output_dir {config.output_dir} holds another run ({'; '.join(differences[:6])}). To continue it, use "
                "its configuration (only steps, [logging] and [validation] may change); for a new run, choose another output_dir."
            )
    elif os.path.isdir(config.output_dir) and os.listdir(config.output_dir):
        raise RunFolderError(f"output_dir {config.output_dir} is not empty and holds no {RUN_FILE}. Choose a new or empty folder.")


def _differences(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in set(old) | set(new) for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} there, {new!r} now"]


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class StepStats:
    """Sums between two log lines, over every process's rows."""

    def __init__(self):
        self.rows = 0
        self.sums = {}

    def add(self, **row_values: torch.Tensor) -> None:
        self.rows += next(iter(row_values.values())).numel()
        for key, value in row_values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value.float().sum())

    def means(self) -> dict:
        return {key: value / max(self.rows, 1) for key, value in self.sums.items()}


def train(config: TrainConfig, show_progress: bool = True, stop_after: int | None = None, validation_encoders=None) -> dict:
    """Run (or resume) the training; ``stop_after``: stop once this step is reached (tests simulate a kill);
    ``validation_encoders``: DatasetEncoders for the renders instead of loading [validation]'s files."""
    accelerate = _accelerate()
    from accelerate.utils import ProjectConfiguration

    mixed_precision = config.optimizer.mixed_precision if torch.cuda.is_available() else "no"  # no autocast on CPU
    trackers = (["tensorboard"] if config.logging.tensorboard else []) + (["wandb"] if config.logging.wandb else [])
    accelerator = accelerate.Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=config.optimizer.gradient_accumulation,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=config.output_dir, logging_dir=os.path.join(config.output_dir, "logs")),
    )
    configure_engine(accelerator, config)
    weights = score_weights(config.validation) if config.validation.every else None  # a missing file stops the run now
    if accelerator.is_main_process:
        _check_run_folder(config)
        os.makedirs(config.output_dir, exist_ok=True)
        with open(os.path.join(config.output_dir, RUN_FILE), "w", encoding="utf-8") as f:
            json.dump(config.run_identity(), f, indent=1)
    accelerator.wait_for_everyone()

    data = config.data
    dataset = CachedClips(
        data.dataset,
        {"width": data.width, "height": data.height, "fps": data.fps, "frames": data.frames},
        need_faces=config.modules.identity,
        need_omega=config.modules.motion,
    )
    wan = FrozenWan.load(config.model.wan, config.model.base_dtype, accelerator.device, config.model.base_gpu_memory_gb)
    sample = dataset[0]
    face_dim = sample["face_embedding"].shape[-1] if "face_embedding" in sample else 512
    modules_config = replace(config.modules, init=_init_path(config.modules.init))
    modules, report = build_trainable(
        modules_config, wan.shape, sample["audio_features"].shape[-1], face_dim, dataset.calibration, config.seed
    )
    modules.to(accelerator.device)
    renderer = None
    if config.validation.every and accelerator.is_main_process:
        renderer = ValidationRenderer.prepare(config, dataset, wan, validation_encoders, weights)
        if weights.note:
            print(weights.note, flush=True)
    step_module = TrainingStep(
        modules,
        wan,
        config.stage,
        data.frames,
        config.modules.identity_scale,
        config.objective.lip_loss,
        config.model.gradient_checkpointing,
        config.model.shard_base,
    )
    optim = config.optimizer
    adam = torch.optim.AdamW(
        [p for p in step_module.parameters() if p.requires_grad],
        lr=optim.learning_rate,
        betas=(optim.beta1, optim.beta2),
        eps=optim.eps,
        weight_decay=optim.weight_decay,
    )
    model, optimizer = accelerator.prepare(step_module, adam)  # together: FSDP2 swaps the optimizer's parameters for its shards
    trainable = [p for p in model.parameters() if p.requires_grad]
    # stepped here once per optimizer step (not prepared: accelerate would step it once per process)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer.optimizer, lambda s: min(1.0, (s + 1) / optim.warmup_steps) if optim.warmup_steps else 1.0
    )
    accelerator.register_for_checkpointing(scheduler)

    start = 0
    states = state_dirs(config.output_dir)
    if states:
        start, path = states[-1]
        accelerator.load_state(path)
    if accelerator.is_main_process:
        accelerator.init_trackers(config.logging.project, config=_flat(config.to_json()))
        print(
            f"FantasyTalking training, stage {config.stage}: {len(dataset)} clips, {accelerator.num_processes} process(es) "
            f"on {accelerator.device}, mixed precision {mixed_precision}, {sum(p.numel() for p in trainable) / 1e6:.2f} M "
            "trainable parameters; " + ("; ".join(report)) + (f"; resumed at step {start}" if start else ""),
            flush=True,
        )

    end = config.steps if stop_after is None else min(config.steps, stop_after)
    progress = _progress(config.steps, start, show_progress and accelerator.is_main_process)
    stats, began = StepStats(), time.time()
    for step in range(start, end):
        grad_norm = None
        for micro in range(optim.gradient_accumulation):
            batch, draws = micro_batch(config, dataset, step, micro, accelerator.process_index, accelerator.num_processes)
            with accelerator.accumulate(model), step_module.installed():
                with accelerator.autocast():  # accelerate wraps forward in autocast itself except under FSDP2
                    losses, used = model(batch, draws)
                gathered = accelerator.gather(
                    torch.stack(
                        [
                            losses.detach().float(),
                            used.float(),
                            draws.drop_reference.float().to(losses.device),
                            draws.drop_audio.float().to(losses.device),
                            draws.drop_prompt.float().to(losses.device),
                            draws.sigma.to(losses.device),
                        ],
                        dim=1,
                    )
                )
                _stop_unless_finite(gathered[:, 0], "loss", step + 1, config)  # every process sees every row: all stop together
                accelerator.backward(losses.mean())
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(trainable, optim.max_grad_norm or float("inf"))
                    if grad_norm is not None:  # DeepSpeed clips inside its engine and may not report it yet
                        _stop_unless_finite(grad_norm, "gradient norm", step + 1, config)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            stats.add(
                loss=gathered[:, 0],
                lip_loss_fraction=gathered[:, 1],
                dropped_reference=gathered[:, 2],
                dropped_audio=gathered[:, 3],
                dropped_prompt=gathered[:, 4],
                sigma=gathered[:, 5],
            )
        scheduler.step()
        done = step + 1
        if done % config.logging.every == 0 or done == end:
            values = {f"train/{key}": value for key, value in stats.means().items()}
            values.update(
                {
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/grad_norm": float(grad_norm) if grad_norm is not None else 0.0,
                    "train/stage": config.stage,
                    "train/steps_per_second": (done - start) / max(time.time() - began, 1e-9),
                }
            )
            accelerator.log(values, step=done)
            progress.set_postfix(loss=f"{values['train/loss']:.4f}")
            stats = StepStats()
        progress.update(1)
        if done % config.checkpoint.every == 0 or done == config.steps:
            _save(accelerator, model, step_module, config, done)
        if config.validation.every and (done % config.validation.every == 0 or done == config.steps):
            _validate(accelerator, renderer, step_module, config, done, progress)
    progress.close()
    if renderer is not None:
        renderer.close()
    accelerator.end_training()
    final = accelerator.unwrap_model(model).trainable
    return {"step": end, "modules": final, "file": module_file(config.output_dir, config.stage, end)}


class DivergedError(FloatingPointError):
    pass


def _stop_unless_finite(values: torch.Tensor, what: str, step: int, config: TrainConfig) -> None:
    """Stops the run before a non-finite loss or gradient reaches a checkpoint. The loss is checked before backward
    and the gradient norm before the optimizer step (DeepSpeed's engine steps inside backward: there only the
    checkpoints are spared)."""
    values = torch.as_tensor(values).detach().float()
    if not torch.isfinite(values).all():
        raise DivergedError(
            f"Training stopped at step {step}: the {what} is not finite ({values.flatten()[:4].tolist()}); this step was "
            f"not saved. Start a new run (another output_dir) from the last good checkpoint in "
            f"{os.path.join(config.output_dir, CHECKPOINTS)} (modules.init) with a lower optimizer.learning_rate "
            f"(now {config.optimizer.learning_rate:g}) or optimizer.max_grad_norm (now {config.optimizer.max_grad_norm:g}; 0 is none)."
        )


def micro_batch(
    config: TrainConfig, dataset: CachedClips, step: int, micro: int, process_index: int, num_processes: int
) -> tuple[dict, SampleDraws]:
    """This process's rows of micro-batch ``micro`` of ``step`` (collated) and their draws. The step's whole batch is
    ``batch_size`` rows per process per micro-batch; which clips and draws it holds depend on (seed, step) only."""
    data, objective = config.data, config.objective
    rows_per_micro = data.batch_size * num_processes
    indices = batch_samples(config.seed, step, len(dataset), rows_per_micro * config.optimizer.gradient_accumulation)
    first = micro * rows_per_micro + process_index * data.batch_size
    positions = list(range(first, first + data.batch_size))
    batch = torch.utils.data.default_collate([dataset[indices[p]] for p in positions])
    draws = draw(config.seed, step, positions, tuple(batch["latents"].shape[1:]), objective.shift, objective.dropout, objective.eta)
    return batch, draws


def gathered_trainable_state(modules: torch.nn.Module, keep: bool = True) -> dict[str, torch.Tensor]:
    """The trainable modules' whole fp32 tensors on the CPU (where ``keep``; empty elsewhere). FSDP2 holds them as
    DTensor shards, which are all-gathered here (only the modules, not the sharded base): every process must call this."""
    from torch.distributed.tensor import DTensor

    state = {}
    for name, value in modules.state_dict().items():
        if isinstance(value, DTensor):
            value = value.full_tensor()  # a collective
        if keep:
            state[name] = value.detach().float().cpu()
    return state


def _trainable_state(accelerator, model, step_module: TrainingStep) -> dict[str, torch.Tensor]:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:  # ZeRO-3 partitions the parameters: accelerate gathers them
        whole = accelerator.get_state_dict(model)  # on every process
        return {
            name.removeprefix("trainable."): value.float().cpu() for name, value in (whole or {}).items() if name.startswith("trainable.")
        }
    return gathered_trainable_state(step_module.trainable, keep=accelerator.is_main_process)


def _init_path(name: str) -> str:
    """modules.init: a path, or a file name in ComfyUI/models/fantasytalking (where the nodes find it)."""
    if not name or os.path.isfile(name):
        return name
    try:
        return module_file_path(name)
    except FileNotFoundError as error:
        raise MissingModelError(f"modules.init: {error}") from error


def _save(accelerator, model, step_module: TrainingStep, config: TrainConfig, step: int) -> None:
    accelerator.wait_for_everyone()
    state = os.path.join(config.output_dir, STATES, f"step-{step:07d}")
    accelerator.save_state(state)
    weights = _trainable_state(accelerator, model, step_module)  # a collective under FSDP / ZeRO-3: every process
    if accelerator.is_main_process:
        os.makedirs(os.path.join(config.output_dir, CHECKPOINTS), exist_ok=True)
        step_module.trainable.save(module_file(config.output_dir, config.stage, step), checkpoint_metadata(config, step), state=weights)
        open(os.path.join(state, "complete"), "w").close()  # written last: a kill mid-save leaves no resumable half state
        for _, old in state_dirs(config.output_dir)[: -config.checkpoint.keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def checkpoint_metadata(config: TrainConfig, step: int) -> dict[str, str]:
    return {"fantasytalking.training": json.dumps({"stage": config.stage, "step": step, "config": json.loads(config_json(config))})}


def _validate(accelerator, renderer, step_module: TrainingStep, config: TrainConfig, step: int, progress) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        frames = renderer.render(step_module.trainable, step, checkpoint_metadata(config, step))
        if config.logging.tensorboard:
            shown = frames[[0, frames.shape[0] // 2, frames.shape[0] - 1]]
            accelerator.get_tracker("tensorboard", unwrap=True).add_images("validation/frames", shown, global_step=step, dataformats="NHWC")
        scores = renderer.score(frames)
        if scores:
            accelerator.log(scores, step=step)  # numbers as scalars, the outcome in words as text, at the frames' step
        said = "; ".join(value for value in scores.values() if isinstance(value, str))
        progress.write(f"step {step}: validation render {render_file(config.output_dir, step)}" + (f"; {said}" if said else ""))
    accelerator.wait_for_everyone()


def _progress(total: int, start: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="training", unit="step", disable=not show, dynamic_ncols=True)
