"""SyncNet's two towers: 5 face crops (224 x 224, BGR, 0-255, 25 fps) and 0.2 s of MFCCs (13 x 20 at 100 Hz), each
to a 1024-wide embedding. Layer sizes and key names are those of the released ``syncnet_v2.model`` (a plain state
dict, loaded without pickled code)."""

from __future__ import annotations

import os

import torch
from torch import nn

from ..weights import CheckpointError


def _conv2d(cin, cout, kernel, stride=1, padding=1):
    return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU()]


def _conv3d(cin, cout, kernel, stride=1, padding=0):
    return [nn.Conv3d(cin, cout, kernel, stride, padding), nn.BatchNorm3d(cout), nn.ReLU()]


def _head(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, width))


class SyncNet(nn.Module):
    def __init__(self, embedding_dim: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv2d(1, 64, 3),
            nn.MaxPool2d(1, 1),
            *_conv2d(64, 192, 3),
            nn.MaxPool2d(3, (1, 2)),
            *_conv2d(192, 384, 3),
            *_conv2d(384, 256, 3),
            *_conv2d(256, 256, 3),
            nn.MaxPool2d(3, 2),
            *_conv2d(256, 512, (5, 4), padding=0),
        )
        self.netfcaud = _head(embedding_dim)
        self.netfclip = _head(embedding_dim)
        self.netcnnlip = nn.Sequential(
            *_conv3d(3, 96, (5, 7, 7), (1, 2, 2)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv3d(256, 512, (1, 6, 6)),
        )

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """[N, 1, 13, 20] -> [N, 1024]."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_lips(self, crops: torch.Tensor) -> torch.Tensor:
        """[N, 3, 5, 224, 224] -> [N, 1024]."""
        return self.netfclip(self.netcnnlip(crops).flatten(1))


def load_syncnet(path: str, device: str = "cpu") -> SyncNet:
    """syncnet_v2.model (a torch state dict, read with weights_only=True) or the same keys as .safetensors."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"The SyncNet weights {path} do not exist. Download syncnet_v2.model "
            "(joonson/syncnet_python, download_model.sh) and pass its path."
        )
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{path} could not be read as SyncNet weights ({type(error).__name__}: {error}). Download syncnet_v2.model again."
        ) from error
    model = SyncNet()
    expected = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        found = set(state) if isinstance(state, dict) else set()
        missing, unexpected = sorted(set(expected) - found), sorted(found - set(expected))
        raise CheckpointError(
            f"{path} is not SyncNet's syncnet_v2.model ({len(missing)} keys missing, e.g. "
            f"{missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]})."
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(value.shape)}, SyncNet's is {tuple(expected[key].shape)}.")
    model.load_state_dict(state)
    return model.eval().to(device)
