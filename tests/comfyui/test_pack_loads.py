"""ComfyUI itself loads the pack from a custom_nodes folder, with no import failure."""

import os
import subprocess
import sys

from tiers import PACK_DIR


def custom_nodes_config(tmp_path):
    """A custom_nodes folder holding only this pack, and an extra_model_paths.yaml pointing ComfyUI at it."""
    custom_nodes = tmp_path / "custom_nodes"
    custom_nodes.mkdir()
    os.symlink(PACK_DIR, custom_nodes / "fantasytalking-native")
    (tmp_path / "user").mkdir()
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(f"test:\n  custom_nodes: {custom_nodes}\n")
    return custom_nodes, config


def test_comfyui_imports_the_pack(comfyui_path, tmp_path):
    _, config = custom_nodes_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "main.py", "--cpu", "--quick-test-for-ci", "--disable-api-nodes",
         "--database-url", "sqlite:///:memory:", "--extra-model-paths-config", str(config),
         "--output-directory", str(tmp_path / "out"), "--user-directory", str(tmp_path / "user")],
        cwd=comfyui_path, capture_output=True, text=True, timeout=300,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "IMPORT FAILED" not in log and "Error while calling comfy_entrypoint" not in log, log[-3000:]
    loaded = [line for line in log.splitlines() if "fantasytalking-native" in line and "seconds" in line]
    assert loaded, log[-3000:]


def test_nodes_register_without_optional_packages(comfyui_path, tmp_path):
    """With soxr unimportable the pack still loads, its nodes register, and the log says what is missing."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "soxr.py").write_text("raise ImportError('soxr blocked for this test')\n")
    custom_nodes, _ = custom_nodes_config(tmp_path)
    script = (
        "import sys, asyncio; sys.argv = ['main.py', '--cpu']; import comfy.options; comfy.options.enable_args_parsing(); "
        "import comfy.cli_args, utils.extra_config, nodes; "
        f"assert asyncio.run(nodes.load_custom_node({str(custom_nodes / 'fantasytalking-native')!r})); "
        "print('REGISTERED', sorted(k for k in nodes.NODE_CLASS_MAPPINGS if k.startswith('FantasyTalking')))"
    )
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{comfyui_path}"}
    result = subprocess.run([sys.executable, "-c", script], cwd=comfyui_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FantasyTalkingAudioEmbeds" in result.stdout and "FantasyTalkingApply" in result.stdout
    assert "'soxr' is not installed" in result.stderr and "pip install -r requirements.txt" in result.stderr
