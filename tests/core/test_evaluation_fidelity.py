"""The feature networks of FID and FVD through their real loaders: a random-weight Inception saved in pytorch-fid's
state-dict layout (torchvision's inception_v3 with 1008 classes and no aux logits), its FID-specific blocks against a
restatement with independently computed pools, and a scripted stand-in with the real I3D call signature whose
"features" record what it was given."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from evaluation_models import random_fid_state
from torch import Tensor, nn
from torchvision.models import inception_v3
from torchvision.models.inception import InceptionA, InceptionC, InceptionE
from torchvision.transforms.v2 import functional as TF

from fantasy_core.evaluation.frechet import FeatureStatistics, frechet_distance
from fantasy_core.evaluation.i3d import FvdProtocol, TooFewFramesError, load_i3d, video_features
from fantasy_core.evaluation.inception import FidProtocol, frame_features, load_inception
from fantasy_core.weights import CheckpointError

# --- FID: the Inception -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fid_state() -> dict[str, Tensor]:
    return random_fid_state()


@pytest.fixture(scope="module")
def fid_file(fid_state, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-6726825d.pth")
    torch.save(fid_state, path)
    return path


@pytest.fixture(scope="module")
def fid_model(fid_file):
    return load_inception(fid_file)


def frames_of(seed: int, count: int, size: int = 64) -> np.ndarray:
    """Smooth random pictures (noise blurred by upsampling), different for each seed."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 8, 8, generator=generator)
    return (F.interpolate(coarse, size=(size, size), mode="bicubic").clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def test_the_real_layout_loads_in_eval_mode_and_gives_2048_pool_features(fid_model, fid_state):
    assert not fid_model.training
    assert not any(parameter.requires_grad for parameter in fid_model.parameters())
    loaded = fid_model.state_dict()
    assert all(torch.equal(loaded[key], fid_state[key]) for key in fid_state if not key.endswith("num_batches_tracked"))
    features = frame_features(fid_model, frames_of(0, 3), batch=2)
    assert features.shape == (3, 2048) and features.dtype == torch.float32 and torch.isfinite(features).all()
    assert features.std(0).max() > 0  # the frames are told apart


def test_a_file_without_batchnorm_counters_loads_too(fid_state, tmp_path):
    path = str(tmp_path / "no_counters.pth")
    torch.save({key: value for key, value in fid_state.items() if not key.endswith("num_batches_tracked")}, path)
    assert load_inception(path).Mixed_7c.branch_pool.bn.num_batches_tracked.item() == 0


def refused(tmp_path, state) -> str:
    path = str(tmp_path / "weights.pth")
    torch.save(state, path)
    with pytest.raises(CheckpointError) as caught:
        load_inception(path)
    message = str(caught.value)
    assert path in message and "pt_inception-2015-12-05-6726825d.pth" in message
    return message


def test_a_renamed_key_is_refused_naming_both_names(fid_state, tmp_path):
    state = dict(fid_state)
    state["Mixed_6b.branch7x7_2.conv.kernel"] = state.pop("Mixed_6b.branch7x7_2.conv.weight")
    message = refused(tmp_path, state)
    assert "another layout" in message
    assert "1 missing (Mixed_6b.branch7x7_2.conv.weight)" in message
    assert "1 unexpected (Mixed_6b.branch7x7_2.conv.kernel)" in message


def test_a_removed_key_is_refused_naming_it(fid_state, tmp_path):
    state = {key: value for key, value in fid_state.items() if key != "Mixed_5b.branch_pool.bn.running_var"}
    assert "1 missing (Mixed_5b.branch_pool.bn.running_var)" in refused(tmp_path, state)


def test_a_wrong_shape_is_refused_naming_the_key_and_both_shapes(fid_state, tmp_path):
    state = dict(fid_state, **{"fc.weight": torch.zeros(1000, 2048), "Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 5, 5)})
    message = refused(tmp_path, state)
    assert "fc.weight [1000, 2048] (expected [1008, 2048])" in message
    assert "Conv2d_1a_3x3.conv.weight [32, 3, 5, 5] (expected [32, 3, 3, 3])" in message


def test_torchvisions_own_inception_with_aux_logits_is_another_layout(tmp_path):
    state = inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()  # ImageNet's 1000 classes
    message = refused(tmp_path, state)
    assert "unexpected (AuxLogits." in message and "fc.weight [1000, 2048] (expected [1008, 2048])" in message


def test_a_pickled_module_a_missing_file_and_nan_weights_are_refused(fid_state, tmp_path):
    assert "pickled objects other than tensors (torch.nn.modules.linear.Linear)" in refused(tmp_path, nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_inception(str(tmp_path / "absent.pth"))
    broken = dict(fid_state, **{"Mixed_7c.branch1x1.conv.weight": torch.full((320, 2048, 1, 1), float("nan"))})
    assert "Mixed_7c.branch1x1.conv.weight holds NaN" in refused(tmp_path, broken)


def windowed(x: Tensor) -> Tensor:
    """The 3×3 neighbourhoods of every pixel [N, C, H, W, 9], outside the image marked NaN."""
    padded = F.pad(x, (1, 1, 1, 1), value=float("nan"))
    height, width = x.shape[-2:]
    return torch.stack([padded[..., dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)], -1)


def tf_average_pool(x: Tensor) -> Tensor:
    """TensorFlow's SAME average pool: the mean of the neighbours that lie inside the image."""
    return windowed(x).nanmean(-1)


def tf_max_pool(x: Tensor) -> Tensor:
    neighbours = windowed(x)
    return neighbours.nan_to_num(float("-inf")).amax(-1)


def restated_a(block, x, pool):
    branches = [block.branch1x1(x), block.branch5x5_2(block.branch5x5_1(x))]
    branches.append(block.branch3x3dbl_3(block.branch3x3dbl_2(block.branch3x3dbl_1(x))))
    return torch.cat([*branches, block.branch_pool(pool(x))], 1)


def restated_c(block, x, pool):
    seven = block.branch7x7_3(block.branch7x7_2(block.branch7x7_1(x)))
    double = block.branch7x7dbl_5(block.branch7x7dbl_4(block.branch7x7dbl_3(block.branch7x7dbl_2(block.branch7x7dbl_1(x)))))
    return torch.cat([block.branch1x1(x), seven, double, block.branch_pool(pool(x))], 1)


def restated_e(block, x, pool):
    three = block.branch3x3_1(x)
    double = block.branch3x3dbl_2(block.branch3x3dbl_1(x))
    return torch.cat(
        [
            block.branch1x1(x),
            block.branch3x3_2a(three),
            block.branch3x3_2b(three),
            block.branch3x3dbl_3a(double),
            block.branch3x3dbl_3b(double),
            block.branch_pool(pool(x)),
        ],
        1,
    )


@pytest.mark.parametrize(
    ("name", "restated", "pool", "torchvision_block"),
    [
        ("Mixed_5b", restated_a, tf_average_pool, InceptionA),
        ("Mixed_6e", restated_c, tf_average_pool, InceptionC),
        ("Mixed_7b", restated_e, tf_average_pool, InceptionE),
        ("Mixed_7c", restated_e, tf_max_pool, InceptionE),
    ],
)
def test_the_fid_blocks_pool_as_tensorflow_does_not_as_torchvision(fid_model, name, restated, pool, torchvision_block):
    block = getattr(fid_model, name)
    channels = block.branch1x1.conv.in_channels
    x = torch.rand(1, channels, 5, 5, generator=torch.Generator().manual_seed(1)) * 2
    with torch.inference_mode():
        expected = restated(block, x, pool)
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
        torchvision_output = torch.cat(torchvision_block._forward(block, x), 1)  # the pool that counts the padding
    assert not torch.allclose(torchvision_output, expected, rtol=1e-4, atol=1e-4)


def test_forward_resizes_to_299_bilinearly_maps_to_minus_one_one_and_pools_after_mixed_7c(fid_model):
    frames = frames_of(3, 2, size=48)
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    m = fid_model
    with torch.inference_mode():
        x = 2 * F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False) - 1
        x = F.max_pool2d(m.Conv2d_2b_3x3(m.Conv2d_2a_3x3(m.Conv2d_1a_3x3(x))), 3, stride=2)
        x = F.max_pool2d(m.Conv2d_4a_3x3(m.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(m, f"Mixed_{name}")(x)
        expected = x.mean((2, 3))
    torch.testing.assert_close(frame_features(m, frames), expected, rtol=1e-4, atol=1e-5)
    assert FidProtocol() == FidProtocol(size=299, filter="bilinear", antialias=False)


def test_fid_of_identical_frame_sets_is_zero_and_of_different_sets_positive(fid_model):
    def statistics(frames):
        stats = FeatureStatistics.empty(2048)
        stats.update(frame_features(fid_model, frames, batch=2))
        return stats

    first, same, other = statistics(frames_of(10, 4)), statistics(frames_of(10, 4)), statistics(frames_of(11, 4))
    different = frechet_distance(first, other)
    assert different > 1e-3
    assert frechet_distance(first, same) < 1e-6 * different


def test_frame_features_refuses_frames_that_are_not_uint8_rgb(fid_model):
    with pytest.raises(ValueError, match=r"uint8 array \[T, H, W, 3\].*float32 \[2, 8, 8, 3\]"):
        frame_features(fid_model, np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"uint8 \[8, 8, 3\]"):
        frame_features(fid_model, np.zeros((8, 8, 3), np.uint8))


# --- FVD: the I3D -------------------------------------------------------------------------------------------------


class RecordingI3D(nn.Module):
    """StyleGAN-V's I3D call signature. Its 'features' record the input: [0] min, [1] max, [2] the largest distance
    to an integer, [3:6] T, H, W, [6:9] the three flags, [16:16+T] the mean of each frame."""

    def __init__(self, width: int = 400):
        super().__init__()
        self.width = width
        self.register_buffer("anchor", torch.zeros(()))

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        flat = x.flatten(1)
        out = torch.zeros(x.shape[0], self.width, device=x.device)
        out[:, 0] = flat.amin(1)
        out[:, 1] = flat.amax(1)
        out[:, 2] = (flat - flat.round()).abs().amax(1)
        out[:, 3] = float(x.shape[2])
        out[:, 4] = float(x.shape[3])
        out[:, 5] = float(x.shape[4])
        out[:, 6] = 1.0 if rescale else 0.0
        out[:, 7] = 1.0 if resize else 0.0
        out[:, 8] = 1.0 if return_features else 0.0
        out[:, 16 : 16 + x.shape[2]] = x.mean((1, 3, 4))
        return out


class PositionalOnly(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, :400]


def scripted(tmp_path, module, name="i3d_torchscript.pt") -> str:
    path = str(tmp_path / name)
    torch.jit.script(module).save(path)
    return path


def video_of(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Noise on a left-to-right ramp (so where a crop lies shows in its mean), brighter frame by frame."""
    noise = np.random.default_rng(seed).integers(0, 57, (count, height, width, 3))
    ramp = np.linspace(0, 120, width)[None, None, :, None]
    step = 2 * (np.arange(count) % 40)[:, None, None, None]
    return (noise + ramp + step).astype(np.uint8)


def test_the_stand_in_loads_and_an_81_frame_video_gives_5_clips_called_as_stylegan_v_does(tmp_path):
    model = load_i3d(scripted(tmp_path, RecordingI3D()))
    features = video_features(model, video_of(81, 20, 30), batch=2)
    assert features.shape == (5, 400) and features.dtype == torch.float32
    assert (features[:, 0] >= 0).all() and (features[:, 1] <= 255).all() and (features[:, 1] > 1).all()  # 0..255, not -1..1
    assert (features[:, 2] == 0).all()  # integer pixel values, as uint8 frames
    assert features[:, 3:9].tolist() == [[16, 224, 224, 1, 1, 1]] * 5


@pytest.mark.parametrize(("count", "height", "width"), [(40, 112, 168), (16, 448, 672)])  # up, and down (antialiased)
def test_clips_are_consecutive_non_overlapping_shorter_side_resized_and_centre_cropped(tmp_path, count, height, width):
    model = load_i3d(scripted(tmp_path, RecordingI3D()))
    frames = video_of(count, height, width, seed=1)  # 40 frames: 2 clips, frames 32..39 unused
    features = video_features(model, frames)
    clips = count // 16
    assert features.shape == (clips, 400)
    pictures = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    resized = TF.resize(pictures, [224], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)  # 224 × 336
    expected = TF.center_crop(resized, [224, 224]).round().clamp(0, 255).mean((1, 2, 3))
    torch.testing.assert_close(features[:, 16:32], expected[: 16 * clips].reshape(clips, 16), rtol=0, atol=1e-3)
    uncropped = resized[..., :224].round().clamp(0, 255).mean((1, 2, 3))
    assert not torch.allclose(features[:, 16:32], uncropped[: 16 * clips].reshape(clips, 16), atol=0.1)


def test_without_rescale_the_network_is_given_minus_one_to_one(tmp_path):
    model = load_i3d(scripted(tmp_path, RecordingI3D()))
    frames = np.zeros((16, 8, 8, 3), np.uint8)
    frames[:, :4] = 255
    features = video_features(model, frames, FvdProtocol(rescale=False))
    assert features[0, :2].tolist() == [-1, 1] and features[0, 6] == 0


def test_a_video_shorter_than_a_clip_is_refused_with_its_frame_count(tmp_path):
    model = load_i3d(scripted(tmp_path, RecordingI3D()))
    with pytest.raises(TooFewFramesError, match="has 10 frames.*at least 16"):
        video_features(model, video_of(10, 16, 16))
    assert video_features(model, video_of(16, 16, 16)).shape == (1, 400)
    assert FvdProtocol().clip_frames == 16 and FvdProtocol().size == 224


def test_files_that_are_not_the_i3d_are_refused(tmp_path):
    state_dict = str(tmp_path / "state.pt")
    torch.save(nn.Linear(3, 400).state_dict(), state_dict)
    with pytest.raises(CheckpointError, match="not a TorchScript archive"):
        load_i3d(state_dict)
    with pytest.raises(CheckpointError, match=r"returns \[1, 399\], not the \[1, 400\]"):
        load_i3d(scripted(tmp_path, RecordingI3D(width=399), "narrow.pt"))
    with pytest.raises(CheckpointError, match="does not take .*rescale="):
        load_i3d(scripted(tmp_path, PositionalOnly(), "positional.pt"))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_i3d(str(tmp_path / "absent.pt"))
