"""Reading a prepared dataset for training: its clips' cached tensors, the text padded as ComfyUI pads it, and each
clip's ω through the dataset's own calibration. A dataset made for another size, frame rate or frame count than the
run trains at is refused, with what to do."""

from __future__ import annotations

import json
import os

import torch
from safetensors import safe_open

from ..motion.intensity import MotionCalibration
from .settings import DatasetSettings
from .store import FORMAT, HEADER, MANIFEST
from .summary import CALIBRATION

TEXT_TOKENS = 512  # ComfyUI's UMT5 conditioning for Wan: 512 tokens, zero past the caption
FIELDS = ("latents", "reference_latents", "reference_mask", "clip_vision", "audio_features", "lip_mask")


class DatasetMismatchError(ValueError):
    """The dataset cannot feed this training run."""


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as error:
        raise DatasetMismatchError(f"{path} is missing: {what}") from error


class CachedClips(torch.utils.data.Dataset):
    """Item: a dict of the clip's tensors as stored, ``text`` [512, 4096], ``omega`` [2] (ω_l, ω_b; when a calibration
    exists) and ``face_embedding`` [512] (when cached)."""

    def __init__(self, root: str, expected: dict, need_faces: bool = False, need_omega: bool = False):
        self.root = root
        header = _read_json(os.path.join(root, HEADER), "this is not a dataset made by `python -m fantasy_train prepare`.")
        if header.get("format") != FORMAT:
            raise DatasetMismatchError(f"{root}/{HEADER} is not a FantasyTalking dataset header.")
        self.settings = DatasetSettings.from_json(header["settings"])
        self.models = dict(header.get("models") or {})  # the encoders it was made with: vae, text_encoder, ..., arcface
        differences = [
            f"{key} {getattr(self.settings, key)!r} there, {value!r} in the config"
            for key, value in expected.items()
            if getattr(self.settings, key) != value
        ]
        if differences:
            raise DatasetMismatchError(
                f"The dataset {root} was prepared for another video than this run trains on ({'; '.join(differences)}). "
                "Prepare the videos again with the run's --width/--height/--fps/--frames, or set the config's [data] "
                "values to the dataset's."
            )
        with open(os.path.join(root, MANIFEST), encoding="utf-8") as f:
            self.rows = [json.loads(line) for line in f if line.strip()]
        if not self.rows:
            raise DatasetMismatchError(f"The dataset {root} holds no clips (see its dropped.jsonl for why).")
        if need_faces:
            missing = [row["clip"] for row in self.rows if "face_embedding" not in row["fields"]]
            if missing:
                raise DatasetMismatchError(
                    f"The identity module trains on ArcFace embeddings, but {len(missing)} clips of {root} have none "
                    f"(e.g. {missing[0]}). Prepare the dataset with --arcface, or set [modules] identity = false."
                )
        self.calibration = None
        calibration_path = os.path.join(root, CALIBRATION)
        if os.path.isfile(calibration_path):
            self.calibration = MotionCalibration.from_json(_read_json(calibration_path, ""), source=calibration_path)
        elif need_omega:
            raise DatasetMismatchError(
                f"The motion network trains on ω measured against the dataset's calibration, but {root} has no "
                f"{CALIBRATION} (it needs at least two clips whose motion differs, and a finished preparation run). "
                "Add videos and run the preparation again, or set [modules] motion = false."
            )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        with safe_open(os.path.join(self.root, row["shard"]), framework="pt") as f:
            item = {name: f.get_tensor(f"{row['clip']}.{name}") for name in FIELDS}
            if "face_embedding" in row["fields"]:
                item["face_embedding"] = f.get_tensor(f"{row['clip']}.face_embedding")
            text = f.get_tensor(row["text"])
        item["text"] = torch.zeros((TEXT_TOKENS, text.shape[1]), dtype=text.dtype)
        item["text"][: min(len(text), TEXT_TOKENS)] = text[:TEXT_TOKENS]
        if self.calibration is not None:
            item["omega"] = torch.tensor(
                [self.calibration.omega_lip(row["omega_lip_raw"]), self.calibration.omega_body(row["omega_body_raw"])], dtype=torch.float32
            )
        return item
