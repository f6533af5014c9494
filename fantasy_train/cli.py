"""``python -m fantasy_train prepare VIDEOS OUT``: a folder of talking videos -> a cached FantasyTalking training set.
``python -m fantasy_train train CONFIG``: DAVA training on that set (launch it with accelerate for more than one GPU)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from fantasy_comfy.host import ComfyUINotFoundError, import_comfyui

EXIT_USAGE, EXIT_MISSING_MODEL, EXIT_FAILED = 2, 3, 1
EXIT_CODES = """exit codes:
  0  done
  1  the work failed: clips failed unexpectedly (prepare; run it again to retry them), or the run stopped (train:
     the loss diverged, a bad module file, an output_dir holding another run, a validation input)
  2  bad arguments or settings, a config that does not match its dataset, or ComfyUI could not start
  3  a model file is missing (each named with its folder and where to get it)"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default after its help (an option without one says in words what happens when it is not
    given); the exit codes as written."""

    def _get_help_string(self, action):
        if action.default in (None, False, [], ""):
            return action.help
        return super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    from fantasy_core.dataset.settings import DatasetSettings

    defaults = DatasetSettings()
    main_parser = argparse.ArgumentParser(
        prog="python -m fantasy_train",
        description="FantasyTalking training tools.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = main_parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser(
        "prepare",
        help="a folder of talking videos -> a cached training set (resumable)",
        description="Cuts a folder of talking videos into clips, filters them, and caches what training needs (latents, "
        "conditioning, audio features, lip masks, face embeddings, motion intensity). Run it again to continue.",
        epilog=EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    prep.add_argument("videos", help="folder of videos with speech (searched recursively)")
    prep.add_argument("out", help="dataset folder to create, or to continue after an interruption")
    models = prep.add_argument_group("models (file names in ComfyUI/models/<folder>, or paths)")
    models.add_argument("--vae", default="wan_2.1_vae.safetensors", help="Wan 2.1 VAE (models/vae)")
    models.add_argument("--text-encoder", default="umt5_xxl_fp8_e4m3fn_scaled.safetensors", help="UMT5-XXL (models/text_encoders)")
    models.add_argument("--clip-vision", default="clip_vision_h.safetensors", help="CLIP vision ViT-H (models/clip_vision)")
    models.add_argument("--wav2vec", default="wav2vec2-base-960h", help="wav2vec2 folder or file (models/audio_encoders)")
    models.add_argument(
        "--arcface",
        help="ArcFace ONNX as <pack>/<file> under models/insightface/models, e.g. buffalo_l/w600k_r50.onnx "
        "(non-commercial licence) (default: none, and no face embeddings are cached)",
    )
    models.add_argument("--face-detector", default=defaults.face_detector, help="'mediapipe' or insightface/<pack> (its SCRFD)")
    models.add_argument("--body-model", default=defaults.body_model, help="'mediapipe pose' or dwpose/<file>.onnx (models/dwpose)")
    clips = prep.add_argument_group("clips")
    clips.add_argument("--fps", type=float, default=defaults.fps, help="frame rate of the clips (the official inference rate)")
    clips.add_argument(
        "--frames",
        type=int,
        default=defaults.frames,
        help="frames per clip, 4k+1; at least the 2 s motion-measuring window (46 frames at 23 fps)",
    )
    clips.add_argument(
        "--width", type=int, default=defaults.width, help="clip width, a multiple of 16 (videos are scaled and centre-cropped)"
    )
    clips.add_argument("--height", type=int, default=defaults.height, help="clip height, a multiple of 16")
    clips.add_argument("--stride-seconds", type=float, help="between clip starts (default: back to back)")
    clips.add_argument(
        "--captions", help="CSV with columns file,caption (file relative to VIDEOS) (default: <video>.txt beside each video)"
    )
    filters = prep.add_argument_group("filters")
    filters.add_argument("--min-resolution", type=int, help="shorter side of a source video (default: the shorter of --width/--height)")
    filters.add_argument(
        "--min-face-confidence",
        type=float,
        help="detector score on the first, middle and last frame (default: 0.9 for insightface, the paper's; 0.8 for mediapipe)",
    )
    filters.add_argument(
        "--min-speech-fraction",
        type=float,
        default=defaults.min_speech_fraction,
        help="smallest fraction of a clip's 30 ms windows louder than --speech-level-db (0 to 1)",
    )
    filters.add_argument(
        "--speech-level-db",
        type=float,
        default=defaults.speech_level_db,
        help="loudness (dBFS) above which a 30 ms window counts as speech",
    )
    filters.add_argument(
        "--scene-cut-threshold",
        type=float,
        default=defaults.scene_cut_threshold,
        help="a clip is dropped when two consecutive frames' thumbnails differ by more than this (0 to 1)",
    )
    filters.add_argument(
        "--syncnet",
        help="SyncNet weights (syncnet_v2.model of joonson/syncnet_python): drop clips whose sound is off the lips "
        "(default: no lip-sync filter)",
    )
    filters.add_argument(
        "--sync-max-offset", type=int, help=f"with --syncnet: largest |offset| in 25 fps frames (default: {defaults.sync_max_offset})"
    )
    filters.add_argument(
        "--sync-min-confidence", type=float, help=f"with --syncnet: smallest confidence (default: {defaults.sync_min_confidence:g})"
    )
    run = prep.add_argument_group("run")
    run.add_argument(
        "--storage-dtype", choices=["bf16", "fp16", "fp32"], default=defaults.storage_dtype, help="precision of the cached float tensors"
    )
    run.add_argument("--workers", type=int, default=max(min((os.cpu_count() or 2) - 1, 8), 0), help="CPU worker processes (0: none)")
    run.add_argument("--clips-per-shard", type=int, default=16, help="clips per .safetensors shard (a shard is written when full)")
    run.add_argument("--encode-batch", type=int, default=4, help="clips encoded together on the GPU (VAE, CLIP vision, wav2vec2)")
    run.add_argument("--comfyui", help="ComfyUI folder (default: $COMFYUI_PATH, or the ComfyUI this pack is installed in)")
    run.add_argument("--comfyui-args", default="", help="ComfyUI device options, e.g. '--lowvram' or '--cpu' (default: none)")
    prep.set_defaults(run=prepare)
    trainer = commands.add_parser(
        "train",
        help="train the audio, identity and motion modules (resumes a run found in output_dir)",
        description="DAVA training of the audio adapter, the identity module and the motion network on a prepared set. "
        "A run found in the config's output_dir is resumed; launch with accelerate for more than one GPU.",
        epilog=EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    trainer.add_argument("config", help="TOML run configuration (see fantasy_train/configs/)")
    trainer.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optimizer.learning_rate=5e-5 (repeatable; default: none)",
    )
    trainer.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to TensorBoard)")
    trainer.add_argument("--comfyui", help="ComfyUI folder (default: $COMFYUI_PATH, or the ComfyUI this pack is installed in)")
    trainer.add_argument("--comfyui-args", default="", help="ComfyUI device options, e.g. '--lowvram' or '--cpu' (default: none)")
    trainer.set_defaults(run=train)
    return main_parser


def train(args) -> int:
    from fantasy_core.dataset.reader import DatasetMismatchError
    from fantasy_core.training.config import ConfigError, load_config
    from fantasy_core.training.trainable import StartError
    from fantasy_core.weights import CheckpointError

    try:
        config = load_config(args.config, args.set)
    except ConfigError as error:
        return _fail(str(error), EXIT_USAGE)
    failed = _start_comfyui(args)
    if failed is not None:
        return failed
    from .trainer import RunFolderError
    from .trainer import train as run_training
    from .validation import ValidationInputError

    try:
        from fantasy_comfy.model_folders import register_folders

        register_folders()
        result = run_training(config, show_progress=not args.no_progress)
    except FileNotFoundError as error:  # a model file (MissingModelError), named with its folder
        return _fail(str(error), EXIT_MISSING_MODEL)
    except (
        RunFolderError,
        DatasetMismatchError,
        StartError,
        CheckpointError,
        ImportError,  # an optional package (accelerate, or what the validation scores need), named with the fix
        ValidationInputError,
        FloatingPointError,
    ) as error:  # FloatingPointError: the run diverged
        return _fail(str(error), EXIT_FAILED)
    print(f"done: step {result['step']}; modules in {result['file']}")
    return 0


def prepare(args) -> int:
    from fantasy_core.dataset.analyse import AnalysisModels
    from fantasy_core.dataset.settings import DatasetSettings, SettingsError

    from .prepare import RunOptions, prepare_dataset

    if not args.syncnet and (args.sync_max_offset is not None or args.sync_min_confidence is not None):
        return _fail("--sync-max-offset and --sync-min-confidence need --syncnet (the SyncNet weights) to mean anything.", EXIT_USAGE)
    sync = {
        name: value
        for name, value in (("sync_max_offset", args.sync_max_offset), ("sync_min_confidence", args.sync_min_confidence))
        if value is not None
    }
    try:
        settings = DatasetSettings(
            fps=args.fps,
            frames=args.frames,
            width=args.width,
            height=args.height,
            stride_seconds=args.stride_seconds,
            min_resolution=args.min_resolution,
            min_face_confidence=args.min_face_confidence,
            min_speech_fraction=args.min_speech_fraction,
            speech_level_db=args.speech_level_db,
            scene_cut_threshold=args.scene_cut_threshold,
            face_detector=args.face_detector,
            body_model=args.body_model,
            storage_dtype=args.storage_dtype,
            **sync,
        )
        settings.check_motion_window()
    except (SettingsError, ValueError) as error:
        return _fail(str(error), EXIT_USAGE)
    if not os.path.isdir(args.videos):
        return _fail(f"VIDEOS: the folder {args.videos} does not exist.", EXIT_USAGE)
    failed = _start_comfyui(args)
    if failed is not None:
        return failed
    from .encoders import load_encoders

    try:
        from fantasy_comfy import model_folders as folders

        folders.register_folders()
        analysis = AnalysisModels(
            settings,
            detector_path=None if args.face_detector == "mediapipe" else folders.detector_path(args.face_detector),
            body_model_path=None if args.body_model == folders.MEDIAPIPE_POSE else folders.body_model_path(args.body_model),
            arcface_path=folders.arcface_path(args.arcface) if args.arcface else None,
            syncnet_path=args.syncnet,
        )
        if args.syncnet and not os.path.isfile(args.syncnet):
            raise FileNotFoundError(
                f"--syncnet: {args.syncnet} does not exist. Download syncnet_v2.model (joonson/syncnet_python, download_model.sh)."
            )
        encoders = load_encoders(args.vae, args.text_encoder, args.clip_vision, args.wav2vec)
    except FileNotFoundError as error:
        return _fail(str(error), EXIT_MISSING_MODEL)
    names = {
        "vae": os.path.basename(args.vae),
        "text_encoder": os.path.basename(args.text_encoder),
        "clip_vision": os.path.basename(args.clip_vision),
        "wav2vec": os.path.basename(args.wav2vec.rstrip("/")),
        "arcface": args.arcface,
        "syncnet": os.path.basename(args.syncnet) if args.syncnet else None,
    }
    options = RunOptions(workers=args.workers, clips_per_shard=args.clips_per_shard, encode_batch=args.encode_batch)
    try:
        summary = prepare_dataset(args.videos, args.out, settings, encoders, names, analysis, args.captions, options)
    except (ValueError, FileNotFoundError) as error:
        return _fail(str(error), EXIT_FAILED)
    print(json.dumps(summary, indent=1))
    if summary["errors"]:
        return _fail(
            f"{len(summary['errors'])} clips failed unexpectedly (see the log and summary.json); run the same command again to retry them.",
            EXIT_FAILED,
        )
    return 0


def _start_comfyui(args) -> int | None:
    """Imports ComfyUI; when it cannot start, says why and returns the exit code."""
    try:
        import_comfyui(args.comfyui, args.comfyui_args)
    except ComfyUINotFoundError as error:
        return _fail(str(error), EXIT_USAGE)
    except RuntimeError as error:  # e.g. no GPU driver: ComfyUI looks for a GPU unless started with --cpu
        return _fail(f"ComfyUI could not start: {error} Without a GPU, pass --comfyui-args=--cpu.", EXIT_USAGE)
    return None


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    return args.run(args)
