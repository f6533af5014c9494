"""FID's feature network: pytorch-fid's Inception (TensorFlow's "2015-12-05" graph ported to PyTorch,
``pt_inception-2015-12-05-6726825d.pth``), giving the 2048-d pool features of each frame.

The file holds torchvision's ``inception_v3(num_classes=1008, aux_logits=False)`` state dict; the graph differs from
torchvision's in the pooling branch of the Mixed blocks: TensorFlow's 3×3 average pool does not count the zero padding
(Mixed_5b–5d, 6b–6e, 7b), and the last block (Mixed_7c) max-pools instead. Everything else is torchvision's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.inception import BasicConv2d, Inception3, InceptionA, InceptionAux, InceptionB, InceptionC, InceptionD, InceptionE

from ..weights import CheckpointError
from .catalog import BY_KEY
from .state_files import COUNTER, check_layout, read_state

FEATURES = 2048
MIXED_BLOCKS = tuple(f"Mixed_{name}" for name in "5b 5c 5d 6a 6b 6c 6d 6e 7a 7b 7c".split())


@dataclass(frozen=True)
class FidProtocol:
    """pytorch-fid's preprocessing: each frame, as floats in 0..1, is resized to ``size``×``size`` with
    ``torch.nn.functional.interpolate`` (``filter``, align_corners=False, ``antialias``; without antialiasing, as
    pytorch-fid, so a 512 px frame is sampled rather than averaged down), then mapped to −1..1. Every frame of every
    video is used (Wav2Lip's protocol for talking heads)."""

    size: int = 299
    filter: str = "bilinear"
    antialias: bool = False
    frames: str = "every frame of every video"
    features: str = "pool3, 2048-d (the average pool after Mixed_7c)"


def _padding_excluded_average_pool(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's 3×3 average pool: border outputs average only the pixels inside the image (torchvision counts
    the zero padding)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class _FidInceptionA(InceptionA):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        five = self.branch5x5_2(self.branch5x5_1(x))
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), five, double, self.branch_pool(_padding_excluded_average_pool(x))]


class _FidInceptionC(InceptionC):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return [self.branch1x1(x), seven, double, self.branch_pool(_padding_excluded_average_pool(x))]


class _FidInceptionE(InceptionE):
    pool = staticmethod(_padding_excluded_average_pool)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        three = self.branch3x3_1(x)
        three = torch.cat([self.branch3x3_2a(three), self.branch3x3_2b(three)], 1)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        double = torch.cat([self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)], 1)
        return [self.branch1x1(x), three, double, self.branch_pool(self.pool(x))]


class _FidInceptionEMaxPool(_FidInceptionE):
    pool = staticmethod(_max_pool)  # the TensorFlow graph max-pools here, where the Inception paper average-pools


class FidInception(Inception3):
    """torchvision's Inception3 with the FID graph's blocks; ``forward`` gives pool features, not logits. The
    auxiliary classifier is absent and ``fc`` (1008 classes) is kept only because the weight file holds it."""

    def __init__(self, protocol: FidProtocol = FidProtocol()):
        blocks = [BasicConv2d, _FidInceptionA, InceptionB, _FidInceptionC, InceptionD, _FidInceptionE, InceptionAux]
        super().__init__(num_classes=1008, aux_logits=False, transform_input=False, inception_blocks=blocks, init_weights=False)
        self.Mixed_7c = _FidInceptionEMaxPool(2048)
        self.protocol = protocol

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] floats in 0..1 (RGB) -> [N, 2048]: resized to 299×299 (bilinear, no antialiasing, as pytorch-fid's
        resize_input) and mapped to −1..1 (its normalize_input) first."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"the FID Inception takes RGB images [N, 3, H, W] in 0..1; got a tensor of shape {list(images.shape)}.")
        size = self.protocol.size
        x = F.interpolate(images, size=(size, size), mode=self.protocol.filter, align_corners=False, antialias=self.protocol.antialias)
        x = 2 * x - 1
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        for name in MIXED_BLOCKS:
            x = getattr(self, name)(x)
        return self.avgpool(x).flatten(1)


def _refuse(path: str, problem: str) -> None:
    entry = BY_KEY["inception"]
    raise CheckpointError(f"'{path}' is not pytorch-fid's FID Inception ({entry.name}): {problem}. Download it from {entry.url}.")


def load_inception(path: str, device: str | torch.device = "cpu") -> FidInception:
    """The FID Inception from ``pt_inception-2015-12-05-6726825d.pth`` (read with weights_only=True, or the same keys
    as .safetensors), in eval mode on ``device``. Every key and shape is checked: a file of another layout (such as
    torchvision's own Inception, with AuxLogits and 1000 classes) raises a CheckpointError listing what differs."""
    state = read_state(path, _refuse)
    with torch.device("meta"):
        model = FidInception()
    expected = {key: value.shape for key, value in model.state_dict().items() if not key.endswith(COUNTER)}
    check_layout(path, state, expected, _refuse)
    state = {key: state[key] for key in expected}
    state.update({key: torch.zeros((), dtype=torch.long) for key in model.state_dict() if key.endswith(COUNTER)})
    model.load_state_dict(state, assign=True)
    return model.eval().requires_grad_(False).to(device)


def frame_features(model: FidInception, frames: np.ndarray, batch: int = 16) -> torch.Tensor:
    """The pool features [T, 2048] (float32, CPU) of a video's frames [T, H, W, 3] uint8 RGB, ``batch`` at a time."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        found = f"{frames.dtype} {list(frames.shape)}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"FID frames must be a uint8 array [T, H, W, 3] (RGB); got {found}.")
    parameter = next(model.parameters())
    features = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch):
            chunk = torch.from_numpy(frames[start : start + batch]).to(parameter.device).permute(0, 3, 1, 2)
            features.append(model(chunk.to(parameter.dtype) / 255).float().cpu())
    return torch.cat(features) if features else torch.zeros(0, FEATURES)
