import pytest
import torch
from naive_reference import naive_official_windows

from fantasy_core import official_num_frames
from fantasy_core.audio.windows import compute_audio_windows, gather_windows
from fantasy_core.long_video import OverlapBlender, match_color, plan_segments


def test_twenty_seconds_plan_covers_every_frame_once_with_aligned_overlaps():
    total = official_num_frames(20.0, 23, None)
    assert total == 465  # int(23 * 20 // 4) * 4 + 5
    segments = plan_segments(total, 81, 13)
    covered = []
    for previous, segment in zip([None, *segments], segments):
        assert segment.first_frame % 4 == 0 and (segment.num_frames - 1) % 4 == 0
        if previous is not None:
            assert segment.first_frame == previous.first_frame + previous.num_frames - 13
        covered.extend(range(segment.first_frame + segment.overlap, segment.first_frame + segment.num_frames))
    assert covered == list(range(total))
    assert segments[-1].first_frame + segments[-1].num_frames == total


@pytest.mark.parametrize("total, segment, overlap", [(5, 81, 13), (81, 81, 13), (85, 81, 13), (1385, 81, 5), (233, 49, 9)])
def test_plans_for_other_lengths(total, segment, overlap):
    segments = plan_segments(total, segment, overlap)
    assert sum(s.num_frames - s.overlap for s in segments) == total
    assert all(s.num_frames <= segment for s in segments)


@pytest.mark.parametrize(
    "args, message",
    [
        ((80, 81, 13), "total_frames"),
        ((461, 80, 13), "segment_frames"),
        ((461, 81, 12), "overlap_frames"),
        ((461, 13, 13), "smaller than segment_frames"),
    ],
)
def test_bad_plans_are_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        plan_segments(*args)


def test_segment_audio_is_the_slice_of_the_whole_track_windows():
    """Per-segment audio = the official whole-track windows of the segment's latent frames, token for token."""
    total = official_num_frames(20.0, 23, None)
    tokens = torch.randn(int(total / 23 * 16000 - 400) // 320 + 1, 3)
    whole_naive, whole_lens = naive_official_windows(tokens, total)
    whole = compute_audio_windows(tokens.shape[0], total)
    for segment in plan_segments(total, 81, 13):
        windows = segment.audio_windows(whole)
        rows = slice(segment.first_latent, segment.first_latent + segment.latent_frames)
        assert torch.equal(gather_windows(tokens[None], windows)[0], whole_naive[rows])
        assert windows.k_lens.tolist() == whole_lens[rows]


def test_blender_streams_each_frame_once_in_order():
    total = 233
    segments = plan_segments(total, 49, 9)
    written = []
    blender = OverlapBlender(lambda frames: written.append(frames.clone()))
    for index, segment in enumerate(segments):
        frames = torch.arange(segment.first_frame, segment.first_frame + segment.num_frames, dtype=torch.float32)
        hold = segments[index + 1].overlap if index + 1 < len(segments) else 0
        blender.add(frames.reshape(-1, 1, 1, 1).expand(-1, 2, 2, 3), segment.overlap, hold)
    assert blender.finish() == total
    out = torch.cat(written)[:, 0, 0, 0]
    assert out.tolist() == list(range(total))  # identical overlaps blend to themselves: nothing repeated or dropped


def test_blend_crossfades_from_the_old_segment_to_the_new():
    written = []
    blender = OverlapBlender(lambda frames: written.append(frames.clone()))
    blender.add(torch.zeros(9, 1, 1, 1), overlap=0, hold=5)
    blender.add(torch.ones(9, 1, 1, 1), overlap=5, hold=0)
    blender.finish()
    out = torch.cat(written).flatten().tolist()
    assert len(out) == 13
    assert out[:4] == [0] * 4 and out[9:] == [1] * 4
    ramp = out[4:9]
    assert ramp == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])


def test_blender_rejects_a_mismatched_overlap():
    blender = OverlapBlender(lambda frames: None)
    blender.add(torch.zeros(9, 1, 1, 1), overlap=0, hold=5)
    with pytest.raises(ValueError, match="overlaps 3 frames but 5 are held"):
        blender.add(torch.zeros(9, 1, 1, 1), overlap=3, hold=0)


def test_colour_matching_moves_statistics_to_the_reference():
    gen = torch.Generator().manual_seed(0)
    reference = torch.rand(16, 16, 3, generator=gen) * 0.5 + 0.25
    drifted = (reference[None].expand(4, -1, -1, -1) * 0.7 + 0.2).clamp(0, 1)
    matched = match_color(drifted, reference)
    for channel in range(3):
        assert float(matched[..., channel].mean()) == pytest.approx(float(reference[..., channel].mean()), abs=1e-3)
        assert float(matched[..., channel].std()) == pytest.approx(float(reference[..., channel].std()), abs=1e-3)
    assert torch.equal(match_color(drifted, reference, strength=0.0), drifted)
