"""The one place where FantasyTalking taps into a Wan DiT, without replacing any of Wan's code.

Two kinds of tap:

* **Extra key/value terms of the cross-attention.** Wan computes ``q = norm_q(q(x))`` once and returns
  ``o(x_text + x_image)``. FantasyTalking adds terms that share that q and that o:
  ``o(x_text + x_image + sum_b scale_b · x_b)`` (audio, identity).
* **A time-embedding term.** Added to Wan's time embedding ``e``, which feeds both the blocks' modulation (through
  ``time_projection``) and the head (motion).

The taps are *twins* of three layers: every block's ``cross_attn.norm_q`` and ``cross_attn.o`` and the last layer of
``time_embedding`` (ComfyUI puts them in place as object patches; the trainer sets them itself). A twin is a new object
of a subclass of the layer's class that shares the real layer's whole state (the same ``__dict__``: weights, LoRA
patches, ComfyUI's casting and low-VRAM flags), so the layer's own ``forward`` runs on the real weights and every module
keeps its name. Everything around them is Wan's (or another node's: a replaced cross-attention ``forward`` that calls
``norm_q`` and ``o`` still gets the terms). Because the twins are new objects of new classes, torch.compile guards on
them: a graph traced without FantasyTalking is never reused with it, whether the whole model or each block was
compiled, and before or after FantasyTalking was applied. No hooks are registered.

What a call adds is decided on the host before the call (``Injection.set_call``): per block a tuple of terms and for
the time embedding one addition, left in the twins' shared state for the span of that call only (so two patched
clones of one model never see each other's); the twins only read them. A twin with nothing to add runs exactly the
layer's operations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .attention import FrameGroup, add_attention_, add_frame_attention_

TAP = "_fantasytalking_tap"  # in a twin's shared state for the span of one call: what it adds


class ModelMismatchError(ValueError):
    """A FantasyTalking module was made for a different DiT than the one it is applied to."""


def check_blocks_fit(what: str, num_blocks: int, model_dim: int, blocks: Sequence[nn.Module]) -> None:
    model_blocks = len(blocks)
    width = blocks[0].cross_attn.o.in_features if model_blocks else 0
    if (num_blocks, model_dim) != (model_blocks, width):
        raise ModelMismatchError(
            f"The {what} has {num_blocks} blocks of width {model_dim}"
            f"{' (Wan2.1-14B)' if (num_blocks, model_dim) == (40, 5120) else ''}, but the model has "
            f"{model_blocks} blocks of width {width}"
            f"{' (Wan2.1-1.3B)' if (model_blocks, width) == (30, 1536) else ''}. "
            "Load the Wan2.1 I2V model it was trained for (Wan2.1-I2V-14B)."
        )


@dataclass(frozen=True, eq=False)
class CrossAttentionTerm:
    """One branch (audio or identity) in one block for one model call: o's input gains, for every row r in ``rows``,
    ``scales[r] · Attention(q_r, keys, values)``. Host data (rows, frame groups) is the same object in every block."""

    rows: tuple[int, ...]  # batch rows that get this term
    scales: torch.Tensor  # [B] in the compute dtype, on the model's device
    keys: torch.Tensor  # [1 or B, T, W, D] per latent frame, or [1 or B, K, D] for every token alike
    values: torch.Tensor
    frame_groups: tuple[FrameGroup, ...] | None  # None: every video token attends to every key

    def add_to(self, hidden: torch.Tensor, q: torch.Tensor, num_heads: int) -> None:
        keys, values = self.keys, self.values
        if keys.dtype != q.dtype:  # only where a caller prepared another dtype; a run's cache already matches
            keys, values = keys.to(q.dtype), values.to(q.dtype)
        for row in self.rows:
            source = row if keys.shape[0] > 1 else 0
            if self.frame_groups is None:
                add_attention_(hidden[row][None], q[row][None], keys[source][None], values[source][None], num_heads, self.scales[row])
            else:
                add_frame_attention_(hidden[row], q[row], keys[source], values[source], self.frame_groups, num_heads, self.scales[row])


def branch_terms(
    rows: Sequence[int],
    scales: torch.Tensor,
    keys_values: Sequence[tuple[torch.Tensor, torch.Tensor]],
    frame_groups: tuple[FrameGroup, ...] | None = None,
) -> list[CrossAttentionTerm]:
    """One branch's term in every block: ``keys_values`` holds each block's (keys, values)."""
    rows = tuple(rows)
    return [CrossAttentionTerm(rows, scales, keys, values, frame_groups) for keys, values in keys_values]


class BlockTap:
    """What one block's cross-attention adds during the current call, and its query between norm_q and o."""

    def __init__(self, num_heads: int):
        self.num_heads = num_heads
        self.terms: tuple[CrossAttentionTerm, ...] = ()
        self.query: torch.Tensor | None = None


class TimeTap:
    """What the time embedding gains during the current call: [B, D] (one row per batch row), or None."""

    def __init__(self):
        self.addition: torch.Tensor | None = None


class _QueryTwin:
    def forward(self, *args, **kwargs):
        q = super().forward(*args, **kwargs)
        tap = self.__dict__.get(TAP)
        if tap is not None and tap.terms:
            tap.query = q
        return q


class _OutputTwin:
    def forward(self, hidden, *args, **kwargs):
        tap = self.__dict__.get(TAP)
        if tap is not None and tap.terms:
            q, tap.query = tap.query, None
            if q is None:
                raise RuntimeError(
                    "FantasyTalking: a cross-attention output ran without its query: a patch replaced Wan's "
                    "cross-attention with code that does not call its norm_q, so FantasyTalking cannot add its terms. "
                    "Remove that patch."
                )
            # ``hidden`` is x_text + x_image, a temporary only o reads: the terms are added into it in place.
            for term in tap.terms:
                term.add_to(hidden, q, tap.num_heads)
        return super().forward(hidden, *args, **kwargs)


class _TimeEmbeddingTwin:
    def forward(self, *args, **kwargs):
        e = super().forward(*args, **kwargs)
        tap = self.__dict__.get(TAP)
        if tap is None or tap.addition is None:
            return e
        addition, rows = tap.addition, tap.addition.shape[0]
        if e.shape[0] % rows:
            raise RuntimeError(f"FantasyTalking motion: a time embedding of {e.shape[0]} rows for a batch of {rows}.")
        if e.shape[0] != rows:  # Wan embeds t.flatten(): per-token timesteps keep the rows in order
            addition = addition.repeat_interleave(e.shape[0] // rows, dim=0)
        return e + addition.to(e.dtype)


_TWIN = "_fantasytalking_twin"  # marks a twin class, and on a layer class holds its twins (they live as long as it)


def twin_of(layer: nn.Module, mixin: type) -> nn.Module:
    """A new object of a subclass of the layer's class with the layer's own ``__dict__`` (not a copy). A twin of a twin
    is a twin of the same real layer."""
    cls = type(layer)
    if cls.__dict__.get(_TWIN) is True:
        cls = cls.__bases__[-1]
    twins = cls.__dict__.get(_TWIN)
    if twins is None:
        twins = {}
        setattr(cls, _TWIN, twins)
    if mixin not in twins:
        twins[mixin] = type(f"FantasyTalking{cls.__name__}", (mixin, cls), {"__module__": __name__, _TWIN: True})
    twin = object.__new__(twins[mixin])
    twin.__dict__ = layer.__dict__
    return twin


def is_twin(module: nn.Module) -> bool:
    return type(module).__dict__.get(_TWIN) is True


class Injection:
    """The taps of one Wan DiT and what they add during the current call."""

    def __init__(self, num_blocks: int, num_heads: int, time_layer: str = "2"):
        self.blocks = [BlockTap(num_heads) for _ in range(num_blocks)]
        self.time = TimeTap()
        self.time_path = f"time_embedding.{time_layer}"  # the last layer of Wan's time embedding (Linear, SiLU, Linear)
        self._states: list[tuple[dict, object]] = []  # (a twin's shared state, the tap it gets during a call)

    def twins(self, module_at: Callable[[str], nn.Module]) -> dict[str, nn.Module]:
        """The twin for every tapped path of the DiT (``blocks.{i}.cross_attn.norm_q`` and ``.o``, the time embedding's
        last layer), made from ``module_at(path)``: what stands at that path now."""
        twins, self._states = {}, []
        for index, tap in enumerate(self.blocks):
            for name, mixin in (("norm_q", _QueryTwin), ("o", _OutputTwin)):
                path = f"blocks.{index}.cross_attn.{name}"
                twins[path] = twin_of(module_at(path), mixin)
                self._states.append((twins[path].__dict__, tap))
        twins[self.time_path] = twin_of(module_at(self.time_path), _TimeEmbeddingTwin)
        self._states.append((twins[self.time_path].__dict__, self.time))
        return twins

    def install(self, dit: nn.Module) -> Callable[[], None]:
        """Puts the twins into ``dit`` directly (the trainer); returns what puts the real layers back."""

        def put(path: str, module: nn.Module) -> None:
            parent, _, name = path.rpartition(".")
            setattr(dit.get_submodule(parent), name, module)

        replaced = {}
        for path, twin in self.twins(lambda path: dit.get_submodule(path)).items():
            replaced[path] = dit.get_submodule(path)
            put(path, twin)

        def remove() -> None:
            for path, module in replaced.items():
                put(path, module)

        return remove

    def set_call(self, branches: Sequence[Sequence[CrossAttentionTerm]], time_addition: torch.Tensor | None = None) -> Callable[[], None]:
        """What the next model call adds: each branch's terms (one per block, from ``branch_terms``; a branch that no
        row gets is left out), and [B, D] for the time embedding (or None). Returns what undoes it (restoring a call
        this one runs inside, if any)."""
        for terms in branches:
            if len(terms) != len(self.blocks):
                raise RuntimeError(f"FantasyTalking: terms for {len(terms)} blocks, but the model has {len(self.blocks)}.")
        if not self._states:
            raise RuntimeError("FantasyTalking: the injection has no twins yet (twins() or install() first).")
        saved = [(tap, tap.terms, tap.query) for tap in self.blocks], self.time.addition, [state.get(TAP) for state, _ in self._states]
        for index, tap in enumerate(self.blocks):
            tap.terms, tap.query = tuple(terms[index] for terms in branches if terms[index].rows), None
        self.time.addition = time_addition
        for state, tap in self._states:
            state[TAP] = tap

        def undo() -> None:
            taps, addition, states = saved
            for tap, terms, query in taps:
                tap.terms, tap.query = terms, query
            self.time.addition = addition
            for (state, _), previous in zip(self._states, states):
                if previous is None:
                    state.pop(TAP, None)
                else:
                    state[TAP] = previous

        return undo
