"""Where the pack looks for model files, registered with ComfyUI's folder_paths."""

from __future__ import annotations

import json
import os

import folder_paths

from fantasy_core.evaluation import catalog

MODULE_FOLDER = "fantasytalking"  # the module files: ComfyUI/models/fantasytalking, plus models/model_patches
MODULE_FOLDERS = (MODULE_FOLDER, "model_patches")
WAV2VEC_FOLDERS = ("audio_encoders", "transformers")
INSIGHTFACE_FOLDER = "insightface"  # ComfyUI/models/insightface/models/<pack>/*.onnx, shared with other face packs
NOT_ARCFACE = ("det_", "scrfd", "2d106det", "1k3d68", "genderage")  # the other models of a pack
DWPOSE_FOLDER = "dwpose"  # ComfyUI/models/dwpose/*.onnx: DWPose / RTMPose body models for measuring ω_b
MEDIAPIPE_POSE = "mediapipe pose"
EVALUATION_FOLDER = catalog.FOLDER  # ComfyUI/models/evaluation: the metric networks' weights (fantasytalking evaluate too)
SYNCNET_FILE = catalog.BY_KEY["syncnet"].name
DINO_FOLDER = catalog.BY_KEY["dino"].name


def _register(name: str, extensions: set[str]) -> None:
    default = os.path.join(folder_paths.models_dir, name)
    paths, known = folder_paths.folder_names_and_paths.get(name, ([], set()))
    if default not in paths:
        paths = [default, *paths]
    folder_paths.folder_names_and_paths[name] = (paths, set(known) | extensions)


def register_folders() -> None:
    """models/fantasytalking with checkpoint-extension filtering (add_model_folder_path would accept any file),
    models/insightface (kept as other face packs register it, if one already did), models/dwpose and
    models/evaluation (SyncNet's syncnet_v2.model has its own extension)."""
    _register(MODULE_FOLDER, set(folder_paths.supported_pt_extensions))
    _register(INSIGHTFACE_FOLDER, {".onnx"})
    _register(DWPOSE_FOLDER, {".onnx"})
    _register(EVALUATION_FOLDER, {".model", *folder_paths.supported_pt_extensions})


def folder_dirs(name: str) -> list[str]:
    if name in folder_paths.folder_names_and_paths:
        return list(folder_paths.get_folder_paths(name))
    return [os.path.join(folder_paths.models_dir, name)]


def module_files() -> list[str]:
    names = set()
    for folder in MODULE_FOLDERS:
        if folder in folder_paths.folder_names_and_paths:
            names.update(folder_paths.get_filename_list(folder))
    return sorted(names)


def module_file_path(name: str) -> str:
    for folder in MODULE_FOLDERS:
        if folder in folder_paths.folder_names_and_paths:
            path = folder_paths.get_full_path(folder, name)
            if path is not None:
                return path
    searched = ", ".join(d for folder in MODULE_FOLDERS for d in folder_dirs(folder))
    raise FileNotFoundError(
        f"FantasyTalking module file '{name}' was not found in {searched}. Put it in ComfyUI/models/fantasytalking/: "
        "the audio adapter fantasytalking_model.ckpt (acvlab/FantasyTalking), or a file the FantasyTalking trainer wrote."
    )


def wav2vec_choices() -> list[str]:
    """Hugging Face folders (holding config.json) and single .safetensors files under audio_encoders/transformers."""
    choices = set()
    for folder in WAV2VEC_FOLDERS:
        for root_dir in folder_dirs(folder):
            if not os.path.isdir(root_dir):
                continue
            for current, dirs, files in os.walk(root_dir, followlinks=True):
                relative = os.path.relpath(current, root_dir)
                if "config.json" in files and relative != ".":
                    choices.add(relative.replace(os.sep, "/"))
                    dirs.clear()
                    continue
                if folder == "audio_encoders":
                    choices.update(
                        os.path.normpath(os.path.join(relative, f)).replace(os.sep, "/")
                        for f in files
                        if f.endswith((".safetensors", ".sft"))
                    )
    return sorted(choices)


def wav2vec_path(name: str) -> str:
    for folder in WAV2VEC_FOLDERS:
        for root_dir in folder_dirs(folder):
            path = os.path.join(root_dir, *name.split("/"))
            if os.path.exists(path):
                return path
    searched = ", ".join(d for folder in WAV2VEC_FOLDERS for d in folder_dirs(folder))
    raise FileNotFoundError(
        f"wav2vec2 model '{name}' was not found in {searched}. Download facebook/wav2vec2-base-960h (config.json, "
        "preprocessor_config.json, model.safetensors) into ComfyUI/models/audio_encoders/wav2vec2-base-960h/."
    )


def insightface_packs() -> dict[str, str]:
    """Model packs (folders holding .onnx files) under every insightface folder's models/: name -> path."""
    packs = {}
    for root_dir in folder_dirs(INSIGHTFACE_FOLDER):
        models = os.path.join(root_dir, "models")
        if not os.path.isdir(models):
            continue
        for name in sorted(os.listdir(models)):
            # the antelopev2 zip unpacks into antelopev2/antelopev2/: accept that too
            for path in (os.path.join(models, name), os.path.join(models, name, name)):
                if os.path.isdir(path) and name not in packs and any(f.endswith(".onnx") for f in os.listdir(path)):
                    packs[name] = path
    return packs


def face_detector_choices() -> list[str]:
    """'mediapipe' (bundled, the default) and each insightface pack that has an SCRFD detector."""
    found = [f"insightface/{name}" for name, path in insightface_packs().items() if _detector_file(path)]
    return ["mediapipe", *found]


def _detector_file(pack_path: str) -> str | None:
    names = sorted(f for f in os.listdir(pack_path) if f.endswith(".onnx") and f.startswith(("det_", "scrfd")))
    return os.path.join(pack_path, names[0]) if names else None


def detector_path(choice: str) -> str:
    pack = choice.removeprefix("insightface/")
    path = insightface_packs().get(pack)
    found = path and _detector_file(path)
    if not found:
        raise FileNotFoundError(
            f"Face detector '{choice}' was not found: no det_*.onnx in a '{pack}' pack under "
            f"{', '.join(os.path.join(d, 'models') for d in folder_dirs(INSIGHTFACE_FOLDER))}. Put the insightface "
            f"'{pack}' pack (e.g. buffalo_l: det_10g.onnx, w600k_r50.onnx) in ComfyUI/models/insightface/models/{pack}/, "
            "or choose 'mediapipe'."
        )
    return found


def arcface_choices() -> list[str]:
    """'<pack>/<file>.onnx' for every recognition model in the insightface packs (w600k_r50, glintr100, ...)."""
    return [
        f"{name}/{f}"
        for name, path in insightface_packs().items()
        for f in sorted(os.listdir(path))
        if f.endswith(".onnx") and not f.startswith(NOT_ARCFACE)
    ]


def arcface_path(choice: str) -> str:
    pack, _, file = choice.partition("/")
    path = insightface_packs().get(pack)
    if path and file and os.path.isfile(os.path.join(path, file)):
        return os.path.join(path, file)
    raise FileNotFoundError(
        f"ArcFace model '{choice}' was not found under "
        f"{', '.join(os.path.join(d, 'models') for d in folder_dirs(INSIGHTFACE_FOLDER))}. Put the insightface "
        "buffalo_l pack (w600k_r50.onnx) in ComfyUI/models/insightface/models/buffalo_l/ or antelopev2 (glintr100.onnx) "
        "in .../models/antelopev2/."
    )


def body_model_choices() -> list[str]:
    """'mediapipe pose' (bundled, the default) and each ONNX file in models/dwpose."""
    names = folder_paths.get_filename_list(DWPOSE_FOLDER) if DWPOSE_FOLDER in folder_paths.folder_names_and_paths else []
    return [MEDIAPIPE_POSE, *(f"dwpose/{name}" for name in sorted(names) if "yolo" not in name.lower())]


def body_model_path(choice: str) -> str:
    name = choice.removeprefix("dwpose/")
    path = folder_paths.get_full_path(DWPOSE_FOLDER, name) if DWPOSE_FOLDER in folder_paths.folder_names_and_paths else None
    if path is None:
        raise FileNotFoundError(
            f"Body model '{choice}' was not found in {', '.join(folder_dirs(DWPOSE_FOLDER))}. Put dw-ll_ucoco_384.onnx "
            "(yzd-v/DWPose) in ComfyUI/models/dwpose/, or choose 'mediapipe pose'."
        )
    return path


def syncnet_choices() -> list[str]:
    """syncnet_v2.model, always (a workflow naming it then loads, and a missing file is reported with where to get
    it), and every other weights file directly in models/evaluation that no other metric's catalog entry names."""
    others = {entry.name for entry in catalog.WEIGHTS if entry.key != "syncnet"}
    names = folder_paths.get_filename_list(EVALUATION_FOLDER) if EVALUATION_FOLDER in folder_paths.folder_names_and_paths else []
    return sorted({SYNCNET_FILE, *(name for name in names if "/" not in name and name not in others)})


def syncnet_path(name: str) -> str:
    known = EVALUATION_FOLDER in folder_paths.folder_names_and_paths
    path = folder_paths.get_full_path(EVALUATION_FOLDER, name) if known else None
    if path is None:
        entry = catalog.BY_KEY["syncnet"]
        raise FileNotFoundError(
            f"SyncNet weights '{name}' were not found in {', '.join(folder_dirs(EVALUATION_FOLDER))}. Put {entry.name} "
            f"({entry.source}: {entry.url}) in ComfyUI/models/{EVALUATION_FOLDER}/, or let "
            "`fantasytalking models --evaluation --download` fetch it."
        )
    return path


def _model_type(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def dino_choices() -> list[str]:
    """dino-vitb16, always (a workflow naming it then loads, and a missing folder is reported with where to get it),
    and every other sub-folder of models/evaluation whose config.json holds a ViT (model_type "vit")."""
    found = {DINO_FOLDER}
    for root_dir in folder_dirs(EVALUATION_FOLDER):
        if os.path.isdir(root_dir):
            found.update(name for name in os.listdir(root_dir) if _model_type(os.path.join(root_dir, name)) == "vit")
    return sorted(found)


def dino_path(name: str) -> str:
    """The folder ``name`` directly in a models/evaluation folder (the first that has it)."""
    if name and name not in (".", "..") and os.path.basename(name) == name:
        for root_dir in folder_dirs(EVALUATION_FOLDER):
            if os.path.isdir(os.path.join(root_dir, name)):
                return os.path.join(root_dir, name)
    entry = catalog.BY_KEY["dino"]
    raise FileNotFoundError(
        f"DINO folder '{name}' was not found in {', '.join(folder_dirs(EVALUATION_FOLDER))}. Download {entry.hf_repo} from "
        f"Hugging Face (config.json and model.safetensors) into ComfyUI/models/{EVALUATION_FOLDER}/{entry.name}/, or let "
        "`fantasytalking models --evaluation --download` fetch it."
    )
