"""What stays constant while a patched model samples: computed once per sampling run, on the model's device and in its
compute dtype, outside any compiled code; each model call then only looks up what its passes need.

* The audio keys and values of every block for every latent frame of the track (the projection in fp32 and the k/v
  projections in the compute dtype, as officially). A call takes its frames as views (a core context window's frames
  are consecutive) or, for a wrapped-around window, as a gathered copy kept for the run. When the cache would be larger
  than the k/v weights it replaces (a track of more latent frames × window slots than the adapter's context width:
  beyond ~20 s at 23 fps), the keys and values are instead computed per call for the call's frames
  (``cache_audio`` False; the node then keeps the adapter loaded during sampling, as ComfyUI loads any model).
* The identity tokens (Q-Former) and every block's identity keys and values.
* The motion embedding of each (ω_l, ω_b) a pass asks for.
* Per call layout (which rows get which term, the frames' window lengths, the scales as a device tensor), keyed by the
  call's pass settings and frames, so a step's calls repeat the first call's objects.

``prepare`` makes the keys and values when the run starts: ComfyUI then loads the models for sampling knowing that this
memory is taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .audio.adapter import AudioAdapter
from .audio.embeds import AudioEmbeds
from .dit.attention import frame_groups
from .dit.injection import CrossAttentionTerm, branch_terms
from .identity.embeds import FaceEmbedding
from .identity.model import IdentityModule
from .motion.intensity import MotionIntensity
from .motion.model import MotionNetwork
from .passes import PassSettings


@dataclass(frozen=True, eq=False)
class RunInputs:
    """What a patched model was given: the modules and the clip's voice, face and motion intensity."""

    adapter: AudioAdapter
    audio: AudioEmbeds
    identity: IdentityModule | None = None  # with ``face``; both or neither
    face: FaceEmbedding | None = None
    motion: MotionNetwork | None = None
    default_motion: MotionIntensity = MotionIntensity()  # for passes that name no ω


def audio_cache_fits(inputs: RunInputs) -> bool:
    """Whether the whole track's audio keys and values take no more memory than the adapter's k/v weights: T·W audio
    slots against the context width C (both are [·, model_dim] per block). 81 frames at 23 fps: 21 · 17 = 357 ≤ 2048."""
    windows = inputs.audio.windows
    return windows.latent_frames * windows.window_length <= inputs.adapter.config.context_dim


@dataclass(frozen=True, eq=False)
class Call:
    """What one model call adds: the branches' terms (for ``Injection.set_call``) and the time-embedding addition."""

    branches: tuple[list[CrossAttentionTerm], ...]
    time_addition: torch.Tensor | None


class SamplingRun:
    def __init__(self, inputs: RunInputs, device: torch.device, dtype: torch.dtype):
        self.inputs, self.device, self.dtype = inputs, torch.device(device), dtype
        self.cache_audio = audio_cache_fits(inputs)
        self._audio: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._identity: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._motion: dict[MotionIntensity, torch.Tensor] = {}
        self._scales: dict[tuple[str, tuple[float, ...]], torch.Tensor] = {}
        self._calls: dict[tuple, Call] = {}

    @torch.no_grad()
    def prepare(self) -> None:
        """Makes what the run keeps now (rather than on its first call): the audio keys and values of every frame when
        they are kept, and the identity's."""
        if self.cache_audio:
            self._audio_for((0,))
        if self.inputs.face is not None:
            self._identity_keys_values()

    def matches(self, device: torch.device, dtype: torch.dtype) -> bool:
        return (self.device, self.dtype) == (torch.device(device), dtype)

    def cached_bytes(self) -> int:
        """Device memory this run holds (keys, values, embeddings, gathered frames)."""
        seen, total = set(), 0
        tensors = [t for kv in (self._audio or []) + (self._identity or []) for t in kv] + list(self._motion.values())
        for call in self._calls.values():
            tensors += [t for terms in call.branches for term in terms for t in (term.keys, term.values)]
        for tensor in tensors:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        return total

    @torch.no_grad()
    def call(self, rows: Sequence[PassSettings], frames: Sequence[int]) -> Call:
        """The terms of a call whose batch rows have these settings and whose latent frames are ``frames`` (indices into
        the track's windows, in the order of the latent)."""
        key = (tuple(rows), tuple(frames))
        if key in self._calls:
            return self._calls[key]
        hears = tuple(i for i, row in enumerate(rows) if row.audio_scale != 0)
        sees = tuple(i for i, row in enumerate(rows) if row.identity_scale != 0) if self.inputs.face is not None else ()
        branches = []
        if hears:
            groups = frame_groups(self.inputs.audio.windows.k_lens[list(frames)].tolist())
            branches.append(
                branch_terms(hears, self._scales_of("audio", (row.audio_scale for row in rows)), self._audio_for(key[1]), groups)
            )
        if sees:
            branches.append(
                branch_terms(sees, self._scales_of("identity", (row.identity_scale for row in rows)), self._identity_keys_values())
            )
        addition = None
        if self.inputs.motion is not None:
            addition = torch.stack([self._motion_of(row.motion or self.inputs.default_motion) for row in rows])
        call = Call(tuple(branches), addition)
        if self.cache_audio or not hears:
            self._calls[key] = call
        return call

    def _scales_of(self, branch: str, values) -> torch.Tensor:
        # one tensor per branch: equal audio and identity scales in one tensor would make torch.compile guard on the
        # two being the same object, and recompile when they are not
        key = (branch, tuple(values))
        if key not in self._scales:
            self._scales[key] = torch.tensor(key[1], dtype=self.dtype, device=self.device)
        return self._scales[key]

    def _audio_for(self, frames: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        adapter, audio = self.inputs.adapter, self.inputs.audio
        if not self.cache_audio:
            return adapter.keys_values(adapter.frame_context(audio.features, audio.windows.select(list(frames)), self.device), self.dtype)
        if self._audio is None:
            self._audio = adapter.keys_values(adapter.frame_context(audio.features, audio.windows, self.device), self.dtype)
        first, count = frames[0], len(frames)
        if frames == tuple(range(first, first + count)):
            return [(keys[:, first : first + count], values[:, first : first + count]) for keys, values in self._audio]
        index = torch.tensor(frames, device=self.device)
        return [(keys.index_select(1, index), values.index_select(1, index)) for keys, values in self._audio]

    def _identity_keys_values(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._identity is None:
            tokens = self.inputs.identity.identity_tokens(self.inputs.face.vectors, self.device)
            self._identity = self.inputs.identity.keys_values(tokens, self.dtype)
        return self._identity

    def _motion_of(self, intensity: MotionIntensity) -> torch.Tensor:
        if intensity not in self._motion:
            self._motion[intensity] = self.inputs.motion.embed(intensity, self.device)
        return self._motion[intensity]
