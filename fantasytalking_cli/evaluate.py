"""``fantasytalking evaluate``: the paper's metrics over a folder of generated videos, without a ComfyUI server (it
imports torch, unlike the other commands), and the metric weights for ``fantasytalking models --evaluation``."""

from __future__ import annotations

import os
import sys

from .comfy_client import EXIT_MISSING_MODELS, EXIT_USAGE, CommandError

PACK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_root() -> None:
    if PACK not in sys.path:
        sys.path.append(PACK)  # the pack's import root, as ComfyUI gets it from the pack's __init__.py


def default_weights_dir(comfyui: str | None = None) -> str | None:
    comfyui = comfyui or os.environ.get("COMFYUI_PATH")
    return os.path.join(comfyui, "models", "evaluation") if comfyui else None


def evaluate(args) -> int:
    _import_root()
    from fantasy_core.evaluation import metrics as known
    from fantasy_core.evaluation.dynamics import DynamicsProtocol
    from fantasy_core.evaluation.folder import EvaluationRequest, MissingWeightsError, evaluate_folder
    from fantasy_core.evaluation.report import markdown
    from fantasy_core.evaluation.sync import SyncProtocol

    chosen = tuple(name.strip() for name in args.metrics.split(",") if name.strip()) if args.metrics else known.DEFAULT
    if args.metrics is None and args.reference_dir:
        chosen = (*chosen, *known.SETS)
    unknown = [name for name in chosen if name not in known.ALL]
    if unknown:
        raise CommandError(f"--metrics: unknown {unknown}; choose from {', '.join(known.ALL)}.", EXIT_USAGE)
    for label, folder in (
        ("VIDEOS", args.videos),
        ("--audio-dir", args.audio_dir),
        ("--portraits-dir", args.portraits_dir),
        ("--reference-dir", args.reference_dir),
    ):
        if folder is not None and not os.path.isdir(folder):
            raise CommandError(f"{label}: the folder {folder} does not exist.", EXIT_USAGE)
    if args.syncnet and not os.path.isfile(args.syncnet):
        raise CommandError(f"--syncnet: {args.syncnet} does not exist.", EXIT_MISSING_MODELS)
    try:
        mask_source = {"mediapipe": "mediapipe_selfie_segmentation", "sam": "sam"}[args.person_mask]
        dynamics_protocol = DynamicsProtocol(short_side=args.flow_size, frame_stride=args.flow_stride, mask_source=mask_source)
    except ValueError as error:
        raise CommandError(f"--flow-size/--flow-stride: {error}", EXIT_USAGE) from error
    request = EvaluationRequest(
        videos_dir=args.videos,
        out_dir=args.out,
        weights_dir=args.weights or default_weights_dir(),
        metrics=chosen,
        audio_dir=args.audio_dir,
        portraits_dir=args.portraits_dir,
        reference_dir=args.reference_dir,
        stats_cache=args.stats_cache,
        device=args.device,
        sync_protocol=SyncProtocol(min_track=args.min_track, min_face_size=args.min_face_size),
        dynamics_protocol=dynamics_protocol,
        weight_files={"syncnet": args.syncnet} if args.syncnet else {},
        check_hashes=not args.allow_unpublished_weights,
    )
    try:
        summary = evaluate_folder(request, show_progress=True, announce=lambda line: print(line, file=sys.stderr))
    except MissingWeightsError as error:
        raise CommandError(f"{error}. `fantasytalking models --evaluation --download` fetches them.", EXIT_MISSING_MODELS) from error
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error), EXIT_USAGE) from error
    except ImportError as error:  # an optional package a chosen metric needs; the message says what to install
        raise CommandError(str(error), EXIT_USAGE) from error
    if int(os.environ.get("RANK", "0")) == 0:  # the first of several processes writes and reports
        print(markdown(summary))
        print(f"per-video rows, summary and manifest: {args.out}")
    return 0


def add_evaluate_parser(commands) -> None:
    ev = commands.add_parser("evaluate", help="score a folder of generated videos with the paper's metrics; no server needed")
    ev.add_argument("videos", help="folder of generated videos (searched recursively)")
    ev.add_argument(
        "--out", default="evaluation", help="folder for videos.csv/.jsonl, summary.json/.md, manifest.json (default: evaluation)"
    )
    ev.add_argument(
        "--metrics",
        help="comma-separated from sync, idc, sd, bd, aesthetic, fid, fvd, es "
        "(default: the per-video ones, plus fid and fvd when --reference-dir is given)",
    )
    ev.add_argument("--audio-dir", help="voice files matched to the videos by name (default: each video's own sound track)")
    ev.add_argument("--portraits-dir", help="source portraits matched by name: IDC is then measured against the portrait")
    ev.add_argument("--reference-dir", help="reference (real) videos for FID and FVD")
    ev.add_argument("--stats-cache", help="folder for the reference statistics cache (default: OUT/reference_stats)")
    ev.add_argument("--weights", help="folder of the metric weights (default: $COMFYUI_PATH/models/evaluation)")
    ev.add_argument("--syncnet", help="the SyncNet weights file (default: syncnet_v2.model in --weights)")
    ev.add_argument(
        "--allow-unpublished-weights",
        action="store_true",
        help="score with a weights file that does not match its publisher's hash (the manifest records it)",
    )
    ev.add_argument("--device", default="cpu", help="torch device for the metric networks (default: cpu)")
    ev.add_argument("--min-track", type=int, default=50, help="frames at 25 fps a face track needs to be scored (default: 50)")
    ev.add_argument("--min-face-size", type=int, default=50, help="smallest face side in pixels, for sync and IDC (default: 50)")
    ev.add_argument(
        "--flow-size",
        type=int,
        default=512,
        help="SD/BD: the shorter side frames are resized to before optical flow; SD and BD are pixels at this size (default: 512)",
    )
    ev.add_argument(
        "--flow-stride",
        type=int,
        default=1,
        help="SD/BD: measure the motion between every k-th frame (faster; SD and BD are then per k frames) (default: 1)",
    )
    ev.add_argument(
        "--person-mask",
        choices=("mediapipe", "sam"),
        default="mediapipe",
        help="SD/BD: the person mask from MediaPipe's bundled selfie segmentation, or SAM (the sam-vit-base folder in "
        "--weights, prompted by the face) (default: mediapipe)",
    )
    ev.set_defaults(run=evaluate)


def evaluation_weights(comfyui: str | None, download: bool) -> int:
    """Lists the metric weights and whether the models folder has them; downloads the missing ones on request."""
    _import_root()
    from fantasy_core.evaluation import catalog

    folder = default_weights_dir(comfyui)
    if folder is None:
        print("no ComfyUI folder known (give --comfyui or set COMFYUI_PATH): every file is listed as missing", file=sys.stderr)
    missing = 0
    print(f"{'evaluation file':40} {'metrics':12} {'present':8} source")
    for entry in catalog.WEIGHTS:
        present = bool(folder) and catalog.is_present(folder, entry)
        missing += not present and not entry.optional
        print(f"{entry.name:40} {','.join(entry.metrics):12} {'yes' if present else 'no':8} {entry.source}")
        if download and not present and (entry.url or entry.hf_repo):
            if not folder:
                raise CommandError("--download needs --comfyui or COMFYUI_PATH to know where the models folder is.", EXIT_USAGE)
            fetch(entry, os.path.join(folder, entry.name))
            missing -= not entry.optional
    return 0 if missing == 0 else EXIT_MISSING_MODELS


def fetch(entry, target: str) -> None:
    """A Hugging Face folder with huggingface_hub, a single file with torch.hub (which checks a published hash prefix)."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    print(f"  downloading {entry.hf_repo or entry.url} -> {target}", file=sys.stderr)
    try:
        if entry.hf_repo:
            from huggingface_hub import snapshot_download

            snapshot_download(entry.hf_repo, local_dir=target, allow_patterns=["*.json", "*.txt", "*.safetensors"])
        else:
            from torch.hub import download_url_to_file

            download_url_to_file(entry.url, target, hash_prefix=entry.sha256_prefix, progress=True)
    except ImportError as error:
        raise CommandError(f"downloading {entry.name} needs {error.name} (pip install {error.name}).", EXIT_USAGE) from error
    except Exception as error:  # noqa: BLE001 - network and hash errors end the same way
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CommandError(f"could not download {entry.name} from {entry.source}: {reason}", EXIT_MISSING_MODELS) from error
