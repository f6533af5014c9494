"""Apply nodes: the patch that makes a Wan2.1 MODEL listen, and what each conditioning's passes hear, see and how much
they move."""

from __future__ import annotations

from comfy_api.latest import io

from fantasy_comfy.pass_settings import set_pass
from fantasy_comfy.patch import Controls, apply_fantasytalking
from fantasy_core.passes import IDENTITY_SCALE

from .types import CATEGORY, FantasyTalkingAudio, FantasyTalkingIdentity, FantasyTalkingModel, FantasyTalkingMotion

AUDIO_SCALE_TOOLTIP = "Strength of the audio attention (official default 1.0); 0 = silent."
IDENTITY_SCALE_TOOLTIP = "λ2, the strength of the identity attention (the paper's 0.5); 0 = no identity."


def identity_scale_input(when: str):
    # optional, so API workflows written before identity existed still validate
    return io.Float.Input(
        "identity_scale", default=IDENTITY_SCALE, min=0.0, max=10.0, step=0.01, optional=True, tooltip=f"{IDENTITY_SCALE_TOOLTIP} {when}"
    )


def identity_inputs() -> list:
    """The identity inputs shared by every node that applies FantasyTalking."""
    return [
        FantasyTalkingIdentity.Input(
            "identity",
            optional=True,
            tooltip="Optional: the portrait's face embedding (from 'FantasyTalking Face Embedding'). "
            "Needs a fantasytalking_model with an identity module.",
        ),
        identity_scale_input("Used when an identity is connected."),
        io.Boolean.Input(
            "identity_guidance",
            default=False,
            optional=True,
            tooltip="Off (default): positive and negative both see the identity, as both see the portrait. "
            "On: the negative does not, so CFG also pushes towards the identity (stronger likeness, "
            "less freedom).",
        ),
    ]


def motion_inputs() -> list:
    """The motion inputs shared by every node that applies FantasyTalking (optional, as the identity's)."""
    return [
        FantasyTalkingMotion.Input(
            "motion",
            optional=True,
            tooltip="Optional: ω_l and ω_b (from 'FantasyTalking Motion Intensity' or 'FantasyTalking "
            "Measure Motion'). Needs a fantasytalking_model with a motion module; without this "
            "input such a module runs at neutral intensity (0.5, 0.5).",
        ),
        io.Boolean.Input(
            "motion_guidance",
            default=False,
            optional=True,
            tooltip="Off (default): positive and negative both get the motion embedding. On: the negative "
            "gets neutral motion (0.5, 0.5), so CFG pushes from neutral towards your ω (a stronger effect; "
            "none at ω = 0.5).",
        ),
    ]


def controls(
    identity=None, identity_scale: float = IDENTITY_SCALE, identity_guidance: bool = False, motion=None, motion_guidance: bool = False
) -> Controls:
    """The optional inputs of ``identity_inputs()`` and ``motion_inputs()``, as the node received them."""
    return Controls(identity, identity_scale, identity_guidance, motion, motion_guidance)


class FantasyTalkingApply(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingApply",
            display_name="FantasyTalking Apply",
            category=CATEGORY,
            description="Adds FantasyTalking's audio cross-attention (and, with a face embedding, the identity "
            "cross-attention) to every block of a native Wan2.1 I2V model. The positive conditioning passes through "
            "hearing the audio, the negative one silent (as officially), so every sampler and guider gets each pass right.",
            inputs=[
                io.Model.Input(
                    "model", tooltip="Wan2.1-I2V-14B from the core 'Load Diffusion Model' node (LoRAs and other patches may come before)."
                ),
                FantasyTalkingModel.Input("fantasytalking_model", tooltip="From 'FantasyTalking Model Loader'."),
                FantasyTalkingAudio.Input("audio_embeds", tooltip="From 'FantasyTalking Audio Embeds'."),
                io.Float.Input(
                    "audio_scale",
                    default=1.0,
                    min=0.0,
                    max=10.0,
                    step=0.01,
                    tooltip=f"{AUDIO_SCALE_TOOLTIP} Applies to the positive conditioning.",
                ),
                io.Conditioning.Input("positive", tooltip="Positive conditioning (from WanImageToVideo); its passes hear the audio."),
                io.Conditioning.Input(
                    "negative", tooltip="Negative conditioning (from WanImageToVideo); its passes are silent, as officially."
                ),
                *identity_inputs(),
                *motion_inputs(),
            ],
            outputs=[
                io.Model.Output(display_name="model"),
                io.Conditioning.Output(display_name="positive", tooltip="Hears the audio at audio_scale."),
                io.Conditioning.Output(display_name="negative", tooltip="Silent."),
            ],
        )

    @classmethod
    def execute(cls, model, fantasytalking_model, audio_embeds, audio_scale: float, positive, negative, **optional) -> io.NodeOutput:
        return io.NodeOutput(
            *apply_fantasytalking(model, fantasytalking_model, audio_embeds, audio_scale, positive, negative, controls(**optional))
        )


class FantasyTalkingConditioningSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingConditioningSettings",
            display_name="FantasyTalking Conditioning Settings",
            category=CATEGORY,
            description="Decides what the passes that use this conditioning hear and see: for a guider's extra "
            "conditioning (DualCFGGuider's cond2, PerpNegGuider's empty prompt) or to override what FantasyTalking "
            "Apply chose.",
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="Any conditioning sampled with a FantasyTalking model."),
                io.Float.Input("audio_scale", default=0.0, min=0.0, max=10.0, step=0.01, tooltip=AUDIO_SCALE_TOOLTIP),
                identity_scale_input(
                    "Used where FantasyTalking Apply has an identity connected. It replaces what these "
                    "passes had (set 0 on a negative to keep identity guidance)."
                ),
                FantasyTalkingMotion.Input(
                    "motion",
                    optional=True,
                    tooltip="Optional: the motion intensity these passes get (needs a motion "
                    "module). Not connected: they keep theirs, or get FantasyTalking Apply's. Use it "
                    "after FantasyTalking Apply, which sets positive and negative itself.",
                ),
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, conditioning, audio_scale: float, identity_scale: float = IDENTITY_SCALE, motion=None) -> io.NodeOutput:
        return io.NodeOutput(set_pass(conditioning, audio_scale=audio_scale, identity_scale=identity_scale, motion=motion))
