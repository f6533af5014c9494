"""``fantasytalking generate`` and ``models``: headless talking-portrait videos through ComfyUI's HTTP API, and
``evaluate`` (evaluate.py). Imports neither torch nor ComfyUI, so it runs from any Python with the pack's requirements."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from .add_modules import GraphError, IdentityChoice, MotionChoice, add_identity, add_motion
from .comfy_client import (
    EXIT_EXECUTION,
    EXIT_INTERRUPTED,
    EXIT_MISSING_MODELS,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ComfyClient,
    CommandError,
    follow,
)
from .evaluate import add_evaluate_parser, evaluation_weights
from .workflows import LOADER_WIDGETS, VARIANTS, api_workflow, choose_variant, fill, required_models

DEFAULT_SERVER = "http://127.0.0.1:8188"


class ProgressBars:
    """ComfyUI's progress messages as tqdm bars (steps per second, time left), one per node that reports progress."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.bar, self.key = stream, None, None

    def __call__(self, value: int, total: int, node: str) -> None:
        from tqdm import tqdm

        if self.key != (node, total) or value < (self.bar.n if self.bar else 0):
            self.close()
            self.bar = tqdm(total=total, desc=f"node {node}", unit="step", file=self.stream, dynamic_ncols=True)
            self.key = (node, total)
        self.bar.update(value - self.bar.n)
        if value >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.key = None, None


def start_local_comfyui(server: str, wait_seconds: float, extra_args: str = "") -> subprocess.Popen:
    """Start a headless ComfyUI from COMFYUI_PATH on the --server address, when it is local and not running."""
    comfyui = os.environ.get("COMFYUI_PATH")
    host_port = server.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.partition(":")
    if not comfyui or host not in ("127.0.0.1", "localhost"):
        raise CommandError(
            f"ComfyUI server at {server} is not reachable. Start ComfyUI, pass --server, or set COMFYUI_PATH "
            "to a ComfyUI folder so this command can start one.",
            EXIT_UNREACHABLE,
        )
    if not os.path.isfile(os.path.join(comfyui, "main.py")):
        raise CommandError(f"COMFYUI_PATH={comfyui} is not a ComfyUI folder (no main.py).", EXIT_UNREACHABLE)
    print(f"Starting ComfyUI from {comfyui} on {host}:{port or 8188} ...", file=sys.stderr)
    command = [sys.executable, "main.py", "--listen", host, "--port", port or "8188", "--disable-auto-launch", *shlex.split(extra_args)]
    process = subprocess.Popen(command, cwd=comfyui, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = ComfyClient(server)
    deadline = time.monotonic() + wait_seconds
    while not client.is_up():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise CommandError(
                f"ComfyUI from {comfyui} did not start within {wait_seconds:.0f} s; run it by hand to see why.", EXIT_UNREACHABLE
            )
        time.sleep(1)
    return process


def missing_models(client: ComfyClient, graph: dict, variant: str) -> list[str]:
    """Model files the workflow names that the server does not list, each with its folder and download."""
    info = client.get_json("/object_info")
    downloads = {m["name"]: m for m in required_models(variant)}
    missing = []
    for node in graph.values():
        widget = LOADER_WIDGETS.get(node["class_type"])
        if widget is None or node["class_type"] not in info:
            continue
        spec = {**info[node["class_type"]]["input"].get("required", {}), **info[node["class_type"]]["input"].get("optional", {})}[widget]
        options = spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])
        name = node["inputs"][widget]
        if name not in options:
            model = downloads.get(name, {})
            missing.append(f"  {name} -> ComfyUI/models/{model.get('directory', '?')}/  (download: {model.get('url', 'see README')})")
    return missing


IDENTITY_OPTIONS = ("arcface", "face_detector", "identity_scale")
MOTION_OPTIONS = ("motion_preset", "omega_lip", "omega_body", "motion_from", "body_model")


def check_module_options(args) -> None:
    """What can be refused before the server is asked: options of a module that was not named, and contradictions."""

    def given(names):
        return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]

    if not args.identity_module and given(IDENTITY_OPTIONS):
        raise CommandError(f"{', '.join(given(IDENTITY_OPTIONS))} need --identity-module (the trained identity module file).", EXIT_USAGE)
    if not args.motion_module and given(MOTION_OPTIONS):
        raise CommandError(f"{', '.join(given(MOTION_OPTIONS))} need --motion-module (the trained motion module file).", EXIT_USAGE)
    if args.motion_from is not None and given(("motion_preset", "omega_lip", "omega_body")):
        raise CommandError(
            "--motion-from measures ω from a clip: give it alone, or --motion-preset, or --omega-lip/--omega-body.", EXIT_USAGE
        )
    if args.motion_preset is not None and given(("omega_lip", "omega_body")):
        raise CommandError("--motion-preset sets both ω: give it or --omega-lip/--omega-body, not both.", EXIT_USAGE)
    for name in ("omega_lip", "omega_body", "identity_scale"):
        value, top = getattr(args, name), 1.0 if name != "identity_scale" else 10.0
        if value is not None and not 0.0 <= value <= top:
            raise CommandError(f"--{name.replace('_', '-')} must lie between 0 and {top:g}; got {value:g}.", EXIT_USAGE)
    if args.motion_from is not None and not os.path.isfile(args.motion_from):
        raise CommandError(f"--motion-from: file not found: {args.motion_from}", EXIT_USAGE)
    if args.body_model is not None and args.motion_from is None:
        raise CommandError("--body-model is for measuring --motion-from; give the reference clip too.", EXIT_USAGE)


SERVER_CHOICES = {  # option -> (node, widget, what to do when the server lacks the choice)
    "identity_module": ("FantasyTalkingModelLoader", "model_name", "put the file the trainer wrote in ComfyUI/models/fantasytalking/"),
    "motion_module": ("FantasyTalkingModelLoader", "model_name", "put the file the trainer wrote in ComfyUI/models/fantasytalking/"),
    "arcface": (
        "FantasyTalkingFaceEmbedding",
        "arcface_model",
        "put insightface's buffalo_l pack (w600k_r50.onnx; non-commercial licence) in ComfyUI/models/insightface/models/buffalo_l/",
    ),
    "face_detector": ("FantasyTalkingFaceCrop", "detector", "use mediapipe, or an insightface pack holding det_10g.onnx"),
    "motion_preset": ("FantasyTalkingMotionIntensity", "preset", "use one of the presets"),
    "body_model": ("FantasyTalkingMeasureMotion", "body_model", "use mediapipe pose, or put a DWPose ONNX in ComfyUI/models/dwpose/"),
}


def options_of(info: dict, node: str, widget: str) -> list[str]:
    inputs = info.get(node, {}).get("input", {})
    spec = {**inputs.get("required", {}), **inputs.get("optional", {})}.get(widget)
    if spec is None:
        return []
    return list(spec[0]) if isinstance(spec[0], list) else list(spec[1].get("options", []))


def check_server_choices(client: ComfyClient, args, graph: dict) -> None:
    """Every file or choice named for identity and motion is one the server offers; ArcFace must exist at all."""
    info = client.get_json("/object_info")
    wanted = {name: getattr(args, name) for name in SERVER_CHOICES if getattr(args, name, None) is not None}
    if args.identity_module:
        embedding = next(node for node in graph.values() if node["class_type"] == "FantasyTalkingFaceEmbedding")
        wanted["arcface"] = embedding["inputs"]["arcface_model"]
        if not options_of(info, "FantasyTalkingFaceEmbedding", "arcface_model"):
            raise CommandError(
                "--identity-module needs ArcFace to embed the portrait's face, and ComfyUI has no ArcFace model: "
                + SERVER_CHOICES["arcface"][2]
                + " (see docs/models.md), then restart ComfyUI.",
                EXIT_USAGE,
            )
    for name, value in wanted.items():
        node, widget, advice = SERVER_CHOICES[name]
        offered = options_of(info, node, widget)
        if value not in offered:
            raise CommandError(
                f"--{name.replace('_', '-')}: ComfyUI has no '{value}' (it offers: {', '.join(offered) or 'none'}); {advice}.", EXIT_USAGE
            )


def with_requested_modules(client: ComfyClient, args, graph: dict) -> dict:
    try:
        if args.identity_module:
            graph = add_identity(graph, IdentityChoice(args.identity_module, args.arcface, args.face_detector, args.identity_scale))
        if args.motion_module:
            reference = client.upload(args.motion_from) if args.motion_from else None
            choice = MotionChoice(args.motion_module, args.motion_preset, args.omega_lip, args.omega_body, reference, args.body_model)
            graph = add_motion(graph, choice)
    except GraphError as error:
        raise CommandError(f"--identity-module/--motion-module: {error}", EXIT_USAGE) from error
    check_server_choices(client, args, graph)
    return graph


def generate(args) -> int:
    for label, path in (("--image", args.image), ("--audio", args.audio)):
        if not os.path.isfile(path):
            raise CommandError(f"{label}: file not found: {path}", EXIT_USAGE)
    check_module_options(args)
    client = ComfyClient(args.server)
    server_process = None if client.is_up() else start_local_comfyui(args.server, args.start_timeout, args.comfyui_args)
    try:
        variant = choose_variant(args.workflow, args.audio, args.max_seconds)
        graph = load_json(args.workflow_file) if args.workflow_file else api_workflow(variant)
        graph = with_requested_modules(client, args, graph)
        missing = missing_models(client, graph, variant)
        if missing:
            raise CommandError(
                "ComfyUI lacks model files this workflow needs:\n"
                + "\n".join(missing)
                + "\nDownload them (or run `fantasytalking models --download`) and retry.",
                EXIT_MISSING_MODELS,
            )
        stem = os.path.splitext(os.path.basename(args.out))[0]
        graph = fill(
            graph, client.upload(args.image), client.upload(args.audio), args.prompt, args.seed, f"fantasytalking/{stem}", args.max_seconds
        )
        events = client.events()
        next_event = next(events)  # connect before queueing so no progress message is missed
        prompt_id = client.queue(graph)
        print(f"Queued the {variant} workflow as {prompt_id}", file=sys.stderr)
        bars = ProgressBars()
        try:
            follow(client, prompt_id, _chain(next_event, events), bars)
        except KeyboardInterrupt:
            client.cancel(prompt_id)
            raise CommandError("Cancelled: the job was removed from the ComfyUI queue and interrupted.", EXIT_INTERRUPTED) from None
        finally:
            bars.close()
        outputs = finished_outputs(client, prompt_id)
        videos = [entry for node in outputs.values() for entry in node.get("images", []) if entry["filename"].endswith(".mp4")]
        if not videos:
            raise CommandError("The workflow finished without saving a video.", EXIT_EXECUTION)
        client.download(videos[0], args.out)
        print(args.out)
        return 0
    finally:
        if server_process is not None:  # the ComfyUI this command started goes away with it
            server_process.terminate()
            try:
                server_process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server_process.kill()


def finished_outputs(client: ComfyClient, prompt_id: str, wait_seconds: float = 60.0) -> dict:
    """The job's outputs; ComfyUI writes the history entry just after its websocket reports the end."""
    deadline = time.monotonic() + wait_seconds
    while True:
        history = client.get_json(f"/history/{prompt_id}")
        if prompt_id in history:
            return history[prompt_id]["outputs"]
        if time.monotonic() > deadline:
            raise CommandError(f"The job {prompt_id} finished but ComfyUI has no history for it.", EXIT_EXECUTION)
        time.sleep(0.2)


def load_json(path: str) -> dict:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise CommandError(f"--workflow-file: cannot read {path}: {error}", EXIT_USAGE) from error


def _chain(first, rest):
    yield first
    yield from rest


def models(args) -> int:
    comfyui = args.comfyui or os.environ.get("COMFYUI_PATH")
    if args.evaluation:
        return evaluation_weights(comfyui, args.download)
    variants = list(VARIANTS) if args.workflow == "all" else [args.workflow]
    seen, missing = {}, 0
    for variant in variants:
        for model in required_models(variant):
            seen.setdefault(model["name"], model)
    print(f"{'file':58} {'folder':18} {'present':8} source")
    for name, model in seen.items():
        folder = os.path.join(comfyui, "models", model["directory"]) if comfyui else None
        present = bool(folder) and os.path.exists(os.path.join(folder, name))
        missing += not present
        repo, _, path = model["url"].split("huggingface.co/", 1)[-1].partition("/resolve/main/")
        print(f"{name:58} {model['directory']:18} {'yes' if present else 'no':8} {repo} : {path}")
        if args.download and not present:
            if not folder:
                raise CommandError("--download needs --comfyui or COMFYUI_PATH to know where the models folder is.", EXIT_USAGE)
            download(repo, path, os.path.join(folder, name))
            missing -= 1
    return 0 if missing == 0 else EXIT_MISSING_MODELS


def download(repo: str, path: str, target: str) -> None:
    """One file from a Hugging Face repository into ``target`` (no second copy left in a cache)."""
    import shutil

    try:
        from huggingface_hub import hf_hub_download
    except ImportError as error:
        raise CommandError("--download needs huggingface_hub (pip install huggingface_hub).", EXIT_USAGE) from error
    staging = os.path.join(os.path.dirname(target), ".fantasytalking-download")
    print(f"  downloading {repo}/{path} -> {target}", file=sys.stderr)
    try:
        os.replace(hf_hub_download(repo_id=repo, filename=path, local_dir=staging), target)
    except Exception as error:  # noqa: BLE001 - network, auth and missing-file errors all end the same way
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CommandError(f"could not download {repo}/{path}: {reason}", EXIT_MISSING_MODELS) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="fantasytalking", description="Headless FantasyTalking videos through a ComfyUI server.")
    commands = main_parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="portrait + voice -> MP4 with sound, through a ComfyUI server")
    gen.add_argument("--image", required=True, help="portrait image")
    gen.add_argument("--audio", required=True, help="voice track (wav, mp3, flac, ...)")
    gen.add_argument("--prompt", help="what the video shows (default: the workflow's 'A woman is talking.')")
    gen.add_argument("--out", default="talk.mp4", help="where to write the MP4 (default: talk.mp4)")
    gen.add_argument(
        "--workflow",
        choices=list(VARIANTS),
        help="standard (bf16, official settings), lowvram (fp8 weights, 24 GB cards), fast (distilled LoRA, 4 steps), "
        "long (the whole track in overlapping segments). Default: standard for tracks up to 81 frames (3.5 s), else long",
    )
    gen.add_argument("--max-seconds", type=float, help="use only the first N seconds of the voice (default: the whole track)")
    gen.add_argument("--workflow-file", help="your own API-format workflow instead of a shipped one (same node types)")
    gen.add_argument("--seed", type=int, help="noise seed (default: the workflow's)")
    gen.add_argument(
        "--server", default=DEFAULT_SERVER, help=f"ComfyUI address (default {DEFAULT_SERVER}; started from COMFYUI_PATH if down)"
    )
    gen.add_argument("--start-timeout", type=float, default=180.0, help="seconds to wait for a ComfyUI this command starts")
    gen.add_argument(
        "--comfyui-args",
        default=os.environ.get("FANTASYTALKING_COMFYUI_ARGS", ""),
        help="extra arguments for a ComfyUI this command starts, e.g. '--lowvram' (default: $FANTASYTALKING_COMFYUI_ARGS)",
    )
    identity = gen.add_argument_group("identity (needs an identity module from the trainer and ArcFace on the server)")
    identity.add_argument("--identity-module", help="identity module file in ComfyUI/models/fantasytalking (default: no identity)")
    identity.add_argument("--arcface", help="ArcFace model as <pack>/<file> (default: buffalo_l/w600k_r50.onnx, the identity workflow's)")
    identity.add_argument("--face-detector", help="mediapipe or insightface/<pack> (default: mediapipe)")
    identity.add_argument("--identity-scale", type=float, help="λ2, the identity attention's strength (default: 0.5)")
    motion = gen.add_argument_group("motion (needs a motion module from the trainer)")
    motion.add_argument("--motion-module", help="motion module file in ComfyUI/models/fantasytalking (default: no motion module)")
    motion.add_argument("--motion-preset", help="subtle, natural or intense (the paper's; default: custom ω below, else neutral 0.5)")
    motion.add_argument("--omega-lip", type=float, help="ω_l, facial expression, 0 to 1 (default: 0.5)")
    motion.add_argument("--omega-body", type=float, help="ω_b, body motion, 0 to 1 (default: 0.5)")
    motion.add_argument("--motion-from", metavar="CLIP", help="a reference video whose ω the server measures (default: none)")
    motion.add_argument("--body-model", help="with --motion-from: mediapipe pose or dwpose/<file>.onnx (default: mediapipe pose)")
    gen.set_defaults(run=generate)
    mod = commands.add_parser("models", help="list the model files the workflows need and whether ComfyUI has them")
    mod.add_argument("--workflow", choices=[*VARIANTS, "all"], default="all")
    mod.add_argument("--comfyui", help="ComfyUI folder (default: COMFYUI_PATH)")
    mod.add_argument("--download", action="store_true", help="download missing files with huggingface_hub")
    mod.add_argument("--evaluation", action="store_true", help="the metric weights of `fantasytalking evaluate` instead")
    mod.set_defaults(run=models)
    add_evaluate_parser(commands)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
