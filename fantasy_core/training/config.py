"""One training run's configuration, read from a TOML file. Every key is checked: an unknown key, a wrong type or a
value out of range is an error naming the key. ``fantasy_train/configs/`` has commented examples for both stages."""

from __future__ import annotations

import json
import math
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass

import torch

from ..evaluation.sync import SyncProtocol
from ..guidance import OFFICIAL_NEGATIVE_PROMPT
from .draws import DropoutRates
from .objective import LIP_LOSS_REDUCTIONS

BASE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8_e4m3fn": torch.float8_e4m3fn, "fp32": torch.float32}
MIXED_PRECISION = ("no", "bf16", "fp16")


class ConfigError(ValueError):
    """The training configuration is invalid."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = ""  # a folder made by `python -m fantasy_train prepare`
    # What the run trains at; the dataset must have been prepared with the same values.
    width: int = 512
    height: int = 512
    fps: float = 23.0
    frames: int = 81
    batch_size: int = 1  # per process and micro-step


@dataclass(frozen=True)
class ModelConfig:
    wan: str = "wan2.1_i2v_720p_14B_bf16.safetensors"  # in ComfyUI/models/diffusion_models, or a path
    base_dtype: str = "bf16"  # the frozen base's weights: bf16, fp16, fp8_e4m3fn or fp32
    gradient_checkpointing: bool = False  # keep only each Wan block's input; recompute the block in the backward pass
    base_gpu_memory_gb: float = 0.0  # > 0: keep at most this much of the base on the GPU, stream the rest (ComfyUI low-VRAM)
    shard_base: bool = False  # register the base with the distributed engine so FSDP / ZeRO-3 shard it


@dataclass(frozen=True)
class IdentitySize:
    width: int = 1024
    num_queries: int = 32
    num_layers: int = 4
    num_heads: int = 16
    ffn_dim: int = 4096


@dataclass(frozen=True)
class ModulesConfig:
    init: str = ""  # a FantasyTalking file to start from (the released adapter, or an earlier stage's checkpoint)
    identity: bool = True  # train the identity module
    motion: bool = True  # train the motion network
    audio_context_dim: int = 2048  # width of a fresh audio adapter's projected audio (the release: 2048)
    identity_size: IdentitySize = field(default_factory=IdentitySize)  # of a fresh identity module
    motion_hidden_dim: int = 1024  # of a fresh motion network
    identity_scale: float = 0.5  # λ2 while training (the nodes' default)


@dataclass(frozen=True)
class ObjectiveConfig:
    shift: float = 5.0  # σ sampling shift (the inference shift)
    eta: float = 0.2  # stage 2: the plain loss with probability η, the lip-focused loss otherwise
    lip_loss: str = "masked_mean"  # "masked_mean" or "mean" (see objective.row_losses)
    dropout: DropoutRates = field(default_factory=DropoutRates)


@dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-4
    weight_decay: float = 0.0  # AdamW
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_steps: int = 0  # linear warm-up, then constant
    max_grad_norm: float = 1.0  # 0: no clipping
    gradient_accumulation: int = 1
    mixed_precision: str = "bf16"  # autocast of the trainable modules' maths: "no", "bf16" or "fp16"


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 1000  # steps between checkpoints (the last step always gets one)
    keep: int = 3  # resumable states kept (the module files are all kept)


@dataclass(frozen=True)
class LoggingConfig:
    every: int = 10
    tensorboard: bool = True
    wandb: bool = False
    project: str = "fantasytalking"  # the TensorBoard folder under output_dir/logs, and the W&B project


@dataclass(frozen=True)
class ValidationConfig:
    """Renders during training through the nodes' own sampling (see fantasy_train/validation.py)."""

    every: int = 0  # steps between renders (0: none); the last step always gets one when > 0
    image: str = ""  # the portrait (PNG/JPEG)
    audio: str = ""  # the voice (any file with sound); the render is as long as the run's clips, or the voice
    prompt: str = "A person is talking."
    negative_prompt: str = OFFICIAL_NEGATIVE_PROMPT
    seed: int = 0
    steps: int = 30
    cfg: float = 5.0
    audio_cfg: float = 4.5
    shift: float = 5.0
    omega_lip: float = 0.5  # the motion intensity rendered (with a motion module)
    omega_body: float = 0.5
    # The encoders: "" means the file the dataset was prepared with (its dataset.json); else a name or a path.
    vae: str = ""
    text_encoder: str = ""
    clip_vision: str = ""
    wav2vec: str = ""
    arcface: str = ""
    face_detector: str = ""
    # Scores of every render, logged beside its frames (fantasy_train/validation.py). syncnet: "" = syncnet_v2.model
    # in ComfyUI/models/evaluation when it is there, "none" = no scores, else a file name there or a path. dino: the
    # DINO ViT-B/16 folder for IDC against the portrait, a name there or a path ("" = no IDC).
    syncnet: str = ""
    dino: str = ""
    sync_min_track: int = SyncProtocol.min_track  # frames at 25 fps; a shorter face track is not scored
    score_min_face_size: int = SyncProtocol.min_face_size  # pixels; smaller faces are not scored (Sync and IDC)


@dataclass(frozen=True)
class TrainConfig:
    stage: int = 1  # 1: clip-level audio attention; 2: frame-level windows and the lip-focused loss
    steps: int = 1000  # optimizer steps in total (a resumed run continues to this)
    output_dir: str = ""
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    modules: ModulesConfig = field(default_factory=ModulesConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self):
        _check(self.stage in (1, 2), "stage", self.stage, "1 or 2")
        _check(self.steps >= 1, "steps", self.steps, "at least 1")
        _check(bool(self.output_dir), "output_dir", self.output_dir, "a folder for checkpoints and logs")
        _check(bool(self.data.dataset), "data.dataset", self.data.dataset, "the folder `python -m fantasy_train prepare` made")
        for name in ("batch_size", "width", "height", "frames"):
            _check(getattr(self.data, name) >= 1, f"data.{name}", getattr(self.data, name), "a positive integer")
        _check(self.model.base_dtype in BASE_DTYPES, "model.base_dtype", self.model.base_dtype, f"one of {list(BASE_DTYPES)}")
        _check(self.model.base_gpu_memory_gb >= 0, "model.base_gpu_memory_gb", self.model.base_gpu_memory_gb, "0 (all) or more")
        if self.model.shard_base:  # the engine then owns where the base's weights live and gathers them layer by layer
            _check(
                self.model.base_gpu_memory_gb == 0,
                "model.base_gpu_memory_gb",
                self.model.base_gpu_memory_gb,
                "0 with model.shard_base = true (ComfyUI's low-VRAM streaming cannot move sharded weights)",
            )
            _check(
                self.model.base_dtype != "fp8_e4m3fn",
                "model.base_dtype",
                self.model.base_dtype,
                "bf16, fp16 or fp32 with model.shard_base = true (the engines gather 16- and 32-bit weights; bf16 sharded "
                "over 8 GPUs is 3.5 GB each)",
            )
        _check(self.objective.shift > 0, "objective.shift", self.objective.shift, "positive")
        _check(0 <= self.objective.eta <= 1, "objective.eta", self.objective.eta, "between 0 and 1")
        _check(
            self.objective.lip_loss in LIP_LOSS_REDUCTIONS,
            "objective.lip_loss",
            self.objective.lip_loss,
            f"one of {list(LIP_LOSS_REDUCTIONS)}",
        )
        _check(self.optimizer.learning_rate > 0, "optimizer.learning_rate", self.optimizer.learning_rate, "positive")
        _check(
            self.optimizer.gradient_accumulation >= 1, "optimizer.gradient_accumulation", self.optimizer.gradient_accumulation, "at least 1"
        )
        _check(
            self.optimizer.mixed_precision in MIXED_PRECISION,
            "optimizer.mixed_precision",
            self.optimizer.mixed_precision,
            f"one of {list(MIXED_PRECISION)}",
        )
        _check(self.checkpoint.every >= 1, "checkpoint.every", self.checkpoint.every, "at least 1")
        _check(self.checkpoint.keep >= 1, "checkpoint.keep", self.checkpoint.keep, "at least 1")
        _check(self.logging.every >= 1, "logging.every", self.logging.every, "at least 1")
        self._check_validation()

    def _check_validation(self) -> None:
        valid = self.validation
        _check(valid.every >= 0, "validation.every", valid.every, "0 (no renders) or more")
        if not valid.every:
            return
        _check(bool(valid.image), "validation.image", valid.image, "the portrait to render (renders are on: validation.every > 0)")
        _check(bool(valid.audio), "validation.audio", valid.audio, "a voice file to render (renders are on: validation.every > 0)")
        _check(
            not self.model.shard_base,
            "validation.every",
            valid.every,
            "0 with model.shard_base = true: a sharded base cannot render on one process",
        )
        _check(valid.steps >= 1, "validation.steps", valid.steps, "at least 1")
        _check(valid.shift > 0, "validation.shift", valid.shift, "positive")
        for name in ("omega_lip", "omega_body"):
            _check(0 <= getattr(valid, name) <= 1, f"validation.{name}", getattr(valid, name), "between 0 and 1")
        for name in ("sync_min_track", "score_min_face_size"):
            _check(getattr(valid, name) >= 1, f"validation.{name}", getattr(valid, name), "at least 1")

    def to_json(self) -> dict:
        return asdict(self)

    def run_identity(self) -> dict:
        """What must not change when a run is resumed (everything but the number of steps, logging and validation)."""
        values = self.to_json()
        for key in ("steps", "logging", "validation"):
            values.pop(key)
        values["checkpoint"].pop("keep")
        return values


def _check(ok: bool, key: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"config '{key}' must be {expected}, got {value!r}.")


def _convert(value, annotation, key: str):
    kind = annotation if annotation in (bool, int, float, str) else None
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config '{key}' must be true or false, got {value!r}.")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config '{key}' must be an integer, got {value!r}.")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"config '{key}' must be a number, got {value!r}.")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"config '{key}' must be a string, got {value!r}.")
        return value
    raise TypeError(f"unsupported config type {annotation!r} for {key}")


def _build(cls, values: dict, prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"config '{prefix.rstrip('.')}' must be a table of settings, got {values!r}.")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        where = f"in [{prefix.rstrip('.')}]" if prefix else "at the top level"
        raise ConfigError(
            f"config key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)} "
            f"{'do' if len(unknown) > 1 else 'does'} not exist {where}; the keys there are {sorted(known)}."
        )
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        annotation = hints[name]
        if is_dataclass(annotation):
            kwargs[name] = _build(annotation, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _convert(value, annotation, prefix + name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"config [{prefix.rstrip('.') or 'top level'}]: {error}") from error


def config_from_dict(values: dict) -> TrainConfig:
    return _build(TrainConfig, values, "")


def parse_override(text: str) -> tuple[list[str], object]:
    """``key.path=value`` with a TOML value (a bare word is a string)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (e.g. optimizer.learning_rate=5e-5), got {text!r}.")
    toml = _toml()
    try:
        value = toml.loads(f"v = {raw.strip()}")["v"]
    except toml.TOMLDecodeError:
        value = raw.strip()
    return key.strip().split("."), value


def _toml():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ModuleNotFoundError as error:
            raise ConfigError("Reading a TOML config needs Python 3.11+ or the tomli package: pip install tomli") from error
    return tomllib


def load_config(path: str, overrides: list[str] = ()) -> TrainConfig:
    toml = _toml()
    try:
        with open(path, "rb") as f:
            values = toml.load(f)
    except FileNotFoundError as error:
        raise ConfigError(f"The config file {path} does not exist.") from error
    except toml.TOMLDecodeError as error:
        raise ConfigError(f"The config file {path} is not valid TOML: {error}") from error
    for override in overrides:
        keys, value = parse_override(override)
        table = values
        for key in keys[:-1]:
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {override}: '{key}' is a value, not a table.")
        table[keys[-1]] = value
    return config_from_dict(values)


def config_json(config: TrainConfig) -> str:
    return json.dumps(config.to_json(), sort_keys=True)
