"""ComfyUI itself loads the pack from a custom_nodes folder, with no import failure."""

import os
import subprocess
import sys

from tiers import PACK_DIR


def test_comfyui_imports_the_pack(comfyui_path, tmp_path):
    custom_nodes = tmp_path / "custom_nodes"
    custom_nodes.mkdir()
    os.symlink(PACK_DIR, custom_nodes / "fantasytalking-native")
    (tmp_path / "user").mkdir()
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(f"test:\n  custom_nodes: {custom_nodes}\n")
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
