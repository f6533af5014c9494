"""What the injection layer's taps add in each model call of a FantasyTalking-patched MODEL, read from the taps while
the call runs (after the pack's APPLY_MODEL wrapper set them)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fantasy_core.dit.injection import TAP


@dataclass
class Call:
    audio: list[float]  # per batch row: the audio term's scale (0: no audio term)
    identity: list[float]  # per batch row: the identity term's scale (0: none)
    time_addition: torch.Tensor | None  # [B, D] added to the time embedding (the motion), or None
    audio_frames: int  # latent frames of the audio keys (0: no audio term)
    audio_keys: torch.Tensor | None  # block 0's audio keys [1, T, W, D] of this call
    frames: list[int] | None  # a core context window's latent frames (None: all of them)

    def rows(self):
        return list(zip(self.audio, self.identity))


class CallRecorder:
    """A DIFFUSION_MODEL wrapper, so it runs inside every APPLY_MODEL wrapper: ``attach(model)`` returns a clone that
    records; a base model given to a node that patches it internally (the long-video node) records too."""

    def __init__(self):
        self.calls: list[Call] = []

    def attach(self, model):
        import comfy.patcher_extension

        model = model.clone()
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_call_recorder", self)
        return model

    def __call__(self, executor, x, *args, **kwargs):
        wan = executor.class_obj
        block, time = wan.blocks[0].cross_attn.o.__dict__.get(TAP), wan.time_embedding[-1].__dict__.get(TAP)
        audio, identity, keys = [0.0] * x.shape[0], [0.0] * x.shape[0], None
        for term in block.terms if block is not None else ():
            target = audio if term.frame_groups is not None else identity
            keys = term.keys.clone() if term.frame_groups is not None else keys
            for row in term.rows:
                target[row] = float(term.scales[row])
        addition = None if time is None or time.addition is None else time.addition.clone()
        options = kwargs.get("transformer_options", args[4] if len(args) > 4 else {})
        window = options.get("context_window")
        frames = None if window is None else list(window.index_list)
        self.calls.append(Call(audio, identity, addition, 0 if keys is None else keys.shape[1], keys, frames))
        return executor(x, *args, **kwargs)

    def omegas(self, network, *candidates) -> list[list[tuple[float, float]]]:
        """Per call, per row, which of the candidate (ω_l, ω_b) the time-embedding addition is the motion embedding of."""
        with torch.no_grad():
            embeddings = {c: network(torch.tensor([c], dtype=torch.float32))[0] for c in candidates}
        named = []
        for call in self.calls:
            assert call.time_addition is not None, "a call without a motion embedding"
            row_names = []
            for row in call.time_addition:
                found = [c for c, e in embeddings.items() if torch.allclose(row.float(), e.to(row), rtol=1e-5, atol=1e-6)]
                assert len(found) == 1, f"a row's motion embedding matches {found} among {candidates}"
                row_names.append(found[0])
            named.append(row_names)
        return named
