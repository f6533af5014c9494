"""Which pass hears what, carried by each CONDITIONING entry (``fantasy_core.passes.PassSettings``).

The settings sit in the entry's ``model_conds`` under ``PASS_KEY``, as core's own per-entry model inputs do. ComfyUI
then batches them with the rest of the entry: whichever guider runs, and in whatever order it batches its passes,
the patched model receives one ``PassSettings`` per batch row, in batch order. ``PassCond`` carries them through that
machinery: it concatenates with any other entry's (so positive and negative still run in one forward), it is never a
tensor (so no dtype cast touches it and core context windows leave it alone), and it arrives as a tuple.
"""

from __future__ import annotations

import comfy.conds

from fantasy_core.motion.intensity import MotionIntensity
from fantasy_core.passes import PassSettings

PASS_KEY = "fantasytalking_pass"


class PassCond(comfy.conds.CONDRegular):
    def __init__(self, cond: tuple[PassSettings, ...]):
        self.cond = tuple(cond)

    def process_cond(self, batch_size, **kwargs):
        if len(self.cond) == batch_size:
            return self._copy_with(self.cond)
        if len(self.cond) != 1:
            raise ValueError(f"FantasyTalking: pass settings for {len(self.cond)} rows cannot fill a batch of {batch_size}.")
        return self._copy_with(self.cond * batch_size)

    def can_concat(self, other):
        return isinstance(other, PassCond)

    def concat(self, others):
        rows = list(self.cond)
        for other in others:
            rows.extend(other.cond)
        return tuple(rows)

    def size(self):
        return [len(self.cond)]


def settings_of(options: dict) -> PassSettings | None:
    """The settings of one CONDITIONING entry's options, or None when it has none."""
    cond = options.get("model_conds", {}).get(PASS_KEY)
    return cond.cond[0] if isinstance(cond, PassCond) else None


def set_pass(
    conditioning: list, audio_scale: float | None = None, identity_scale: float | None = None, motion: MotionIntensity | None = None
) -> list:
    """A copy in which every entry's passes hear the audio at ``audio_scale`` (0: silent), see the identity at
    ``identity_scale`` (0: not at all) and get the motion intensity ``motion``; None keeps what the entry had.
    Whatever else an entry carries is kept."""
    out = []
    for tensor, options in conditioning:
        settings = settings_of(options) or PassSettings()
        if audio_scale is not None:
            settings = settings.with_audio(audio_scale)
        if identity_scale is not None:
            settings = settings.with_identity(identity_scale)
        if motion is not None:
            settings = settings.with_motion(motion)
        out.append([tensor, {**options, "model_conds": {**options.get("model_conds", {}), PASS_KEY: PassCond((settings,))}}])
    return out


def require_settings(conditioning: list, name: str) -> list[PassSettings]:
    """The settings of every entry, or a clear error naming the input when one has none."""
    if not conditioning:
        raise ValueError(f"FantasyTalking: the '{name}' conditioning is empty. Connect a prompt's conditioning to it.")
    found = [settings_of(options) for _, options in conditioning]
    if any(settings is None for settings in found):
        raise ValueError(
            f"FantasyTalking: the '{name}' conditioning does not say whether it hears the audio. Take it from "
            "'FantasyTalking Apply' (its positive output hears the audio, its negative output does not), or pass it "
            "through 'FantasyTalking Conditioning Settings'."
        )
    return found
