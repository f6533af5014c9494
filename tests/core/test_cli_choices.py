"""The headless command's pure decisions: which workflow, and how --max-seconds cuts the track."""

import wave

import pytest

from fantasytalking_cli.workflows import api_workflow, choose_variant, fill, official_num_frames


def write_wav(path, seconds, rate=16000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(b"\0\0" * int(seconds * rate))
    return str(path)


def test_one_window_tracks_use_the_standard_workflow_and_longer_ones_the_long_workflow(tmp_path):
    assert choose_variant(None, write_wav(tmp_path / "short.wav", 3.0), None) == "standard"
    assert choose_variant(None, write_wav(tmp_path / "long.wav", 20.0), None) == "long"
    assert choose_variant(None, str(tmp_path / "long.wav"), max_seconds=3.0) == "standard"
    assert choose_variant("fast", str(tmp_path / "long.wav"), None) == "fast"
    (tmp_path / "unknown.xyz").write_bytes(b"not audio")
    assert choose_variant(None, str(tmp_path / "unknown.xyz"), None) == "long"  # unknown length: the long workflow handles any


def test_max_seconds_caps_the_frame_count_with_the_official_rule():
    graph = fill(api_workflow("long"), "p.png", "v.wav", "A man is talking.", 7, "out/x", max_seconds=10.0)
    (embeds,) = [n for n in graph.values() if n["class_type"] == "FantasyTalkingAudioEmbeds"]
    assert embeds["inputs"]["max_frames"] == official_num_frames(10.0) == 233
    (long_node,) = [n for n in graph.values() if n["class_type"] == "FantasyTalkingLongVideo"]
    assert long_node["inputs"]["seed"] == 7
    prompts = [n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"]
    assert "A man is talking." in prompts and any(p.startswith("人物静止不动") for p in prompts)


@pytest.mark.parametrize("seconds, frames", [(3.52, 85), (1.0, 25), (60.0, 1385)])
def test_frame_rule_matches_the_core(seconds, frames):
    from fantasy_core import official_num_frames as core_rule

    assert official_num_frames(seconds) == core_rule(seconds, 23, None) == frames
