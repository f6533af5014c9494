"""Motion nodes: a motion intensity (ω_l, ω_b) set by hand or by preset, and one measured from a reference clip."""

from __future__ import annotations

from comfy_api.latest import io

from fantasy_comfy.model_folders import MEDIAPIPE_POSE, body_model_choices
from fantasy_comfy.motion import measure_clip
from fantasy_core.motion.intensity import CUSTOM, MEANING, NEUTRAL, PRESETS, intensity_of

from .types import CATEGORY, FantasyTalkingModel, FantasyTalkingMotion


def _omega_input(name: str, what: str) -> io.Float.Input:
    return io.Float.Input(name, default=NEUTRAL, min=0.0, max=1.0, step=0.01, tooltip=f"{what}: {MEANING}. Used when preset is 'custom'.")


class FantasyTalkingMotionIntensity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        presets = ", ".join(f"{name} ({lip:g}, {body:g})" for name, (lip, body) in PRESETS.items())
        return io.Schema(
            node_id="FantasyTalkingMotionIntensity",
            display_name="FantasyTalking Motion Intensity",
            category=CATEGORY,
            description="How much the speaker moves: ω_l (facial expression) and ω_b (body), each 0–1 with 0.5 "
            f"neutral. The paper's presets: {presets}. Needs a fantasytalking_model with a motion module.",
            inputs=[
                io.Combo.Input("preset", options=[CUSTOM, *PRESETS], default=CUSTOM, tooltip=f"{presets}; custom: the two sliders."),
                _omega_input("omega_lip", "ω_l, facial expression (lips, eyes, brows)"),
                _omega_input("omega_body", "ω_b, body motion (shoulders, arms)"),
            ],
            outputs=[FantasyTalkingMotion.Output(display_name="motion", tooltip="For the motion input of 'FantasyTalking Apply'.")],
        )

    @classmethod
    def execute(cls, preset: str, omega_lip: float, omega_body: float) -> io.NodeOutput:
        try:
            return io.NodeOutput(intensity_of(preset, omega_lip, omega_body))
        except ValueError as error:
            raise ValueError(f"FantasyTalking Motion Intensity: {error}") from error


class FantasyTalkingMeasureMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingMeasureMotion",
            display_name="FantasyTalking Measure Motion",
            category=CATEGORY,
            description="Measures ω_l (facial expression, from MediaPipe's face mesh with head motion removed) and ω_b "
            "(body, from body joints) of a reference clip, as the motion module's training data was measured: use "
            "them to make the video move like the clip. The plot shows what was measured, frame by frame.",
            inputs=[
                io.Image.Input("images", optional=True, tooltip="The reference clip as an IMAGE batch (give its frame rate in fps)."),
                io.Video.Input("video", optional=True, tooltip="Or the reference clip as a VIDEO (its own frame rate is used)."),
                io.Float.Input(
                    "fps",
                    default=25.0,
                    min=1.0,
                    max=240.0,
                    step=0.001,
                    tooltip="Frame rate of 'images' (ignored for 'video', which carries its own).",
                ),
                io.Combo.Input(
                    "body_model",
                    options=body_model_choices(),
                    default=MEDIAPIPE_POSE,
                    tooltip="mediapipe pose: bundled, no download. dwpose/<file>: a DWPose or RTMPose ONNX in "
                    "ComfyUI/models/dwpose/ (rtmlib), steadier on gestures. Use what the motion module's "
                    "calibration was measured with.",
                ),
                FantasyTalkingModel.Input(
                    "fantasytalking_model",
                    optional=True,
                    tooltip="Optional: a loader holding the motion module, whose calibration (its "
                    "training data's percentiles) turns the measurement into ω. Without: the "
                    "documented default calibration.",
                ),
            ],
            outputs=[
                FantasyTalkingMotion.Output(display_name="motion", tooltip="ω_l and ω_b, for the motion input of 'FantasyTalking Apply'."),
                io.Float.Output(display_name="omega_lip", tooltip="ω_l, 0–1."),
                io.Float.Output(display_name="omega_body", tooltip="ω_b, 0–1."),
                io.Image.Output(display_name="plot", tooltip="Per-frame expression and body displacement; skipped frames marked."),
            ],
        )

    @classmethod
    def execute(cls, fps: float, body_model: str, images=None, video=None, fantasytalking_model=None) -> io.NodeOutput:
        intensity, plot = measure_clip(images, video, fps, body_model, fantasytalking_model)
        return io.NodeOutput(intensity, intensity.lip, intensity.body, plot)
