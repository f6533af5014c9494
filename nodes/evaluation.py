"""Evaluation nodes: how well a clip's lips follow its voice (SyncNet's Sync-C, Sync-D and offset) and how well its
face keeps the portrait's identity (IDC, DINO), to compare seeds and settings inside a workflow with the numbers
`fantasytalking evaluate` gives."""

from __future__ import annotations

from comfy_api.latest import io

from fantasy_comfy.evaluation import ON_UNSCORABLE, clip_of, frames_of, score_identity, score_lip_sync
from fantasy_comfy.model_folders import DINO_FOLDER, SYNCNET_FILE, dino_choices, syncnet_choices
from fantasy_core.evaluation.dino import IdcProtocol
from fantasy_core.evaluation.sync import SHORTEST_TRACK, SyncProtocol

from .types import CATEGORY

DEFAULTS = SyncProtocol()
# against the portrait the clip was made from; one face rule with Lip Sync Score, as `fantasytalking evaluate` has
IDC_DEFAULTS = IdcProtocol(reference="portrait", min_face_size=DEFAULTS.min_face_size)


class FantasyTalkingLipSyncScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingLipSyncScore",
            display_name="FantasyTalking Lip Sync Score",
            category=CATEGORY,
            description="Scores how well the lips follow the voice with SyncNet, by syncnet_python's protocol as "
            "`fantasytalking evaluate` does (25 fps, 16 kHz, the longest face track, offsets within ±15 frames): "
            "Sync-C (higher is better), Sync-D (lower is better) and the audio-video offset, with a plot and a report.",
            inputs=[
                io.Combo.Input(
                    "syncnet",
                    options=syncnet_choices(),
                    default=SYNCNET_FILE,
                    tooltip="SyncNet weights in ComfyUI/models/evaluation/: syncnet_v2.model from joonson/syncnet_python "
                    "(download_model.sh), or `fantasytalking models --evaluation --download`.",
                ),
                io.Video.Input(
                    "video", optional=True, tooltip="The clip as a VIDEO (its own frame rate and sound track), e.g. from Load Video."
                ),
                io.Image.Input("images", optional=True, tooltip="Or the clip as an IMAGE batch, with 'audio' and its frame rate in 'fps'."),
                io.Audio.Input(
                    "audio",
                    optional=True,
                    tooltip="The voice the lips should follow: needed with 'images'; with 'video' it replaces the video's own sound.",
                ),
                io.Float.Input(
                    "fps", default=25.0, min=1.0, max=240.0, step=0.001, tooltip="Frame rate of 'images' (ignored for 'video')."
                ),
                io.Combo.Input(
                    "on_unscorable",
                    options=list(ON_UNSCORABLE),
                    default="error",
                    tooltip="A clip without sound, without a face or with too short a face track: error stops the "
                    "workflow with the reason; report gives NaN scores, offset 0 and the reason in the report and plot.",
                ),
                io.Int.Input(
                    "min_track",
                    default=DEFAULTS.min_track,
                    min=SHORTEST_TRACK,
                    max=100000,
                    optional=True,
                    tooltip="Fewest consecutive frames (at 25 fps) with a face that are scored. syncnet_python uses 100, "
                    "which scores no 81-frame clip; LatentSync's evaluation 50.",
                ),
                io.Int.Input(
                    "min_face_size",
                    default=DEFAULTS.min_face_size,
                    min=1,
                    max=4096,
                    optional=True,
                    tooltip="Smallest face (pixels) scored; syncnet_python uses 100, which drops many half-body 512 px videos.",
                ),
            ],
            outputs=[
                io.Float.Output(
                    display_name="sync_c", tooltip="Sync-C (LSE-C): median - minimum of the mean distances; NaN if not scored."
                ),
                io.Float.Output(display_name="sync_d", tooltip="Sync-D (LSE-D): the minimum mean distance; NaN if not scored."),
                io.Int.Output(
                    display_name="offset", tooltip="Best audio-video offset, frames at 25 fps (negative: the sound comes after the lips)."
                ),
                io.Image.Output(display_name="plot", tooltip="Mean distance per offset, and each window's distance at the best offset."),
                io.String.Output(display_name="report", tooltip="The numbers, what was scored, the protocol, or why nothing was."),
            ],
        )

    @classmethod
    def execute(
        cls,
        syncnet: str,
        fps: float,
        on_unscorable: str,
        video=None,
        images=None,
        audio=None,
        min_track: int = DEFAULTS.min_track,
        min_face_size: int = DEFAULTS.min_face_size,
    ) -> io.NodeOutput:
        protocol = SyncProtocol(min_track=min_track, min_face_size=min_face_size)
        score = score_lip_sync(clip_of(video, images, audio, fps), syncnet, protocol, on_unscorable)
        return io.NodeOutput(score.sync_c, score.sync_d, score.offset, score.plot, score.report)


class FantasyTalkingIdentityConsistency(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingIdentityConsistency",
            display_name="FantasyTalking Identity Consistency",
            category=CATEGORY,
            description="Scores how well a clip keeps the portrait's identity (IDC) as `fantasytalking evaluate` does: DINO "
            "ViT-B/16 features of the largest face in each frame, VBench's subject-consistency formula (each frame's "
            "similarity to the reference and to the previous frame, averaged; 1 = the same face throughout), with a "
            "per-frame plot, the face crops scored and a report.",
            inputs=[
                io.Combo.Input(
                    "dino",
                    options=dino_choices(),
                    default=DINO_FOLDER,
                    tooltip="The DINO folder in ComfyUI/models/evaluation/: facebook/dino-vitb16 from Hugging Face "
                    "(config.json and model.safetensors), or `fantasytalking models --evaluation --download`.",
                ),
                io.Image.Input("portrait", tooltip="The source portrait the clip was made from (the first image is used)."),
                io.Video.Input("video", optional=True, tooltip="The clip as a VIDEO, e.g. from Load Video or Create Video."),
                io.Image.Input("images", optional=True, tooltip="Or the clip as an IMAGE batch, e.g. from VAE Decode."),
                io.Combo.Input(
                    "reference",
                    options=["portrait", "first_frame"],
                    default=IDC_DEFAULTS.reference,
                    optional=True,
                    tooltip="portrait: every frame is compared with the portrait's face (and the frame before it); "
                    "first_frame: with the clip's first frame with a face, VBench's reading (the portrait is not used).",
                ),
                io.Int.Input(
                    "min_face_size",
                    default=IDC_DEFAULTS.min_face_size,
                    min=1,
                    max=4096,
                    optional=True,
                    tooltip="Smallest face (pixels) scored; frames without one are left out. The same rule as Lip Sync Score.",
                ),
                io.Float.Input(
                    "crop_margin",
                    default=IDC_DEFAULTS.crop_margin,
                    min=0.0,
                    max=2.0,
                    step=0.05,
                    optional=True,
                    tooltip="Margin around the face on each side, as a fraction of its size (Face Crop's default).",
                ),
                io.Combo.Input(
                    "on_unscorable",
                    options=list(ON_UNSCORABLE),
                    default="error",
                    optional=True,
                    tooltip="A clip with a face in fewer than 2 frames, or a portrait without a face: error stops the "
                    "workflow with the reason; report gives NaN and the reason in the report and plot.",
                ),
            ],
            outputs=[
                io.Float.Output(display_name="idc", tooltip="Identity consistency, 0..1 (higher is better); NaN if not scored."),
                io.Image.Output(
                    display_name="per_frame", tooltip="Each frame's similarity to the reference and to the previous frame, with IDC."
                ),
                io.Image.Output(
                    display_name="face_crops",
                    tooltip="The faces the score saw (the portrait's first): check the detector picked the right face.",
                ),
                io.String.Output(display_name="report", tooltip="The number, what was scored, the protocol, or why nothing was."),
            ],
        )

    @classmethod
    def execute(
        cls,
        dino: str,
        portrait,
        video=None,
        images=None,
        reference: str = IDC_DEFAULTS.reference,
        min_face_size: int = IDC_DEFAULTS.min_face_size,
        crop_margin: float = IDC_DEFAULTS.crop_margin,
        on_unscorable: str = "error",
    ) -> io.NodeOutput:
        frames, source = frames_of(video, images)
        protocol = IdcProtocol(reference=reference, min_face_size=min_face_size, crop_margin=crop_margin)
        score = score_identity(frames, source, portrait, dino, protocol, on_unscorable)
        return io.NodeOutput(score.idc, score.plot, score.crops, score.report)
