"""The metric networks' weights: file (or Hugging Face folder) name, where to get it, the metrics that need it, and
the SHA-256 prefix where the publisher put one in the file name. All live in one folder, ComfyUI/models/evaluation/
by default, like every other model file of the pack."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

FOLDER = "evaluation"  # ComfyUI/models/evaluation


@dataclass(frozen=True)
class MetricWeights:
    key: str
    name: str  # a file, or a folder for Hugging Face models (config.json + weights)
    metrics: tuple[str, ...]
    source: str  # where to get it, in words a person can follow
    url: str | None = None  # a direct download address (torch.hub), or None
    hf_repo: str | None = None  # a Hugging Face repository to download the folder from, or None
    sha256_prefix: str | None = None  # published in the file name (torch.hub's convention)
    optional: bool = False  # a metric that is off unless asked for

    @property
    def is_folder(self) -> bool:
        return self.hf_repo is not None


WEIGHTS = (
    MetricWeights(
        "syncnet",
        "syncnet_v2.model",
        ("sync",),
        "joonson/syncnet_python, download_model.sh",
        url="https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
    ),
    MetricWeights(
        "inception",
        "pt_inception-2015-12-05-6726825d.pth",
        ("fid",),
        "mseitzer/pytorch-fid, release fid_weights",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        sha256_prefix="6726825d",
    ),
    MetricWeights(
        "i3d",
        "i3d_torchscript.pt",
        ("fvd",),
        "universome/stylegan-v (src/metrics/frechet_video_distance.py names the address)",
        url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    ),
    MetricWeights("dino", "dino-vitb16", ("idc",), "Hugging Face facebook/dino-vitb16 (the folder)", hf_repo="facebook/dino-vitb16"),
    MetricWeights(
        "clip",
        "clip-vit-large-patch14",
        ("aesthetic",),
        "Hugging Face openai/clip-vit-large-patch14 (the folder)",
        hf_repo="openai/clip-vit-large-patch14",
    ),
    MetricWeights(
        "aesthetic_head",
        "sa_0_4_vit_l_14_linear.pth",
        ("aesthetic",),
        "LAION-AI/aesthetic-predictor (the v1 linear head)",
        url="https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth",
    ),
    MetricWeights(
        "raft",
        "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        ("sd", "bd"),
        "torchvision Raft_Large_Weights.C_T_SKHT_V2",
        url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        sha256_prefix="ff5fadd5",
    ),
    MetricWeights(
        "sam",
        "sam-vit-base",
        ("sd", "bd"),
        "Hugging Face facebook/sam-vit-base (the folder; SD / BD's person mask instead of MediaPipe's bundled one)",
        hf_repo="facebook/sam-vit-base",
        optional=True,
    ),
    MetricWeights(
        "face_recon",
        "deep3dfacerecon_epoch_20.pth",
        ("es",),
        "sicxu/Deep3DFaceRecon_pytorch (checkpoints/face_recon_feat0.2_augment/epoch_20.pth, renamed)",
        optional=True,
    ),
)
BY_KEY = {entry.key: entry for entry in WEIGHTS}


def exists(path: str, entry: MetricWeights) -> bool:
    """The file, or the Hugging Face folder with its config.json."""
    return os.path.isfile(os.path.join(path, "config.json")) if entry.is_folder else os.path.isfile(path)


def is_present(folder: str, entry: MetricWeights) -> bool:
    return exists(os.path.join(folder, entry.name), entry)


def describe_missing(folder: str, entries) -> str:
    """Every missing file at once, each with its folder and source."""
    return "; ".join(f"{entry.name} ({', '.join(entry.metrics)}) from {entry.source}" for entry in entries) + f", into {folder}"


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
