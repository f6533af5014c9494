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


class ObjectInfo:
    """A stand-in for the HTTP client: only /object_info, with the choices a server would offer."""

    def __init__(self, arcface: list[str]):
        self.info = {
            "FantasyTalkingModelLoader": {"input": {"required": {"model_name": [["fantasytalking_fp16.safetensors", "face.safetensors"]]}}},
            "FantasyTalkingFaceEmbedding": {"input": {"required": {"arcface_model": [arcface]}}},
            "FantasyTalkingFaceCrop": {"input": {"required": {"detector": [["mediapipe"]]}}},
        }

    def get_json(self, path):
        assert path == "/object_info"
        return self.info


def test_an_identity_module_without_arcface_on_the_server_is_refused_with_what_to_install():
    from fantasytalking_cli.__main__ import CommandError, parser, with_requested_modules

    args = parser().parse_args(["generate", "--image", "p.png", "--audio", "v.wav", "--identity-module", "face.safetensors"])
    graph = api_workflow("standard")
    with pytest.raises(
        CommandError, match=r"--identity-module needs ArcFace .* ComfyUI has no ArcFace model: put insightface's buffalo_l"
    ) as error:
        with_requested_modules(ObjectInfo(arcface=[]), args, graph)
    assert error.value.exit_code == 2
    added = with_requested_modules(ObjectInfo(arcface=["buffalo_l/w600k_r50.onnx"]), args, graph)
    new_kinds = {node["class_type"] for node in added.values()} - {node["class_type"] for node in graph.values()}
    assert new_kinds == {"FantasyTalkingFaceCrop", "FantasyTalkingFaceEmbedding"}
    assert len(added) == len(graph) + 3  # a loader, Face Crop, Face Embedding


def test_identity_and_motion_together_on_the_long_video_workflow_chain_their_loaders():
    from fantasytalking_cli.add_modules import IdentityChoice, MotionChoice, add_identity, add_motion

    graph = add_motion(add_identity(api_workflow("long"), IdentityChoice("face.safetensors")), MotionChoice("move.safetensors", "subtle"))
    (long_id,) = [key for key, node in graph.items() if node["class_type"] == "FantasyTalkingLongVideo"]
    inputs = graph[long_id]["inputs"]
    chain, loader = [], inputs["fantasytalking_model"][0]
    while loader is not None:  # motion loader -> identity loader -> the audio adapter's loader
        chain.append(graph[loader]["inputs"]["model_name"])
        loader = graph[loader]["inputs"].get("fantasytalking_model", [None])[0]
    assert chain == ["move.safetensors", "face.safetensors", "fantasytalking_fp16.safetensors"]
    assert graph[inputs["identity"][0]]["class_type"] == "FantasyTalkingFaceEmbedding"
    assert graph[inputs["motion"][0]]["inputs"]["preset"] == "subtle"
    (portrait,) = [key for key, node in graph.items() if node["class_type"] == "LoadImage"]
    crop = graph[graph[inputs["identity"][0]]["inputs"]["face"][0]]
    assert crop["inputs"]["image"] == [portrait, 0]


def test_a_workflow_without_an_apply_node_is_refused_by_name():
    from fantasytalking_cli.add_modules import GraphError, IdentityChoice, add_identity

    graph = {key: node for key, node in api_workflow("standard").items() if node["class_type"] != "FantasyTalkingApply"}
    with pytest.raises(GraphError, match=r"exactly one FantasyTalking Apply or Long Video node .* it has 0"):
        add_identity(graph, IdentityChoice("face.safetensors"))
