"""FVD's feature network: StyleGAN-V's TorchScript I3D (Kinetics-400, the TF-Hub weights of Google's FVD),
``i3d_torchscript.pt``, giving 400-d features (the logits before the softmax) per 16-frame clip.

It is called as StyleGAN-V's FVD calls it (``detector_kwargs``): ``model(x, rescale=True, resize=True,
return_features=True)`` with x [B, 3, T, H, W] holding uint8 pixel values 0..255; ``rescale`` maps them to −1..1
inside the network. We bring each frame to 224×224 ourselves (shorter side, then centre crop, as content-debiased
FVD prepares videos), so the network's own ``resize`` (to 224×224, the TF-Hub model's input) has nothing left to do
and the aspect ratio is kept. We pass float32 tensors holding integers, which the network's ``x / 255 * 2 - 1``
treats exactly as StyleGAN-V's uint8 tensors."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..weights import CheckpointError
from .catalog import BY_KEY

FEATURES = 400


class TooFewFramesError(ValueError):
    """A video shorter than one FVD clip."""


@dataclass(frozen=True)
class FvdProtocol:
    """What an FVD number depends on; written beside every result. Clips of ``clip_frames`` consecutive frames start
    at frame 0 and every ``clip_stride`` frames after it (non-overlapping by default: an 81-frame video gives 5 clips,
    its last frame unused), so every video contributes all of its length and the choice involves no randomness.
    Frames are resized (``filter``, ``antialias``, torch's interpolate) so the shorter side is ``size`` (the longer
    side rounded up), centre-cropped to ``size``×``size`` and rounded to integer pixel values, as uint8 frames would
    be. ``rescale`` and ``resize`` are the network's own flags (StyleGAN-V's values)."""

    clip_frames: int = 16
    clip_stride: int = 16
    size: int = 224
    filter: str = "bilinear"
    antialias: bool = True
    rescale: bool = True
    resize: bool = True


def _refuse(path: str, problem: str) -> None:
    entry = BY_KEY["i3d"]
    raise CheckpointError(f"'{path}' is not StyleGAN-V's FVD I3D ({entry.name}): {problem}. Download it from {entry.source}: {entry.url}")


def _device_of(model) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _call(model, clips: torch.Tensor, protocol: FvdProtocol) -> torch.Tensor:
    """clips [B, 3, T, S, S] with pixel values 0..255 -> [B, 400]."""
    x = clips if protocol.rescale else clips / 127.5 - 1  # without rescale the network expects -1..1
    return model(x, rescale=protocol.rescale, resize=protocol.resize, return_features=True)


def load_i3d(path: str, device: str | torch.device = "cpu", protocol: FvdProtocol = FvdProtocol()):
    """The I3D TorchScript module in eval mode on ``device``. One mid-grey clip is run through it to check that it takes
    StyleGAN-V's call and returns [B, 400] (about a second on a CPU); anything else raises a CheckpointError."""
    if not os.path.isfile(path):
        _refuse(path, "the file does not exist")
    try:
        model = torch.jit.load(path, map_location=device)
    except Exception as error:  # TorchScript's reader raises RuntimeError or ValueError for anything else
        _refuse(path, f"it is not a TorchScript archive ({type(error).__name__}: {str(error).splitlines()[0]})")
    model.eval()
    probe = torch.full((1, 3, protocol.clip_frames, protocol.size, protocol.size), 128.0, device=_device_of(model))
    try:
        with torch.inference_mode():
            features = _call(model, probe, protocol)
    except Exception as error:
        _refuse(
            path,
            "its forward does not take (x [B, 3, T, H, W], rescale=, resize=, return_features=) "
            f"({type(error).__name__}: {str(error).strip().splitlines()[0]})",
        )
    _check_features(features, 1, path)
    return model


def _check_features(features, clips: int, path: str) -> None:
    if not isinstance(features, torch.Tensor) or tuple(features.shape) != (clips, FEATURES):
        found = list(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        _refuse(path, f"for {clips} clip(s) it returns {found}, not the [{clips}, {FEATURES}] Kinetics-400 features")


def _shorter_side_and_centre_crop(frames: torch.Tensor, protocol: FvdProtocol) -> torch.Tensor:
    """[N, 3, H, W] float 0..255 -> [N, 3, size, size], rounded to integers."""
    height, width = frames.shape[-2:]
    size, short = protocol.size, min(height, width)
    target = (size, -(-width * size // short)) if height <= width else (-(-height * size // short), size)
    resized = F.interpolate(frames, size=target, mode=protocol.filter, align_corners=False, antialias=protocol.antialias)
    top, left = (target[0] - size) // 2, (target[1] - size) // 2
    return resized[:, :, top : top + size, left : left + size].round().clamp(0, 255)


def clip_starts(frame_count: int, protocol: FvdProtocol = FvdProtocol()) -> list[int]:
    """The first frame of each clip; a video shorter than one clip raises TooFewFramesError."""
    if frame_count < protocol.clip_frames:
        raise TooFewFramesError(
            f"the video has {frame_count} frames; FVD scores clips of {protocol.clip_frames} consecutive frames, so it "
            f"needs at least {protocol.clip_frames}. Leave it out of the FVD set or generate a longer video."
        )
    return list(range(0, frame_count - protocol.clip_frames + 1, protocol.clip_stride))


def video_features(model, frames: np.ndarray, protocol: FvdProtocol = FvdProtocol(), batch: int = 4) -> torch.Tensor:
    """The I3D features [clips, 400] (float32, CPU) of a video's frames [T, H, W, 3] uint8 RGB, ``batch`` clips at a
    time (one clip is 16×224×224×3 floats, 10 MB, before the network's own activations)."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        found = f"{frames.dtype} {list(frames.shape)}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"FVD frames must be a uint8 array [T, H, W, 3] (RGB); got {found}.")
    starts = clip_starts(len(frames), protocol)
    device, length = _device_of(model), protocol.clip_frames
    features = []
    with torch.inference_mode():
        for first in range(0, len(starts), batch):
            chosen = starts[first : first + batch]
            picked = np.stack([frames[start : start + length] for start in chosen])  # [B, T, H, W, 3]
            pixels = torch.from_numpy(picked).to(device).flatten(0, 1).permute(0, 3, 1, 2).float()
            pixels = _shorter_side_and_centre_crop(pixels, protocol)
            clips = pixels.unflatten(0, (len(chosen), length)).transpose(1, 2)  # [B, 3, T, S, S]
            output = _call(model, clips, protocol)
            _check_features(output, len(chosen), "the I3D module")
            features.append(output.float().cpu())
    return torch.cat(features)
