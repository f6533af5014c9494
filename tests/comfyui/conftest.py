"""ComfyUI tier fixtures: the real ComfyUI, in-process, with this pack loaded by ComfyUI's own loader, and a
models folder of tiny random-weight files in the real formats."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest_helpers import free_port, http, save_astronaut
from face_models import EncodedFace, write_model_pack
from shipped import LOADER_FOLDERS, WORKFLOWS, load
from tiers import PACK_DIR
from tiny_models import (
    TINY_IDENTITY,
    TINY_MOTION,
    TINY_WAN,
    in_layout,
    random_adapter_state,
    random_identity_state,
    random_motion_state,
    save_ctc_wav2vec_folder,
    save_media,
    save_tiny_wan_i2v,
    save_tiny_wan_lora,
    save_tiny_wan_vae,
    write_checkpoint,
)

from fantasy_core import AudioAdapterConfig
from fantasy_core.module_file import save_fantasytalking_file
from fantasy_core.motion.intensity import MotionCalibration

TESTING_PACK = os.path.join(os.path.dirname(__file__), "testing_pack")
ADAPTER_768 = AudioAdapterConfig(audio_dim=768, context_dim=512, model_dim=TINY_WAN["dim"], num_blocks=TINY_WAN["num_layers"])


@pytest.fixture(scope="session")
def comfy_nodes(comfy, tmp_path_factory):
    """ComfyUI's node registry with core extras and this pack loaded (as ComfyUI loads custom nodes)."""
    from fantasy_comfy.host import load_pack

    return load_pack(str(tmp_path_factory.mktemp("custom_nodes")))


@pytest.fixture(scope="session")
def model_files(comfy, comfy_nodes, tmp_path_factory):
    """models/{diffusion_models,fantasytalking,audio_encoders} with tiny files, registered with folder_paths."""
    import folder_paths

    root = tmp_path_factory.mktemp("models")
    for name in ("diffusion_models", "fantasytalking", "audio_encoders", "vae", "loras", "insightface"):
        (root / name).mkdir()
        folder_paths.add_model_folder_path(name, str(root / name))
    files = {
        "wan": save_tiny_wan_i2v(comfy, str(root / "diffusion_models" / "wan2.1_i2v_tiny.safetensors")),
        "adapter_state": random_adapter_state(ADAPTER_768, seed=1),
        "wav2vec": save_ctc_wav2vec_folder(str(root / "audio_encoders" / "wav2vec2-tiny-960h")),
        "root": root,
    }
    files["adapter"] = write_checkpoint(
        str(root / "fantasytalking" / "fantasytalking_tiny.ckpt"), in_layout(files["adapter_state"], "nested")
    )
    # identity modules for the tiny Wan (256 wide, 2 blocks, 512-wide ArcFace input): trained-like, freshly initialised
    # (zero keys/values), and combined with the audio adapter in one file as the trainer writes it
    files["identity_state"] = random_identity_state(TINY_IDENTITY, seed=4)
    identity = (files["identity_state"], TINY_IDENTITY)
    folder = root / "fantasytalking"
    files["identity"] = save_fantasytalking_file(str(folder / "identity_tiny.safetensors"), identity=identity)
    files["identity_zero"] = save_fantasytalking_file(
        str(folder / "identity_untrained.safetensors"),
        identity=(random_identity_state(TINY_IDENTITY, seed=4, zero_key_values=True), TINY_IDENTITY),
    )
    files["combined"] = save_fantasytalking_file(
        str(folder / "fantasytalking_combined_tiny.safetensors"), audio=files["adapter_state"], identity=identity
    )
    # motion networks for the tiny Wan's 256-wide time embedding: trained-like and freshly initialised (zero last layer)
    files["motion_state"] = random_motion_state(TINY_MOTION, seed=5)
    files["motion"] = save_fantasytalking_file(
        str(folder / "motion_tiny.safetensors"), motion=(files["motion_state"], TINY_MOTION, MotionCalibration())
    )
    files["motion_zero"] = save_fantasytalking_file(
        str(folder / "motion_untrained.safetensors"),
        motion=(random_motion_state(TINY_MOTION, seed=5, zero_out=True), TINY_MOTION, MotionCalibration()),
    )
    # an insightface pack of ONNX stand-ins with the real signatures: SCRFD reporting one known face (in its 640 px
    # input), ArcFace 112x112 -> 512
    files["detector_face"] = EncodedFace(
        box=(220.0, 100.0, 380.0, 300.0), score=0.93, stride=16, keypoints=((260, 180), (340, 180), (300, 220), (268, 260), (332, 260))
    )
    files["insightface_pack"] = write_model_pack(str(root / "insightface"), [files["detector_face"]], pack="buffalo_l")
    return files


@pytest.fixture(scope="session")
def workspace(comfy, comfy_nodes, model_files, tmp_path_factory):
    import folder_paths

    import nodes

    model_files["vae"] = save_tiny_wan_vae(comfy, str(model_files["root"] / "vae" / "wan_2.1_vae_tiny.safetensors"))
    inputs, outputs = tmp_path_factory.mktemp("input"), tmp_path_factory.mktemp("output")
    media = [save_media(str(inputs), seconds=1.0, seed=seed) for seed in (0, 1)]
    folder_paths.set_input_directory(str(inputs))
    folder_paths.set_output_directory(str(outputs))
    if "FantasyTalkingTestConditioning" not in comfy_nodes:
        assert asyncio.run(nodes.load_custom_node(TESTING_PACK, module_parent="custom_nodes"))
    return {"inputs": inputs, "outputs": outputs, "media": media, "models": model_files["root"]}


@pytest.fixture(scope="session")
def server(comfyui_path, workspace, tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    custom_nodes = root / "custom_nodes"
    custom_nodes.mkdir()
    os.symlink(PACK_DIR, custom_nodes / "fantasytalking-native")
    os.symlink(TESTING_PACK, custom_nodes / "fantasytalking_testing_pack")
    (root / "user").mkdir()
    config = root / "extra_model_paths.yaml"
    models = workspace["models"]
    config.write_text(
        "test:\n"
        f"  base_path: {models}\n"
        "  diffusion_models: diffusion_models\n  vae: vae\n  fantasytalking: fantasytalking\n"
        "  audio_encoders: audio_encoders\n  loras: loras\n"
        "  insightface: insightface\n"
        f"  custom_nodes: {custom_nodes}\n"
    )
    port = free_port()
    log = open(root / "server.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--disable-auto-launch",
            "--disable-api-nodes",
            "--database-url",
            "sqlite:///:memory:",
            "--extra-model-paths-config",
            str(config),
            "--input-directory",
            str(workspace["inputs"]),
            "--output-directory",
            str(root / "output"),
            "--user-directory",
            str(root / "user"),
        ],
        cwd=comfyui_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                http(port, "/system_stats", timeout=5)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ComfyUI server did not start:\n" + (root / "server.log").read_text()[-4000:]) from None
                time.sleep(1)
        yield {"port": port, "output": root / "output", "log": root / "server.log"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def stand_ins(workspace, model_files):
    """Tiny models under the file names the shipped workflows use, and the inputs they name."""
    root = workspace["models"]
    single_wav2vec = os.path.join(model_files["wav2vec"], "model.safetensors")  # Hugging Face naming, CTC head
    repack = write_checkpoint(str(root / "fantasytalking" / "tiny_repack.safetensors"), in_layout(model_files["adapter_state"], "repack"))
    sources = {
        "UNETLoader": model_files["wan"],
        "VAELoader": model_files["vae"],
        "FantasyTalkingModelLoader": repack,
        "FantasyTalkingWav2VecLoader": single_wav2vec,
        "LoraLoaderModelOnly": save_tiny_wan_lora(str(root / "loras" / "tiny_distill.safetensors")),
    }
    for name in WORKFLOWS:
        for node in load(name)[1].values():
            if node["class_type"] in sources:
                widget, folder = LOADER_FOLDERS[node["class_type"]]
                file_name = node["inputs"][widget]
                source = (
                    model_files["identity"]
                    if "identity" in file_name
                    else model_files["motion"]
                    if "motion" in file_name
                    else sources[node["class_type"]]
                )
                target = root / folder / file_name
                if not target.exists():
                    os.symlink(source, target)
    _, audio = workspace["media"][0]
    save_astronaut(workspace["inputs"] / "portrait.png")  # a real face, for the identity workflow
    shutil.copy(workspace["inputs"] / audio, workspace["inputs"] / "speech.wav")


@pytest.fixture(scope="session")
def made(comfy, tmp_path_factory):
    """The training tests' prepared dataset (four clips), tiny Wan file and that Wan loaded as the trainer loads it."""
    import torch
    from training_setup import prepare_training_dataset

    from fantasy_core.dataset.reader import CachedClips
    from fantasy_train.wan import FrozenWan

    made = prepare_training_dataset(comfy, str(tmp_path_factory.mktemp("training")))
    made["clips"] = CachedClips(made["dataset"], {}, need_faces=True, need_omega=True)
    made["frozen"] = FrozenWan.load(made["wan"], "fp32", torch.device("cpu"))
    return made
