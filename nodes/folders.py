"""Where the pack looks for model files, registered with ComfyUI's folder_paths."""

from __future__ import annotations

import os

import folder_paths

ADAPTER_FOLDER = "fantasytalking"  # ComfyUI/models/fantasytalking, plus models/model_patches
ADAPTER_FOLDERS = (ADAPTER_FOLDER, "model_patches")
WAV2VEC_FOLDERS = ("audio_encoders", "transformers")


def register_folders() -> None:
    """models/fantasytalking with checkpoint-extension filtering (add_model_folder_path would accept any file)."""
    default = os.path.join(folder_paths.models_dir, ADAPTER_FOLDER)
    paths, _ = folder_paths.folder_names_and_paths.get(ADAPTER_FOLDER, ([], set()))
    if default not in paths:
        paths = [default, *paths]
    folder_paths.folder_names_and_paths[ADAPTER_FOLDER] = (paths, set(folder_paths.supported_pt_extensions))


def folder_dirs(name: str) -> list[str]:
    if name in folder_paths.folder_names_and_paths:
        return list(folder_paths.get_folder_paths(name))
    return [os.path.join(folder_paths.models_dir, name)]


def adapter_files() -> list[str]:
    names = set()
    for folder in ADAPTER_FOLDERS:
        if folder in folder_paths.folder_names_and_paths:
            names.update(folder_paths.get_filename_list(folder))
    return sorted(names)


def adapter_path(name: str) -> str:
    for folder in ADAPTER_FOLDERS:
        if folder in folder_paths.folder_names_and_paths:
            path = folder_paths.get_full_path(folder, name)
            if path is not None:
                return path
    searched = ", ".join(d for folder in ADAPTER_FOLDERS for d in folder_dirs(folder))
    raise FileNotFoundError(
        f"FantasyTalking adapter '{name}' was not found in {searched}. Download fantasytalking_model.ckpt "
        "(acvlab/FantasyTalking) into ComfyUI/models/fantasytalking/."
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
