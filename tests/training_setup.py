"""A small prepared dataset (the astronaut talking, through the real data preparation with tiny encoders) and tiny
run configurations for the training tests."""

from __future__ import annotations

import os

from fantasy_core.dataset.settings import DatasetSettings

SETTINGS = DatasetSettings(fps=12, frames=25, width=128, height=128)  # 7 latent frames of 16 x 16 cells
TINY_MODULES = {
    "audio_context_dim": 24,
    "motion_hidden_dim": 16,
    "identity_size": {"width": 32, "num_queries": 4, "num_layers": 1, "num_heads": 4, "ffn_dim": 48},
}


def prepare_training_dataset(comfy, root: str) -> dict:
    """Four 25-frame clips with face embeddings and a motion calibration, and a tiny Wan2.1 I2V file."""
    from dataset_media import make_videos
    from dataset_models import MODEL_NAMES, tiny_encoders
    from face_models import save_arcface_onnx
    from tiny_models import save_tiny_wan_i2v

    from fantasy_core.dataset.analyse import AnalysisModels
    from fantasy_train.prepare import RunOptions, prepare_dataset

    videos, models, dataset = (os.path.join(root, name) for name in ("videos", "models", "dataset"))
    make_videos(videos, talking=2, extras=False)
    encoders = tiny_encoders(comfy, models)
    save_arcface_onnx(os.path.join(models, "arcface.onnx"))
    analysis = AnalysisModels(SETTINGS, arcface_path=os.path.join(models, "arcface.onnx"))
    prepare_dataset(videos, dataset, SETTINGS, encoders, MODEL_NAMES, analysis, options=RunOptions(clips_per_shard=2, show_progress=False))
    wan = save_tiny_wan_i2v(comfy, os.path.join(models, "tiny_wan_i2v.safetensors"))
    return {"dataset": dataset, "wan": wan, "models": models}


def run_config(made: dict, output_dir: str, **sections) -> dict:
    """A tiny run on CPU in fp32: every value the tests do not set is the shipped default."""
    config = {
        "stage": 1,
        "steps": 4,
        "output_dir": output_dir,
        "seed": 0,
        "data": {
            "dataset": made["dataset"],
            "width": SETTINGS.width,
            "height": SETTINGS.height,
            "fps": SETTINGS.fps,
            "frames": SETTINGS.frames,
            "batch_size": 2,
        },
        "model": {"wan": made["wan"], "base_dtype": "fp32"},
        "modules": dict(TINY_MODULES),
        "optimizer": {"learning_rate": 1e-3, "mixed_precision": "no"},
        "checkpoint": {"every": 2},
        "logging": {"every": 1},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            config[key] = {**config.get(key, {}), **value}
        else:
            config[key] = value
    return config


def config_of(made: dict, output_dir, **sections):
    """The TrainConfig of ``run_config``."""
    from fantasy_core.training.config import config_from_dict

    return config_from_dict(run_config(made, str(output_dir), **sections))
