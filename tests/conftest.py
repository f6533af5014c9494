"""Two tiers: core tests (pure PyTorch) always run; tests under tests/comfyui/ need a real ComfyUI checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from tiers import COMFYUI_SKIP_REASON, PACK_DIR, find_comfyui

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    comfyui_dir = PACK_DIR / "tests" / "comfyui"
    found = find_comfyui()
    for item in items:
        if comfyui_dir in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.comfyui)
            if found is None:
                item.add_marker(pytest.mark.skip(reason=COMFYUI_SKIP_REASON))


def pytest_report_header(config):
    found = find_comfyui()
    return f"ComfyUI tier: {found}" if found else COMFYUI_SKIP_REASON


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    found = find_comfyui()
    if found is None:
        pytest.skip(COMFYUI_SKIP_REASON)
    return found


@pytest.fixture(scope="session")
def comfy(comfyui_path):
    """ComfyUI's own modules, imported in-process with --cpu (never stubbed)."""
    if str(comfyui_path) not in sys.path:
        sys.path.insert(0, str(comfyui_path))
    import comfy.options

    comfy.options.enable_args_parsing()
    saved_argv = sys.argv
    sys.argv = ["main.py", "--cpu", "--disable-all-custom-nodes"]
    try:
        import comfy.cli_args  # noqa: F401  (parses --cpu)
        import utils.extra_config  # noqa: F401  (must precede `nodes`, which shadows `utils`)
        import comfy.model_management
        import comfy.model_patcher  # noqa: F401
        import comfy.sd  # noqa: F401
    finally:
        sys.argv = saved_argv
    return comfy


@pytest.fixture(scope="session")
def tiny_wav2vec_dir(tmp_path_factory) -> str:
    from tiny_models import save_wav2vec_folder

    return save_wav2vec_folder(str(tmp_path_factory.mktemp("wav2vec2-tiny")))
