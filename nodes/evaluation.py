"""Evaluation nodes: how well a clip's lips follow its voice (SyncNet's Sync-C, Sync-D and offset), to compare seeds
and settings inside a workflow with the numbers `fantasytalking evaluate` gives."""

from __future__ import annotations

from comfy_api.latest import io

from fantasy_comfy.evaluation import ON_UNSCORABLE, clip_of, score_lip_sync
from fantasy_comfy.model_folders import SYNCNET_FILE, syncnet_choices
from fantasy_core.evaluation.sync import SHORTEST_TRACK, SyncProtocol

from .types import CATEGORY

DEFAULTS = SyncProtocol()


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
