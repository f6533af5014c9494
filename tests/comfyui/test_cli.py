"""`fantasytalking generate` / `models` against a real ComfyUI server on loopback, run as users run it."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest_helpers import free_port, http
from graphs import mp4_streams
from shipped import WORKFLOWS, cpu_sized, load
from tiers import PACK_DIR

# tqdm's bar: "2/2 [00:01<00:00,  1.52step/s]" (elapsed<left, rate)
PROGRESS_WITH_RATE_AND_ETA = r"2/2 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(step/s|s/step)\]"
VARIANT_FILES = {
    "standard": "fantasytalking_standard",
    "lowvram": "fantasytalking_lowvram_fp8",
    "fast": "fantasytalking_fast_distilled_lora",
    "long": "fantasytalking_long_video",
}


def cli(*args, env=None, timeout=600):
    environment = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fantasytalking_cli", *args], cwd=PACK_DIR, capture_output=True, text=True, timeout=timeout, env=environment
    )


def test_the_command_imports_neither_torch_nor_comfyui():
    code = (
        "import sys, fantasytalking_cli.__main__; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'comfy', 'comfy_api', 'nodes', 'fantasy_core')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PACK_DIR, check=True)


@pytest.mark.parametrize("variant", list(VARIANT_FILES))
def test_generate_writes_an_mp4_with_sound(variant, server, stand_ins, workspace, tmp_path):
    image, audio = workspace["media"][0]
    out = tmp_path / f"{variant}.mp4"
    result = cli(
        "generate",
        "--image",
        str(workspace["inputs"] / image),
        "--audio",
        str(workspace["inputs"] / audio),
        "--prompt",
        "A man is talking.",
        "--workflow",
        variant,
        "--workflow-file",
        cpu_sized(VARIANT_FILES[variant], tmp_path),
        "--server",
        f"http://127.0.0.1:{server['port']}",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert re.search(PROGRESS_WITH_RATE_AND_ETA, result.stderr), result.stderr  # the sampler's bar, from the websocket
    info = mp4_streams(str(out))
    assert info["kinds"] == ["audio", "video"] and info["frames"] == 9
    assert info["audio_duration"] == pytest.approx(9 / 23, abs=0.08)


def test_missing_input_file(tmp_path):
    result = cli("generate", "--image", str(tmp_path / "nope.png"), "--audio", str(tmp_path / "x.wav"))
    assert result.returncode == 2 and "--image: file not found" in result.stderr


def generate_without_server(workspace, *arguments):
    """``generate`` against a port where no server listens."""
    image, audio = workspace["media"][0]
    inputs = ["--image", str(workspace["inputs"] / image), "--audio", str(workspace["inputs"] / audio)]
    return cli("generate", *inputs, "--server", f"http://127.0.0.1:{free_port()}", *arguments)


def test_unreachable_server(workspace):
    result = generate_without_server(workspace)
    assert result.returncode == 3
    assert "is not reachable" in result.stderr and "COMFYUI_PATH" in result.stderr


def test_validation_errors_are_printed_readably(server, stand_ins, workspace, tmp_path):
    image, audio = workspace["media"][0]
    path = cpu_sized("fantasytalking_standard", tmp_path)
    graph = json.loads(open(path).read())
    for node in graph.values():
        if node["class_type"] == "FantasyTalkingSampler":
            del node["inputs"]["steps"]
    open(path, "w").write(json.dumps(graph))
    result = cli(
        "generate",
        "--image",
        str(workspace["inputs"] / image),
        "--audio",
        str(workspace["inputs"] / audio),
        "--workflow-file",
        path,
        "--server",
        f"http://127.0.0.1:{server['port']}",
    )
    assert result.returncode == 4, result.stderr
    assert "ComfyUI rejected the workflow" in result.stderr
    assert "(FantasyTalkingSampler)" in result.stderr and "steps" in result.stderr


def test_missing_models_are_named_with_folder_and_download(server, stand_ins, workspace, tmp_path):
    image, audio = workspace["media"][0]
    path = cpu_sized("fantasytalking_standard", tmp_path, adapter="fantasytalking_model_v2.ckpt")
    result = cli(
        "generate",
        "--image",
        str(workspace["inputs"] / image),
        "--audio",
        str(workspace["inputs"] / audio),
        "--workflow-file",
        path,
        "--server",
        f"http://127.0.0.1:{server['port']}",
    )
    assert result.returncode == 5, result.stderr
    assert "fantasytalking_model_v2.ckpt -> ComfyUI/models/?" in result.stderr or "fantasytalking_model_v2.ckpt" in result.stderr
    standard = cli(
        "generate",
        "--image",
        str(workspace["inputs"] / image),
        "--audio",
        str(workspace["inputs"] / audio),
        "--workflow",
        "standard",
        "--server",
        f"http://127.0.0.1:{server['port']}",
    )  # CLIP files are absent in the test
    assert standard.returncode == 5
    assert "umt5_xxl_fp8_e4m3fn_scaled.safetensors -> ComfyUI/models/text_encoders/" in standard.stderr
    assert "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/" in standard.stderr


def test_execution_errors_are_reported(server, stand_ins, workspace, tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"patch_embedding.weight": torch.zeros(2)}, str(workspace["models"] / "fantasytalking" / "broken_adapter.safetensors"))
    image, audio = workspace["media"][0]
    result = cli(
        "generate",
        "--image",
        str(workspace["inputs"] / image),
        "--audio",
        str(workspace["inputs"] / audio),
        "--workflow-file",
        cpu_sized("fantasytalking_standard", tmp_path, adapter="broken_adapter.safetensors"),
        "--server",
        f"http://127.0.0.1:{server['port']}",
    )
    assert result.returncode == 6, result.stderr
    assert "(FantasyTalkingModelLoader)" in result.stderr and "is not a FantasyTalking adapter" in result.stderr


def test_ctrl_c_cancels_the_job_on_the_server(server, stand_ins, workspace, tmp_path):
    import threading

    image, audio = workspace["media"][0]
    environment = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fantasytalking_cli",
            "generate",
            "--image",
            str(workspace["inputs"] / image),
            "--audio",
            str(workspace["inputs"] / audio),
            "--workflow-file",
            cpu_sized("fantasytalking_standard", tmp_path, steps=200, max_frames=21),
            "--server",
            f"http://127.0.0.1:{server['port']}",
            "--out",
            str(tmp_path / "never.mp4"),
        ],
        cwd=PACK_DIR,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # as from a terminal, also when pytest runs in the background
    lines, sampling = [], threading.Event()

    def read_stderr():  # Ctrl+C while the sampler runs, whatever this machine's speed
        for line in iter(process.stderr.readline, ""):
            lines.append(line)
            if "/200" in line:
                sampling.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert sampling.wait(timeout=300), "".join(lines)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    reader.join(timeout=60)
    stderr = "".join(lines)
    assert process.returncode == 130, stderr
    assert "Cancelled" in stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        http(server["port"], "/queue")["queue_running"] or http(server["port"], "/queue")["queue_pending"]
    ):
        time.sleep(0.5)
    assert not http(server["port"], "/queue")["queue_running"]
    assert not (tmp_path / "never.mp4").exists()


def test_models_lists_every_file_with_its_source(tmp_path):
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models" / "vae").mkdir(parents=True)
    (comfyui / "models" / "vae" / "wan_2.1_vae.safetensors").write_bytes(b"x")
    result = cli("models", "--comfyui", str(comfyui))
    assert result.returncode == 5  # files are missing
    lines = result.stdout.splitlines()
    assert any(line.startswith("wan_2.1_vae.safetensors") and " yes " in line for line in lines)
    assert any(
        line.startswith("fantasytalking_fp16.safetensors")
        and " no " in line
        and "Kijai/WanVideo_comfy : fantasytalking_fp16.safetensors" in line
        for line in lines
    )
    names = {line.split()[0] for line in lines[1:]}
    for name in WORKFLOWS:
        for node in load(name)[0]["nodes"]:
            for model in node["properties"].get("models", []):
                assert model["name"] in names


class HubStandIn:
    """A loopback stand-in for the Hugging Face file endpoint (HEAD + GET /<repo>/resolve/main/<path>)."""

    def __init__(self, files: dict):
        import hashlib
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _head(self):
                body = files.get(self.path.split("?")[0])
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return None
                self.send_response(200)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("X-Repo-Commit", "0" * 40)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                return body

            def do_HEAD(self):
                self._head()

            def do_GET(self):
                body = self._head()
                if body is not None:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.env = {"HF_ENDPOINT": f"http://127.0.0.1:{self.server.server_port}", "HF_HUB_OFFLINE": "0"}

    def close(self):
        self.server.shutdown()


def test_models_download_fetches_each_missing_file(tmp_path):
    needed = {m["name"]: m for name in WORKFLOWS for node in load(name)[0]["nodes"] for m in node["properties"].get("models", [])}
    files = {m["url"].split("huggingface.co", 1)[1]: f"content of {name}".encode() for name, m in needed.items()}
    hub = HubStandIn(files)
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    try:
        env = {**hub.env, "HF_HOME": str(tmp_path / "hf-home")}
        result = cli("models", "--comfyui", str(comfyui), "--download", env=env)
        assert result.returncode == 0, result.stderr
        for name, model in needed.items():
            assert (comfyui / "models" / model["directory"] / name).read_bytes() == f"content of {name}".encode()
        assert cli("models", "--comfyui", str(comfyui), env=env).returncode == 0
        assert not any(p.name == ".fantasytalking-download" for p in (comfyui / "models").rglob("*"))
        (comfyui / "models" / "vae" / "wan_2.1_vae.safetensors").unlink()
        files.clear()
        failed = cli("models", "--comfyui", str(comfyui), "--download", env=env)
        assert failed.returncode == 5
        assert "could not download Comfy-Org/Wan_2.1_ComfyUI_repackaged/split_files/vae/wan_2.1_vae.safetensors" in failed.stderr
    finally:
        hub.close()


def test_generate_starts_a_local_comfyui_when_none_runs(comfyui_path, server, stand_ins, workspace, tmp_path):
    """No server on the port: the command starts ComfyUI from COMFYUI_PATH (with --comfyui-args), uses it, stops it."""
    port = free_port()
    root = tmp_path / "started"
    for folder in ("user", "input", "output"):
        (root / folder).mkdir(parents=True)
    config = server["log"].parent / "extra_model_paths.yaml"  # the test server's models and custom nodes
    extra = (
        f"--cpu --disable-api-nodes --database-url sqlite:///:memory: --extra-model-paths-config {config} "
        f"--input-directory {root / 'input'} --output-directory {root / 'output'} --user-directory {root / 'user'}"
    )
    image, audio = workspace["media"][0]
    out = tmp_path / "started.mp4"
    result = cli(
        "generate",
        "--image",
        str(workspace["inputs"] / image),
        "--audio",
        str(workspace["inputs"] / audio),
        "--workflow-file",
        cpu_sized("fantasytalking_standard", tmp_path),
        "--server",
        f"http://127.0.0.1:{port}",
        "--comfyui-args",
        extra,
        "--out",
        str(out),
        env={"COMFYUI_PATH": str(comfyui_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "Starting ComfyUI from" in result.stderr
    assert mp4_streams(str(out))["kinds"] == ["audio", "video"]
    with pytest.raises(OSError):
        http(port, "/system_stats", timeout=5)  # stopped again


def test_long_track_is_cut_by_max_seconds(server, stand_ins, workspace, tmp_path):
    from tiny_models import save_media

    image, audio = save_media(str(tmp_path), seconds=20.0, seed=5)
    out = tmp_path / "cut.mp4"
    result = cli(
        "generate",
        "--image",
        str(tmp_path / image),
        "--audio",
        str(tmp_path / audio),
        "--max-seconds",
        "6",
        "--workflow-file",
        cpu_sized("fantasytalking_long_video", tmp_path, max_frames=100001),
        "--server",
        f"http://127.0.0.1:{server['port']}",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "Queued the long workflow" in result.stderr  # 6 s is more than one 81-frame window
    info = mp4_streams(str(out))
    assert info["frames"] == int(23 * 6 // 4) * 4 + 5 == 141  # two segments: frames 0-80 and 68-140
    assert info["audio_duration"] == pytest.approx(141 / 23, abs=0.08)  # the voice cut to the video, as officially


def queued_graph(server, stderr: str) -> dict:
    """The graph ComfyUI ran for the job the command queued (from its history)."""
    prompt_id = re.search(r"workflow as ([0-9a-f-]+)", stderr).group(1)
    return http(server["port"], f"/history/{prompt_id}")[prompt_id]["prompt"][2]


def first_frame(path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def talk(workspace, tmp_path, server, out, *extra):
    _, audio = workspace["media"][0]
    return cli(
        "generate",
        "--image",
        str(workspace["inputs"] / "portrait.png"),
        "--audio",
        str(workspace["inputs"] / audio),
        "--workflow-file",
        cpu_sized("fantasytalking_standard", tmp_path),
        "--seed",
        "3",
        "--server",
        f"http://127.0.0.1:{server['port']}",
        "--out",
        str(tmp_path / out),
        *extra,
    )


def test_generate_makes_an_identity_video(server, stand_ins, workspace, tmp_path):
    """--identity-module adds the identity workflow's loader, Face Crop and Face Embedding to the workflow (here the
    standard one), and the identity changes the video."""
    plain = talk(workspace, tmp_path, server, "plain.mp4")
    assert plain.returncode == 0, plain.stderr
    result = talk(workspace, tmp_path, server, "identity.mp4", "--identity-module", "identity_tiny.safetensors", "--identity-scale", "0.7")
    assert result.returncode == 0, result.stderr
    graph = queued_graph(server, result.stderr)
    kinds = {node["class_type"]: key for key, node in graph.items()}
    apply = graph[kinds["FantasyTalkingApply"]]["inputs"]
    assert apply["identity"] == [kinds["FantasyTalkingFaceEmbedding"], 0] and apply["identity_scale"] == 0.7
    loader = graph[apply["fantasytalking_model"][0]]["inputs"]
    assert (
        loader["model_name"] == "identity_tiny.safetensors"
        and graph[loader["fantasytalking_model"][0]]["class_type"] == "FantasyTalkingModelLoader"
    )
    assert graph[kinds["FantasyTalkingFaceEmbedding"]]["inputs"]["arcface_model"] == "buffalo_l/w600k_r50.onnx"
    assert mp4_streams(str(tmp_path / "identity.mp4"))["frames"] == 9
    assert np.abs(first_frame(tmp_path / "identity.mp4").astype(int) - first_frame(tmp_path / "plain.mp4").astype(int)).max() > 0


def test_generate_makes_motion_videos_from_a_preset_and_from_a_clip(server, stand_ins, workspace, tmp_path):
    from dataset_media import make_videos

    result = talk(workspace, tmp_path, server, "intense.mp4", "--motion-module", "motion_tiny.safetensors", "--motion-preset", "intense")
    assert result.returncode == 0, result.stderr
    graph = queued_graph(server, result.stderr)
    (intensity,) = [node for node in graph.values() if node["class_type"] == "FantasyTalkingMotionIntensity"]
    assert intensity["inputs"]["preset"] == "intense"
    clip = make_videos(str(tmp_path / "reference"), talking=1, extras=False)["talk_0"]
    result = talk(workspace, tmp_path, server, "measured.mp4", "--motion-module", "motion_tiny.safetensors", "--motion-from", clip)
    assert result.returncode == 0, result.stderr
    graph = queued_graph(server, result.stderr)
    (measure,) = [node for node in graph.values() if node["class_type"] == "FantasyTalkingMeasureMotion"]
    assert graph[measure["inputs"]["video"][0]]["class_type"] == "LoadVideo"
    assert graph[measure["inputs"]["fantasytalking_model"][0]]["inputs"]["model_name"] == "motion_tiny.safetensors"  # its calibration
    assert mp4_streams(str(tmp_path / "measured.mp4"))["frames"] == 9


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--arcface", "buffalo_l/w600k_r50.onnx"], "--arcface need --identity-module"),
        (["--motion-preset", "intense"], "--motion-preset need --motion-module"),
        (["--motion-module", "m.safetensors", "--motion-preset", "intense", "--omega-lip", "0.2"], "give it or --omega-lip/--omega-body"),
        (["--motion-module", "m.safetensors", "--omega-body", "1.5"], "--omega-body must lie between 0 and 1; got 1.5"),
        (["--motion-module", "m.safetensors", "--motion-from", "nowhere.mp4"], "--motion-from: file not found: nowhere.mp4"),
        (["--identity-module", "i.safetensors", "--identity-scale", "11"], "--identity-scale must lie between 0 and 10; got 11"),
        (["--motion-module", "m.safetensors", "--body-model", "mediapipe pose"], "--body-model is for measuring --motion-from"),
    ],
)
def test_contradictory_module_options_are_refused_before_the_server(workspace, arguments, message):
    result = generate_without_server(workspace, *arguments)  # refused before the (absent) server is asked
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--identity-module", "nobody.safetensors"], "--identity-module: ComfyUI has no 'nobody.safetensors' (it offers: "),
        (
            ["--identity-module", "identity_tiny.safetensors", "--arcface", "antelopev2/glintr100.onnx"],
            "--arcface: ComfyUI has no 'antelopev2/glintr100.onnx' (it offers: buffalo_l/w600k_r50.onnx",
        ),
        (
            ["--motion-module", "motion_tiny.safetensors", "--motion-preset", "wild"],
            "--motion-preset: ComfyUI has no 'wild' (it offers: custom, subtle",
        ),
    ],
)
def test_module_choices_the_server_lacks_are_named_with_what_it_offers(server, stand_ins, workspace, tmp_path, arguments, message):
    result = talk(workspace, tmp_path, server, "never.mp4", *arguments)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "never.mp4").exists()
