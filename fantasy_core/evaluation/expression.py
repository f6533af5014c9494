"""ES, expression similarity: Deep3DFaceRecon's expression coefficients of the face in every frame, compared by cosine
with the reference's. Optional (its weights are not in the default set).

The paper (Sec. 4.1) extracts "facial features between video frames" with Deng et al. 2019 and takes their
similarity, without code. Our definition:

- Features: the R-Net of ``sicxu/Deep3DFaceRecon_pytorch`` (``checkpoints/face_recon_feat0.2_augment/epoch_20.pth``,
  renamed ``deep3dfacerecon_epoch_20.pth``) maps an aligned 224 × 224 face to 257 coefficients (80 identity,
  64 expression, 80 texture, 3 angles, 27 lighting, 2 + 1 translation). The expression coefficients are 80:144 (64-d).
- Alignment (Deep3DFaceRecon's ``align_img``, restated): the five keypoints of ``identity.face.DetectedFace`` (eyes,
  nose tip, mouth corners, in that order) with y turned upwards (y' = H − 1 − y) are fitted by least squares to the
  standard 3D landmarks of the face model (the mean face's eye centres, nose tip and mouth corners, from
  ``BFM/similarity_Lm3D_all.mat``) through an affine camera; s is the mean norm of the camera's two rows and (tx, ty)
  its translation. The frame is resized by S = 102 / s to (int(W·S), int(H·S)) (PIL's antialiased bicubic,
  restated as separable weights and, as PIL does, rounded to 8 bits between its horizontal and vertical pass) and a
  224 × 224 box is cut at left = int(int(W·S)/2 − 112 + (tx − W/2)·S), top = int(int(H·S)/2 − 112 + (H/2 − ty)·S),
  black outside the picture. The landmarks of a frontal face then lie at
  (112 + 102·X, 112 − 102·Y) for the standard points (X, Y, Z). Pixels / 255, RGB, go to the R-Net.
  Our keypoints are MediaPipe's (iris centres, nose tip, mouth corners) or SCRFD's, where Deep3DFaceRecon takes the
  eye-corner means of 68 landmarks: the crop can sit a pixel or two apart.
- The face of a frame is its largest detected face of at least ``min_face_size`` px.
- ES of a generated video = the mean, over the frames t where both have a face, of
  cos(exp(frame_t), exp(reference_t)). The reference is the reference video's frame t when a reference video is given
  (the tame/HDTF case; frames paired by index up to the shorter length), else the source portrait (one reference for
  every frame). Frames without a face (or whose reference frame has none) are left out and counted. 1 when every
  frame makes the reference's expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..identity.face import DetectedFace, require_rgb_uint8
from ..weights import CheckpointError
from .catalog import BY_KEY
from .dino import require_images
from .state_files import COUNTER, check_layout, read_state

COEFFICIENT_WIDTHS = (80, 64, 80, 3, 27, 2, 1)  # identity, expression, texture, angles, lighting, xy and z translation
EXPRESSION = slice(80, 144)
CHECKPOINT_ENTRY = "net_recon"  # the R-Net's state dict inside Deep3DFaceRecon's epoch_*.pth

# The mean face's five landmarks (eye centres, nose tip, mouth corners; x right, y up, z towards the camera), as
# Deep3DFaceRecon's load_lm3d derives them from BFM/similarity_Lm3D_all.mat.
STANDARD_LANDMARKS = (
    (-0.31148657, 0.29036078, 0.13377953),
    (0.30979887, 0.28972036, 0.13179526),
    (0.0032535, -0.04617932, 0.55244243),
    (-0.25216928, -0.38133916, 0.22405732),
    (0.2484662, -0.38128236, 0.22235769),
)
REFERENCES = ("auto", "video", "portrait")


@dataclass(frozen=True)
class EsProtocol:
    """What ES depends on; written beside every result (the module docstring defines ES).

    ``reference``: ``"auto"`` (the reference video when one is given, else the portrait), or ``"video"`` /
    ``"portrait"`` to require that one. The alignment constants are Deep3DFaceRecon's; ``resize`` names its filter."""

    reference: str = "auto"
    target_size: int = 224
    rescale_factor: float = 102.0
    standard_landmarks: tuple[tuple[float, float, float], ...] = STANDARD_LANDMARKS
    resize: str = "bicubic, antialiased (PIL's kernel, a = -0.5)"
    coefficients: str = "expression, 80:144 of the R-Net's 257"
    min_face_size: int = 50  # pixels, as SyncProtocol and IdcProtocol

    def __post_init__(self):
        if self.reference not in REFERENCES:
            raise ValueError(f"EsProtocol.reference must be one of {list(REFERENCES)}; got {self.reference!r}.")
        if np.asarray(self.standard_landmarks).shape != (5, 3):
            raise ValueError(f"EsProtocol.standard_landmarks must be five (x, y, z) points; got {self.standard_landmarks!r}.")
        if self.target_size < 32 or not self.rescale_factor > 0 or self.min_face_size < 0:
            raise ValueError(
                f"EsProtocol needs target_size >= 32, rescale_factor > 0 and min_face_size >= 0; got {self.target_size}, "
                f"{self.rescale_factor} and {self.min_face_size}."
            )


# --- the R-Net -----------------------------------------------------------------------------------------------------


class FaceReconNet(nn.Module):
    """Deep3DFaceRecon's R-Net: torchvision's ResNet-50 without its classifier, then one 1×1 convolution per
    coefficient group on the pooled 2048-d feature. [N, 3, 224, 224] RGB in 0..1 -> [N, 257]."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        self.backbone = resnet50(weights=None)
        self.backbone.fc = nn.Identity()  # the R-Net's ResNet has no fc: its state dict has no backbone.fc.*
        self.final_layers = nn.ModuleList(nn.Conv2d(2048, width, kernel_size=1) for width in COEFFICIENT_WIDTHS)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.backbone(images)[:, :, None, None]  # [N, 2048, 1, 1]
        return torch.cat([layer(pooled) for layer in self.final_layers], 1).flatten(1)


def _refuse(path: str, problem: str) -> None:
    entry = BY_KEY["face_recon"]
    raise CheckpointError(
        f"'{path}' is not Deep3DFaceRecon's R-Net ({entry.name}): {problem}. Download {entry.source} into the "
        f"evaluation weights folder (ComfyUI/models/evaluation/) as {entry.name}."
    )


def _check_layout(path: str, state, expected: dict[str, torch.Size]) -> None:
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        found = sorted(map(str, state))[:6] if isinstance(state, dict) else type(state).__name__
        _refuse(path, f"it holds {found}, neither a '{CHECKPOINT_ENTRY}' entry nor a state dict of tensors")
    if "fc.weight" in state and not any(key.startswith("backbone.") for key in state):
        _refuse(
            path, "it is a plain torchvision ResNet (conv1.weight ... fc.weight: an image classifier), not the R-Net with its final_layers"
        )
    check_layout(path, state, expected, _refuse)


def load_face_recon(path: str, device: str | torch.device = "cpu") -> FaceReconNet:
    """The R-Net from Deep3DFaceRecon's checkpoint (a dict whose ``net_recon`` entry is the state dict, as
    ``epoch_20.pth``; or that state dict alone, .pth or .safetensors), read with weights_only=True, every key and
    shape checked, in eval mode on ``device``. Another layout raises a CheckpointError naming what differs."""
    state = read_state(path, _refuse)
    if isinstance(state, dict) and CHECKPOINT_ENTRY in state:
        state = state[CHECKPOINT_ENTRY]
    with torch.device("meta"):
        model = FaceReconNet()
    expected = {key: value.shape for key, value in model.state_dict().items() if not key.endswith(COUNTER)}
    _check_layout(path, state, expected)
    state = {key: state[key].float() for key in expected}
    state.update({key: torch.zeros((), dtype=torch.long) for key in model.state_dict() if key.endswith(COUNTER)})
    model.load_state_dict(state, assign=True)
    return model.eval().requires_grad_(False).to(device)


# --- alignment -----------------------------------------------------------------------------------------------------


def fit_scale_translation(keypoints, image_height: int, protocol: EsProtocol = EsProtocol()) -> tuple[float, np.ndarray]:
    """(s, (tx, ty)): the least-squares affine camera from the standard 3D landmarks to the five keypoints [5, 2]
    (image x, y; y is turned upwards first, as Deep3DFaceRecon's landmark files are read): s is the mean norm of its
    two rows, (tx, ty) where it puts the model's origin (y upwards)."""
    points = np.asarray(keypoints, dtype=np.float64).reshape(5, 2)
    image = np.stack([points[:, 0], image_height - 1 - points[:, 1]], 1)
    model = np.asarray(protocol.standard_landmarks, dtype=np.float64)
    design = np.concatenate([model, np.ones((5, 1))], 1)  # [5, 4]: x and y are fitted independently
    camera = np.linalg.lstsq(design, image, rcond=None)[0]  # [4, 2]
    scale = (np.linalg.norm(camera[:3, 0]) + np.linalg.norm(camera[:3, 1])) / 2
    return float(scale), camera[3]


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    """PIL's cubic kernel (a = -0.5)."""
    a, x = -0.5, x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _resize_rows(in_size: int, out_size: int, first: int, count: int) -> torch.Tensor:
    """[count, in_size] weights of output pixels first .. first + count − 1 of an antialiased bicubic resize from
    ``in_size`` to ``out_size`` pixels (PIL's: the kernel widened by the scale when shrinking, weights normalised); an
    output pixel outside 0 .. out_size − 1 gets zero weights (black)."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    outputs = torch.arange(first, first + count, dtype=torch.float64)
    centres = (outputs + 0.5) * scale
    inputs = torch.arange(in_size, dtype=torch.float64)
    weights = _bicubic((inputs[None] + 0.5 - centres[:, None]) / stretch)  # zero beyond the kernel's reach
    weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
    inside = (outputs >= 0) & (outputs < out_size)
    return torch.where(inside[:, None], weights, torch.zeros_like(weights))


def crop_box(keypoints, image_height: int, image_width: int, protocol: EsProtocol = EsProtocol()) -> tuple[int, int, int, int]:
    """(resized width, resized height, left, top): the frame is resized to the first two, the crop starts at the last
    two (Deep3DFaceRecon's resize_n_crop_img arithmetic, int() truncating as its astype(int32))."""
    fitted, (tx, ty) = fit_scale_translation(keypoints, image_height, protocol)
    if not fitted > 0:
        raise ValueError(f"the face keypoints {np.asarray(keypoints).tolist()} do not span a face: no scale can be fitted.")
    scale = protocol.rescale_factor / fitted
    width, height = int(image_width * scale), int(image_height * scale)
    half = protocol.target_size / 2
    left = int(width / 2 - half + (tx - image_width / 2) * scale)
    top = int(height / 2 - half + (image_height / 2 - ty) * scale)
    return width, height, left, top


def align_face(frame, keypoints, protocol: EsProtocol = EsProtocol()) -> np.ndarray:
    """The R-Net's input for one face: [S, S, 3] uint8 RGB, S = protocol.target_size (see the module docstring)."""
    frame = require_rgb_uint8(frame, "the frame")
    height, width = frame.shape[:2]
    resized_width, resized_height, left, top = crop_box(keypoints, height, width, protocol)
    size = protocol.target_size
    rows = _resize_rows(height, resized_height, top, size)  # [S, H]
    columns = _resize_rows(width, resized_width, left, size)  # [S, W]
    pixels = torch.tensor(frame).permute(2, 0, 1).double()  # [3, H, W]
    # only the cut-out part of the resized frame is computed; PIL keeps 8 bits between its horizontal and vertical passes
    across = (pixels @ columns.T).round().clamp(0, 255)  # [3, H, S]
    return (rows @ across).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


# --- ES ------------------------------------------------------------------------------------------------------------


def expression_coefficients(model: FaceReconNet, frames, faces, protocol: EsProtocol = EsProtocol(), batch: int = 16) -> torch.Tensor:
    """Expression coefficients [N, 64] (float32, CPU) of the face ``faces[i]`` (a DetectedFace) in each frame of
    uint8 RGB frames [N, H, W, 3]: the aligned face through the R-Net, coefficients 80:144."""
    frames = require_images(frames, "the frames")
    faces = list(faces)
    if len(faces) != len(frames) or not all(isinstance(face, DetectedFace) for face in faces):
        raise ValueError(f"expression_coefficients needs one DetectedFace per frame: {len(frames)} frames, got {len(faces)} faces.")
    parameter = next(model.parameters())
    coefficients = [torch.zeros(0, EXPRESSION.stop - EXPRESSION.start)]
    with torch.inference_mode():
        for start in range(0, len(frames), batch):
            pairs = zip(frames[start : start + batch], faces[start : start + batch])
            crops = np.stack([align_face(frame, face.keypoints, protocol) for frame, face in pairs])
            # contiguous: ResNet's convolutions on the permuted (channels-last) view run about 3x slower on CPU
            pixels = torch.from_numpy(crops).to(parameter.device).permute(0, 3, 1, 2).contiguous().to(parameter.dtype) / 255
            coefficients.append(model(pixels)[:, EXPRESSION].float().cpu())
    return torch.cat(coefficients)


def expression_similarity(expressions: torch.Tensor, references: torch.Tensor) -> float:
    """The mean over frames of cos(expressions[t], references[t]), [K, 64] each (or one reference [64] for every
    frame), in float64."""
    if expressions.dim() != 2 or len(expressions) < 1 or references.shape not in (expressions.shape, expressions.shape[1:]):
        shapes = f"{list(expressions.shape)} and {list(references.shape)}"
        raise ValueError(f"ES needs expressions [K, D] (K >= 1) and references [K, D] or [D]; got {shapes}.")
    references = references.double().expand_as(expressions)
    return float(F.cosine_similarity(expressions.double(), references, dim=-1).mean())


def main_faces(frames, detector, protocol: EsProtocol = EsProtocol()) -> list[DetectedFace | None]:
    """The largest face of at least protocol.min_face_size px in each frame, or None."""
    found = []
    for frame in frames:
        faces = [face for face in detector.detect(frame) if face.size >= protocol.min_face_size]
        found.append(max(faces, key=lambda face: face.area) if faces else None)
    return found


def _reference_kind(protocol: EsProtocol, portrait, reference_frames) -> str:
    if protocol.reference == "auto":
        if reference_frames is None and portrait is None:
            raise ValueError("ES needs a reference: pass the reference video's frames or the source portrait.")
        return "video" if reference_frames is not None else "portrait"
    given = reference_frames if protocol.reference == "video" else portrait
    if given is None:
        wanted = "reference_frames" if protocol.reference == "video" else "portrait"
        raise ValueError(f"EsProtocol.reference is {protocol.reference!r} but no {wanted} was given: pass it, or use reference='auto'.")
    return protocol.reference


def video_expression_similarity(
    model: FaceReconNet, frames, detector, protocol: EsProtocol = EsProtocol(), portrait=None, reference_frames=None, batch: int = 16
) -> dict:
    """One video's ES row: ``es`` (None unless scored), ``es_status`` ("scored"; "no_face" when no compared frame has
    a face; "no_reference_face" when the reference has none), ``es_detail`` (why not scored, or what was left out),
    ``es_reference`` ("video" or "portrait"), ``es_frames`` (frames compared: the video's, or those paired with the
    reference video up to the shorter length) and ``es_face_frames`` (frames scored). ``portrait`` [H, W, 3] uint8;
    ``reference_frames`` [M, H', W', 3] uint8; ``detector.detect(image)`` lists DetectedFaces."""
    kind = _reference_kind(protocol, portrait, reference_frames)
    frames = require_images(frames, "the frames")
    notes = []
    if kind == "video":
        references = require_images(reference_frames, "the reference video's frames")
        paired = min(len(frames), len(references))
        if len(frames) != len(references):
            notes.append(f"frames paired by index: the first {paired} of {len(frames)} generated and {len(references)} reference frames")
        frames, references = frames[:paired], references[:paired]
    else:
        references = require_rgb_uint8(portrait, "the portrait")[None]
    row = {"es": None, "es_status": "scored", "es_detail": "", "es_reference": kind, "es_frames": len(frames), "es_face_frames": 0}
    faces = main_faces(frames, detector, protocol)
    with_face = [index for index, face in enumerate(faces) if face is not None]
    if not with_face:
        detail = f"no face of at least {protocol.min_face_size} px in any of {len(frames)} frames"
        return {**row, "es_status": "no_face", "es_detail": detail}
    reference_faces = main_faces(references, detector, protocol)
    if all(face is None for face in reference_faces):
        detail = f"no face of at least {protocol.min_face_size} px in the {'reference video' if kind == 'video' else 'portrait'}"
        return {**row, "es_status": "no_reference_face", "es_detail": detail}
    if kind == "video":
        scored = [index for index in with_face if reference_faces[index] is not None]
        if not scored:
            return {**row, "es_status": "no_face", "es_detail": "no frame has a face in both the video and the reference video"}
        reference_expressions = expression_coefficients(model, references[scored], [reference_faces[i] for i in scored], protocol, batch)
    else:
        scored = with_face
        reference_expressions = expression_coefficients(model, references, reference_faces, protocol, batch)[0]
    expressions = expression_coefficients(model, frames[scored], [faces[i] for i in scored], protocol, batch)
    if len(with_face) < len(frames):
        notes.append(f"{len(frames) - len(with_face)} of {len(frames)} frames without a face left out")
    if len(scored) < len(with_face):
        notes.append(f"{len(with_face) - len(scored)} frames whose reference frame has no face left out")
    scores = {"es": expression_similarity(expressions, reference_expressions), "es_face_frames": len(scored)}
    return {**row, **scores, "es_detail": "; ".join(notes)}
