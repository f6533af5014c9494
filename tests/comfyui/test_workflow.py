"""Whole workflows: portrait + voice -> MP4 with sound, in-process and through a ComfyUI server on loopback."""

import asyncio
import os
import time
import uuid

import pytest
import torch
from conftest_helpers import http, wait_for
from graphs import mp4_streams, talking_portrait
from test_nodes import NODE_IDS

FRAMES, FPS = 9, 23


class RecordingServer:
    """What PromptExecutor needs from the server: a place to send its progress messages."""

    client_id = None
    last_node_id = None
    last_prompt_id = None

    def __init__(self):
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


def execute_in_process(graph):
    import execution

    server = RecordingServer()
    try:
        executor = execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0})
    except TypeError:  # ComfyUI before v0.4 took cache_size instead of cache_args
        executor = execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC)
    prompt_id = str(uuid.uuid4())
    valid = asyncio.run(execution.validate_prompt(prompt_id, graph, None))
    assert valid[0], valid
    executor.execute(graph, prompt_id, {"client_id": "test"}, valid[2])
    assert executor.success, [m for m in server.messages if m[0] == "execution_error"]
    return executor.history_result["outputs"], server.messages


def saved_file(outputs_dir, entry):
    return os.path.join(outputs_dir, entry["subfolder"], entry["filename"])


def check_video(path):
    info = mp4_streams(path)
    assert info["kinds"] == ["audio", "video"]
    assert info["frames"] == FRAMES
    assert info["fps"] == pytest.approx(FPS)
    assert info["audio_duration"] == pytest.approx(FRAMES / FPS, abs=0.08)


def test_workflow_in_process_writes_mp4_with_audio(workspace):
    image, audio = workspace["media"][0]
    outputs, _ = execute_in_process(talking_portrait(image, audio, "inproc"))
    for node_id in ("21", "24"):
        (entry,) = outputs[node_id]["images"]
        check_video(saved_file(workspace["outputs"], entry))


def test_object_info_lists_the_nodes_with_inputs_and_tooltips(server):
    info = http(server["port"], "/object_info")
    for node_id in NODE_IDS:
        assert info[node_id]["category"] == "FantasyTalking"
        assert info[node_id]["python_module"].startswith("custom_nodes.")
        inputs = {**info[node_id]["input"]["required"], **info[node_id]["input"].get("optional", {})}
        assert inputs
        for name, spec in inputs.items():
            assert spec[1].get("tooltip"), f"{node_id}.{name}"
    assert list(info["FantasyTalkingApply"]["input"]["required"]) == [
        "model",
        "fantasytalking_model",
        "audio_embeds",
        "audio_scale",
        "positive",
        "negative",
    ]
    assert info["FantasyTalkingApply"]["output_name"] == ["model", "positive", "negative"]
    assert "fantasytalking_tiny.ckpt" in info["FantasyTalkingModelLoader"]["input"]["required"]["model_name"][1]["options"]
    assert "wav2vec2-tiny-960h" in info["FantasyTalkingWav2VecLoader"]["input"]["required"]["model_name"][1]["options"]


def test_server_runs_queued_prompts_without_state_leaking(server, workspace):
    from safetensors.torch import load_file

    (image_a, audio_a), (_, audio_b) = workspace["media"]
    queued = []
    for prefix, audio in (("first_a", audio_a), ("b", audio_b), ("second_a", audio_a)):
        reply = http(server["port"], "/prompt", {"prompt": talking_portrait(image_a, audio, prefix), "client_id": "test"})
        assert not reply["node_errors"]
        queued.append(reply["prompt_id"])
    results = [wait_for(server, prompt_id) for prompt_id in queued]
    for outputs in results:
        for node_id in ("21", "24"):
            (entry,) = outputs[node_id]["images"]
            check_video(saved_file(server["output"], entry))
    latents = []
    for prefix in ("first_a", "b", "second_a"):
        folder = server["output"] / "latents"
        (name,) = [n for n in os.listdir(folder) if n.startswith(prefix)]
        latents.append(load_file(str(folder / name))["latent_tensor"])
    assert all(torch.isfinite(latent).all() for latent in latents)
    assert not torch.equal(latents[0], latents[1])  # different audio, different video
    assert torch.equal(latents[0], latents[2])  # the same prompt again gives the same result


def test_server_reports_a_bad_adapter_clearly(server, workspace):
    image, audio = workspace["media"][0]
    graph = talking_portrait(image, audio, "bad")
    graph["11"]["inputs"]["model_name"] = "not_an_adapter.safetensors"
    from safetensors.torch import save_file

    save_file({"patch_embedding.weight": torch.zeros(2)}, str(workspace["models"] / "fantasytalking" / "not_an_adapter.safetensors"))
    reply = http(server["port"], "/prompt", {"prompt": graph, "client_id": "test"})
    prompt_id = reply["prompt_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        history = http(server["port"], f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            break
        time.sleep(0.5)
    status = history[prompt_id]["status"]
    assert status["status_str"] == "error"
    errors = [m[1] for m in status["messages"] if m[0] == "execution_error"]
    assert "is not a FantasyTalking adapter" in errors[0]["exception_message"]
