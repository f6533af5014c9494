"""IDC's DINO and the aesthetic score's CLIP + LAION head: tiny random-weight networks saved in the real Hugging Face
folder layouts (and the head in its real state-dict layout), loaded through the real loaders; features and scores
checked against VBench's transforms restated with torchvision, the consistency formula restated on designed features,
real faces (the astronaut, MediaPipe) for the face crops, and every wrong file refused with what to download."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fantasy_core.evaluation.aesthetic import (
    CLIP_MEAN,
    CLIP_STD,
    AestheticProtocol,
    aesthetic_frame_scores,
    load_aesthetic,
    video_aesthetic,
)
from fantasy_core.evaluation.dino import IdcProtocol, dino_features, face_crops, load_dino, video_identity_consistency
from fantasy_core.evaluation.frame_scores import identity_consistency, identity_consistency_to_reference
from fantasy_core.weights import CheckpointError

transformers = pytest.importorskip("transformers", reason="the DINO and CLIP folders are read with transformers")
transforms = pytest.importorskip("torchvision.transforms", reason="VBench's transforms are restated with torchvision")

PROJECTION = 24  # the tiny CLIP's embedding width (ViT-L/14's is 768)
CLIP_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=224, patch_size=32)


def tiny_vit_config(hidden: int = 32):
    return transformers.ViTConfig(
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=224,
        patch_size=16,
        initializer_range=0.5,
    )


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory):
    """facebook/dino-vitb16's layout: a ViTModel without pooler, saved by save_pretrained (config.json + safetensors)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights") / "dino-vitb16"
    transformers.ViTModel(tiny_vit_config(), add_pooling_layer=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dino(dino_folder):
    return load_dino(str(dino_folder))


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """openai/clip-vit-large-patch14's layout: a whole CLIPModel (text tower included) and its preprocessor_config.json."""
    torch.manual_seed(1)
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = transformers.CLIPConfig(text_config=text, vision_config=CLIP_VISION, projection_dim=PROJECTION)
    folder = tmp_path_factory.mktemp("weights") / "clip-vit-large-patch14"
    transformers.CLIPModel(config).save_pretrained(folder)
    transformers.CLIPImageProcessor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def head_file(tmp_path_factory):
    """sa_0_4_vit_l_14_linear.pth's layout: an nn.Linear(D, 1) state dict."""
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("weights") / "sa_0_4_vit_l_14_linear.pth"
    torch.save(torch.nn.Linear(PROJECTION, 1).state_dict(), path)
    return path


def random_images(count: int, height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


# --- DINO ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(224, 224), (150, 260), (400, 300)])
def test_dino_features_are_the_cls_token_after_vbenchs_transform(dino, height, width):
    """VBench's dino_transform(224) on float frames: shorter side to 224 (bilinear, no antialiasing, no crop), / 255,
    ImageNet mean and std; the CLS token of the last hidden state, position embeddings interpolated off 224 x 224."""
    images = random_images(3, height, width, seed=height)
    vbench = transforms.Compose(
        [
            transforms.Resize(224, antialias=False),
            transforms.Lambda(lambda x: x.float().div(255.0)),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    pixels = vbench(torch.from_numpy(images).permute(0, 3, 1, 2).float())
    assert min(pixels.shape[-2:]) == 224
    with torch.no_grad():
        expected = dino(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state[:, 0]
    features = dino_features(dino, images, batch=2)
    assert features.shape == (3, 32)
    torch.testing.assert_close(features, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(features[0], features[1], atol=1e-3)  # the input matters


def test_identity_consistency_to_a_reference_follows_its_formula_on_designed_features():
    """Unit vectors at known angles: the reference at 0°, frames at 30°, 60°, 150°. Each frame t: the mean of
    max(0, cos) to the frame before it (the reference for the first) and to the reference."""
    radians = torch.deg2rad(torch.tensor([30.0, 60.0, 150.0], dtype=torch.float64))
    frames = torch.stack([radians.cos(), radians.sin()], 1) * torch.tensor([[2.0], [0.5], [3.0]], dtype=torch.float64)
    reference = torch.tensor([5.0, 0.0], dtype=torch.float64)  # lengths do not matter
    cos = lambda angle: math.cos(math.radians(angle))
    expected = ((cos(30) + cos(30)) / 2 + (cos(30) + cos(60)) / 2 + (max(0, cos(90)) + max(0, cos(150))) / 2) / 3
    assert identity_consistency_to_reference(frames, reference) == pytest.approx(expected, abs=1e-12)
    # VBench's first-frame reading differs: frame 30° is the reference and is not scored itself
    first_frame = ((cos(30) + cos(30)) / 2 + (0 + 0) / 2) / 2
    assert identity_consistency(frames) == pytest.approx(first_frame, abs=1e-12)
    # the first frame as the reference is VBench's reading
    assert identity_consistency_to_reference(frames[1:], frames[0]) == pytest.approx(identity_consistency(frames), abs=1e-12)
    assert identity_consistency_to_reference(torch.ones(4, 3), torch.ones(3)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"reference \[D\]"):
        identity_consistency_to_reference(frames, torch.ones(3))


def test_dino_folder_errors_name_the_folder_and_what_to_download(tmp_path, dino_folder, clip_folder):
    with pytest.raises(CheckpointError, match=r"'.*nowhere' does not exist\. Download facebook/dino-vitb16"):
        load_dino(str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match=r"holds a 'clip' model, not 'vit'.*facebook/dino-vitb16"):
        load_dino(str(clip_folder))
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(dino_folder / "config.json", no_weights / "config.json")
    with pytest.raises(CheckpointError, match=r"no_weights' could not be loaded.*Download facebook/dino-vitb16"):
        load_dino(str(no_weights))
    wider = tmp_path / "wider"
    transformers.ViTModel(tiny_vit_config(hidden=48), add_pooling_layer=False).save_pretrained(wider)
    shutil.copy(dino_folder / "config.json", wider / "config.json")  # 48-wide weights under a 32-wide config
    with pytest.raises(
        CheckpointError,
        match=r"wider' has \d+ weight\(s\) of another shape than its config.json gives "
        r"\(e\.g\. embeddings\.cls_token: \[1, 1, 48\], not \[1, 1, 32\]\)",
    ):
        load_dino(str(wider))
    classifier = tmp_path / "classifier"
    transformers.ViTForImageClassification(tiny_vit_config()).save_pretrained(classifier)
    with pytest.raises(CheckpointError, match=r"holds 2 weight\(s\) the model does not have \(e\.g\. classifier\.bias\)"):
        load_dino(str(classifier))


def test_the_reference_must_agree_with_the_protocol(dino):
    frames = random_images(2, 64, 64, seed=0)
    with pytest.raises(ValueError, match="reference is 'portrait' but no portrait was given"):
        video_identity_consistency(dino, frames, detector=None, protocol=IdcProtocol(reference="portrait"))
    with pytest.raises(ValueError, match="reference is 'first_frame' but a portrait was given"):
        video_identity_consistency(dino, frames, detector=None, portrait=frames[0])
    with pytest.raises(ValueError, match="reference must be one of"):
        IdcProtocol(reference="last")


# --- IDC on real faces ----------------------------------------------------------------------------------------------

FACES = IdcProtocol(min_face_size=32)  # the astronaut's face is about 52 px in a 256 px frame


@pytest.fixture(scope="module")
def detector(mediapipe_face_detector):
    pytest.importorskip("skimage", reason="the astronaut comes from `pip install scikit-image`")
    return mediapipe_face_detector


@pytest.fixture(scope="module")
def still_frames(detector):
    from motion_clips import clip

    return np.stack(clip(frames=3, size=256))  # three identical frames of the astronaut


@pytest.mark.face
def test_identical_frames_have_idc_one_and_a_different_portrait_lowers_it(dino, detector, still_frames):
    first = video_identity_consistency(dino, still_frames, detector, FACES)
    assert first == {
        "idc": pytest.approx(1.0, abs=1e-6),
        "idc_status": "scored",
        "idc_detail": "",
        "idc_reference": "first_frame",
        "idc_frames": 3,
        "idc_face_frames": 3,
    }
    against = IdcProtocol(min_face_size=32, reference="portrait")
    same = video_identity_consistency(dino, still_frames, detector, against, portrait=still_frames[0])
    assert same["idc"] == pytest.approx(1.0, abs=1e-6) and same["idc_reference"] == "portrait"
    mirrored = np.ascontiguousarray(still_frames[0, :, ::-1])  # the same person, another picture
    row = video_identity_consistency(dino, still_frames, detector, against, portrait=mirrored)
    crops, kept = face_crops(still_frames, detector, FACES)
    portrait_crop, _ = face_crops(mirrored[None], detector, FACES)
    features = F.normalize(dino_features(dino, np.concatenate([portrait_crop, crops])).double(), dim=-1)
    to_portrait = [max(0.0, float(features[0] @ features[t])) for t in range(1, 4)]
    to_previous = [max(0.0, float(features[t - 1] @ features[t])) for t in range(1, 4)]
    expected = sum((a + b) / 2 for a, b in zip(to_previous, to_portrait)) / 3
    assert row["idc_status"] == "scored" and row["idc"] == pytest.approx(expected, abs=1e-6)
    assert row["idc"] < 1 - 1e-4 and list(kept) == [0, 1, 2]


@pytest.mark.face
def test_face_crops_keep_only_frames_with_a_face_and_too_few_are_reported(dino, detector):
    from motion_clips import clip
    from skimage import data

    frames = np.stack(clip(frames=4, size=256, blank=(1, 2)))
    crops, kept = face_crops(frames, detector, FACES)
    assert crops.shape == (2, 224, 224, 3) and crops.dtype == np.uint8 and list(kept) == [0, 3]
    assert video_identity_consistency(dino, frames, detector, FACES)["idc_status"] == "scored"
    one_face = frames[:3]
    row = video_identity_consistency(dino, one_face, detector, FACES)
    assert (row["idc"], row["idc_status"], row["idc_frames"], row["idc_face_frames"]) == (None, "no_face", 3, 1)
    assert "1 of 3 frames" in row["idc_detail"]
    coffee = np.ascontiguousarray(data.coffee()[:256, :256])
    row = video_identity_consistency(dino, frames, detector, IdcProtocol(min_face_size=32, reference="portrait"), portrait=coffee)
    assert (row["idc"], row["idc_status"], row["idc_face_frames"]) == (None, "no_portrait_face", 2)


# --- aesthetic score --------------------------------------------------------------------------------------------------


def restated_aesthetic(folder, head_path, frames: np.ndarray, mean, std) -> torch.Tensor:
    """VBench's laion_aesthetic: clip_transform(224) on float frames, the embedding normalised, the head, / 10."""
    clip = transformers.CLIPModel.from_pretrained(folder, local_files_only=True).eval()  # OpenAI's encode_image:
    encode_image = lambda pixels: clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)  # CLS, projected
    head = torch.nn.Linear(PROJECTION, 1)
    head.load_state_dict(torch.load(head_path, weights_only=True))
    vbench = transforms.Compose(
        [
            transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC, antialias=False),
            transforms.CenterCrop(224),
            transforms.Lambda(lambda x: x.float().div(255.0)),
            transforms.Normalize(mean, std),
        ]
    )
    with torch.no_grad():
        embeddings = encode_image(vbench(torch.from_numpy(frames).permute(0, 3, 1, 2).float()))
        return head(F.normalize(embeddings, dim=-1, p=2)).squeeze(1).double() / 10


def test_aesthetic_score_is_the_v1_head_on_the_normalised_embedding_over_ten(clip_folder, head_file):
    scorer = load_aesthetic(str(clip_folder), str(head_file))
    assert (scorer.mean, scorer.std, scorer.normalisation) == (
        pytest.approx(CLIP_MEAN),
        pytest.approx(CLIP_STD),
        "preprocessor_config.json",
    )
    frames = random_images(5, 300, 420, seed=3)  # not square: shorter side down to 224, then the centre cropped
    expected = restated_aesthetic(clip_folder, head_file, frames, CLIP_MEAN, CLIP_STD)
    torch.testing.assert_close(aesthetic_frame_scores(scorer, frames, batch=2), expected, atol=1e-5, rtol=1e-5)
    row = video_aesthetic(scorer, frames, batch=3)
    assert row == {"aesthetic": pytest.approx(float(expected.mean()), abs=1e-5), "aesthetic_frames": 5}
    every_other = video_aesthetic(scorer, frames, AestheticProtocol(frame_stride=2))
    assert every_other == {"aesthetic": pytest.approx(float(expected[::2].mean()), abs=1e-5), "aesthetic_frames": 3}
    assert len(set(np.round(expected.numpy(), 6))) == 5  # the frames' scores differ, so the mean is not trivially right


def test_mean_and_std_come_from_the_folder_when_it_has_them(tmp_path, clip_folder, head_file):
    custom = tmp_path / "clip"
    shutil.copytree(clip_folder, custom)
    settings = json.loads((custom / "preprocessor_config.json").read_text())
    settings.update(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    (custom / "preprocessor_config.json").write_text(json.dumps(settings))
    frames = random_images(2, 224, 224, seed=4)
    expected = restated_aesthetic(custom, head_file, frames, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    torch.testing.assert_close(aesthetic_frame_scores(load_aesthetic(str(custom), str(head_file)), frames), expected, atol=1e-5, rtol=1e-5)
    (custom / "preprocessor_config.json").unlink()
    scorer = load_aesthetic(str(custom), str(head_file))
    assert scorer.mean == CLIP_MEAN and scorer.normalisation.startswith("CLIP's constants")


def test_wrong_aesthetic_files_are_refused_with_what_to_use(tmp_path, clip_folder, dino_folder, head_file):
    v2 = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    widths = [PROJECTION, 1024, 128, 64, 16, 1]
    mlp = {}
    for index, (inputs, outputs) in zip((0, 2, 4, 6, 7), zip(widths, widths[1:])):  # the v2 MLP's Linear layers
        mlp[f"layers.{index}.weight"], mlp[f"layers.{index}.bias"] = torch.randn(outputs, inputs), torch.randn(outputs)
    torch.save(mlp, v2)
    with pytest.raises(CheckpointError, match=r"is the LAION aesthetic predictor v2.*v1 linear head.*sa_0_4_vit_l_14_linear\.pth"):
        load_aesthetic(str(clip_folder), str(v2))
    narrow = tmp_path / "narrow.pth"
    torch.save(torch.nn.Linear(16, 1).state_dict(), narrow)
    with pytest.raises(CheckpointError, match=r"takes 16-d embeddings but the CLIP model gives 24-d"):
        load_aesthetic(str(clip_folder), str(narrow))
    with pytest.raises(CheckpointError, match=r"'.*missing\.pth' does not exist\. Download sa_0_4_vit_l_14_linear\.pth"):
        load_aesthetic(str(clip_folder), str(tmp_path / "missing.pth"))
    with pytest.raises(CheckpointError, match=r"'.*nowhere' does not exist\. Download openai/clip-vit-large-patch14"):
        load_aesthetic(str(tmp_path / "nowhere"), str(head_file))
    with pytest.raises(CheckpointError, match=r"holds a 'vit' model, not 'clip' or 'clip_vision_model'"):
        load_aesthetic(str(dino_folder), str(head_file))
    unprojected = tmp_path / "unprojected"  # CLIP's vision tower saved without its projection
    transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**CLIP_VISION, projection_dim=PROJECTION)).save_pretrained(unprojected)
    with pytest.raises(CheckpointError, match=r"unprojected' lacks 1 weight\(s\) the model needs \(e\.g\. visual_projection\.weight\)"):
        load_aesthetic(str(unprojected), str(head_file))
