"""ArcFace identity embeddings on onnxruntime, from insightface's recognition models (w600k_r50.onnx of buffalo_l,
glintr100.onnx of antelopev2). insightface itself is not needed; either onnxruntime or onnxruntime-gpu is."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
SELECT_ARCFACE = "Select w600k_r50.onnx (buffalo_l pack) or glintr100.onnx (antelopev2 pack) as the ArcFace model."


class ArcFaceEncoder:
    """Embeds aligned face crops (``align.align_face``) as L2-normalised vectors [N, D] (D = 512 for both models).

    ``device``: "auto" (CUDA when onnxruntime offers it, else CPU), "cpu" or "cuda". ``provider`` is the execution
    provider that actually runs: onnxruntime-gpu can offer CUDA and still fall back to CPU.
    """

    def __init__(self, model_path, device: str = "auto"):
        ort = _import_onnxruntime()
        self.model_path = path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"The ArcFace model file {path} does not exist. {SELECT_ARCFACE}")
        requested = _providers_for(device, ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(path), providers=requested)
        except Exception as error:  # onnxruntime raises several unrelated types for unreadable files
            raise ValueError(
                f"onnxruntime could not read {path.name} as an ONNX model ({type(error).__name__}: {error}). The file "
                "is probably incomplete or corrupt: download it again."
            ) from error
        self.provider = self._session.get_providers()[0]
        if CUDA in requested and self.provider != CUDA:
            logger.warning(
                "ArcFace asked onnxruntime for CUDA but it runs %s on %s (check that onnxruntime-gpu matches your CUDA "
                "and cuDNN versions); embeddings are computed on the CPU, more slowly.",
                self.provider,
                path.name,
            )
        self.input_size, self.embedding_dim, self._batched = _check_signature(self._session, path.name)

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        """aligned: uint8 RGB [N, size, size, 3] (or one [size, size, 3]) -> float32 [N, D], unit length."""
        if not isinstance(aligned, np.ndarray) or aligned.dtype != np.uint8:
            raise ValueError("ArcFace takes aligned face crops as a uint8 RGB array [N, size, size, 3].")
        if aligned.ndim == 3:
            aligned = aligned[None]
        expected = (self.input_size, self.input_size, 3)
        if aligned.ndim != 4 or aligned.shape[1:] != expected:
            raise ValueError(
                f"{self.model_path.name} takes aligned faces of {self.input_size}x{self.input_size} RGB pixels; got an "
                f"array of shape {aligned.shape}. Align with align_face(..., size={self.input_size})."
            )
        pixels = (aligned.astype(np.float32) - 127.5) / 127.5  # insightface's ArcFaceONNX normalisation, RGB order
        blob = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
        name = self._session.get_inputs()[0].name
        if self._batched:
            features = self._session.run(None, {name: blob})[0]
        else:  # the model's batch axis is fixed at 1
            features = np.concatenate([self._session.run(None, {name: one[None]})[0] for one in blob])
        features = features.astype(np.float32).reshape(len(blob), -1)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        if not np.isfinite(features).all() or not (norms > 0).all():
            raise ValueError(
                f"{self.model_path.name} returned an unusable embedding (not finite or all zero). The model file may be "
                "damaged: download it again."
            )
        return features / norms


def _check_signature(session, file_name: str) -> tuple[int, int | None, bool]:
    """(crop size, embedding width or None when dynamic, whether the batch axis is free)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape if inputs else []
    size = shape[2] if len(shape) == 4 else None
    looks_right = (
        len(inputs) == 1
        and len(outputs) == 1
        and len(shape) == 4
        and shape[1] == 3
        and isinstance(size, int)
        and size == shape[3]
        and size >= 112
        and size % 16 == 0
        and inputs[0].type == "tensor(float)"
        and len(outputs[0].shape) == 2
    )
    if not looks_right:
        found = ", ".join(str(i.shape) for i in inputs) + " -> " + ", ".join(str(o.shape) for o in outputs)
        raise ValueError(
            f"{file_name} is not an ArcFace face-recognition model: expected one input [N, 3, 112, 112] and one output "
            f"[N, 512]; found {found}{_what_it_looks_like(inputs, outputs)}. {SELECT_ARCFACE}"
        )
    width = outputs[0].shape[1]
    return size, width if isinstance(width, int) else None, shape[0] != 1


def _what_it_looks_like(inputs, outputs) -> str:
    shape = inputs[0].shape if inputs else []
    side = shape[2] if len(shape) == 4 else None
    if len(outputs) >= 5:
        return ", which looks like a face detector (det_10g.onnx)"
    if side == 192:
        return ", which looks like a landmark model (2d106det.onnx or 1k3d68.onnx)"
    if side == 96:
        return ", which looks like the gender/age model (genderage.onnx)"
    if len(inputs) == 2:
        return ", which looks like a face-swap model (inswapper_128.onnx)"
    return ""


def _providers_for(device: str, available: list[str]) -> list[str]:
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        if CUDA not in available:
            raise ValueError(
                f"device='cuda' needs onnxruntime-gpu, but this onnxruntime offers only {', '.join(available)}. "
                "Install onnxruntime-gpu in place of onnxruntime (never both: they share one folder), or use "
                "device='auto' or 'cpu'."
            )
        return [CUDA, CPU]
    if device == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    raise ValueError(f"ArcFace device must be 'auto', 'cpu' or 'cuda'; got {device!r}.")


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "ArcFace runs on onnxruntime: `pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` (NVIDIA "
            f"GPUs); install one of the two, never both. ({error})"
        ) from error
    return onnxruntime
