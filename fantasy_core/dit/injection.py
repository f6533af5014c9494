"""The one place where FantasyTalking taps into a Wan DiT, without replacing any of Wan's code.

Two kinds of tap:

* **Extra key/value terms of the cross-attention.** Wan computes ``q = norm_q(q(x))`` once and returns
  ``o(x_text + x_image)``. FantasyTalking adds terms that share that q and that o:
  ``o(x_text + x_image + sum_b scale_b · x_b)`` (audio, identity).
* **A time-embedding term.** Added to Wan's time embedding ``e``, which feeds both the blocks' modulation (through
  ``time_projection``) and the head (motion).

The taps are *twins*: new module objects standing where Wan's ``blocks[i].cross_attn`` and ``time_embedding`` stand
(ComfyUI puts them there as object patches; the trainer sets them itself). A twin is a copy of the original module
whose class is a subclass of the original's: Wan's own ``forward`` runs unchanged. The cross-attention twin holds its
own children table, in which ``norm_q`` and ``o`` are twins as well; these share the real layers' whole state (the
same ``__dict__``: weights, ComfyUI's casting and low-VRAM flags), so LoRA, fp8, casting and streaming see the real
layers, and every module keeps its name. Because the twins are new objects of new classes, torch.compile guards on
them: a graph traced without FantasyTalking is never reused with it, whether the whole model or each block was
compiled, and before or after FantasyTalking was applied. No hooks are registered.

What a call adds is decided on the host before the call (``Injection.set_call``): per block a tuple of terms and for
the time embedding one addition; the twins only read them. A twin with nothing to add runs exactly Wan's operations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .attention import FrameGroup, add_attention_, add_frame_attention_

TAP = "_fantasytalking_tap"
ORIGINAL = "_fantasytalking_original"


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


def branch_terms(rows: Sequence[int], scales: torch.Tensor, keys_values: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 frame_groups: tuple[FrameGroup, ...] | None = None) -> list[CrossAttentionTerm]:
    """One branch's term in every block: ``keys_values`` holds each block's (keys, values)."""
    rows = tuple(rows)
    return [CrossAttentionTerm(rows, scales, keys, values, frame_groups) for keys, values in keys_values]


class BlockTap:
    """What one block's cross-attention adds during the current call (set on the host), and its query in between."""

    def __init__(self, num_heads: int):
        self.num_heads = num_heads
        self.terms: tuple[CrossAttentionTerm, ...] = ()
        self.query: torch.Tensor | None = None


class TimeTap:
    """What the time embedding gains during the current call: [B, D] (one row per batch row), or None."""

    def __init__(self):
        self.addition: torch.Tensor | None = None


class _Current:
    """The block whose cross-attention is running: set by its twin for the span of its forward, read by the twins of
    its norm_q and o (which share the real layers' state, so they hold nothing of their own)."""

    tap: BlockTap | None = None


_current = _Current()


class _CrossAttentionTwin:
    def forward(self, *args, **kwargs):
        _current.tap = self.__dict__[TAP]
        out = super().forward(*args, **kwargs)
        _current.tap = None
        return out


class _QueryTwin:
    def forward(self, *args, **kwargs):
        q = super().forward(*args, **kwargs)
        tap = _current.tap
        if tap is not None and tap.terms:
            tap.query = q
        return q


class _OutputTwin:
    def forward(self, hidden, *args, **kwargs):
        tap = _current.tap
        if tap is not None and tap.terms:
            q, tap.query = tap.query, None
            if q is None:
                raise RuntimeError(
                    "FantasyTalking: a cross-attention output ran without its query; another patch replaced Wan's "
                    "cross-attention. Remove that patch or apply FantasyTalking after it."
                )
            # ``hidden`` is x_text + x_image, a temporary only o reads: the terms are added into it in place.
            for term in tap.terms:
                term.add_to(hidden, q, tap.num_heads)
        return super().forward(hidden, *args, **kwargs)


class _TimeEmbeddingTwin:
    def forward(self, *args, **kwargs):
        e = super().forward(*args, **kwargs)
        addition = self.__dict__[TAP].addition
        if addition is None:
            return e
        rows = addition.shape[0]
        if e.shape[0] % rows:
            raise RuntimeError(f"FantasyTalking motion: a time embedding of {e.shape[0]} rows for a batch of {rows}.")
        if e.shape[0] != rows:  # Wan embeds t.flatten(): per-token timesteps keep the rows in order
            addition = addition.repeat_interleave(e.shape[0] // rows, dim=0)
        return e + addition.to(e.dtype)


_twin_classes: dict[tuple[type, type], type] = {}


def _twin_class(mixin: type, cls: type) -> type:
    key = (mixin, cls)
    if key not in _twin_classes:
        _twin_classes[key] = type(f"FantasyTalking{cls.__name__}", (mixin, cls), {"__module__": __name__})
    return _twin_classes[key]


def _shared_twin(layer: nn.Module, mixin: type) -> nn.Module:
    """A new object of a subclass of the layer's class, with the layer's own ``__dict__`` (not a copy)."""
    twin = object.__new__(_twin_class(mixin, type(layer)))
    twin.__dict__ = layer.__dict__
    return twin


def original_of(module: nn.Module) -> nn.Module:
    """The module a twin stands for (the module itself when it is not a twin)."""
    return module.__dict__.get(ORIGINAL, module)


def _own_twin(module: nn.Module, mixin: type, tap) -> nn.Module:
    """A new object of a subclass of the module's class, with a copy of its ``__dict__`` holding the tap."""
    original = original_of(module)
    twin = object.__new__(_twin_class(mixin, type(original)))
    twin.__dict__.update(original.__dict__)
    twin.__dict__[TAP], twin.__dict__[ORIGINAL] = tap, original
    return twin


def cross_attention_twin(cross_attn: nn.Module, tap: BlockTap) -> nn.Module:
    twin = _own_twin(cross_attn, _CrossAttentionTwin, tap)
    children = dict(twin._modules)  # the twin's own table: the original keeps its real norm_q and o
    children["norm_q"] = _shared_twin(children["norm_q"], _QueryTwin)
    children["o"] = _shared_twin(children["o"], _OutputTwin)
    twin.__dict__["_modules"] = children
    return twin


def time_embedding_twin(time_embedding: nn.Module, tap: TimeTap) -> nn.Module:
    return _own_twin(time_embedding, _TimeEmbeddingTwin, tap)


class Injection:
    """The taps of one Wan DiT and what they add during the current call."""

    def __init__(self, num_blocks: int, num_heads: int):
        self.blocks = [BlockTap(num_heads) for _ in range(num_blocks)]
        self.time = TimeTap()

    def twins(self, module_at: Callable[[str], nn.Module]) -> dict[str, nn.Module]:
        """The twin for every tapped path of the DiT (``blocks.{i}.cross_attn``, ``time_embedding``), made from
        ``module_at(path)``: what stands at that path now (a previous FantasyTalking twin is replaced, not wrapped)."""
        twins = {f"blocks.{i}.cross_attn": cross_attention_twin(module_at(f"blocks.{i}.cross_attn"), tap)
                 for i, tap in enumerate(self.blocks)}
        twins["time_embedding"] = time_embedding_twin(module_at("time_embedding"), self.time)
        return twins

    def install(self, dit: nn.Module) -> Callable[[], None]:
        """Puts the twins into ``dit`` directly (the trainer); returns what puts the originals back."""

        def put(path: str, module: nn.Module) -> None:
            parent, _, name = path.rpartition(".")
            setattr(dit.get_submodule(parent), name, module)

        twins = self.twins(lambda path: dit.get_submodule(path))
        replaced = {path: dit.get_submodule(path) for path in twins}
        for path, twin in twins.items():
            put(path, twin)

        def remove() -> None:
            for path, module in replaced.items():
                put(path, module)

        return remove

    def set_call(self, branches: Sequence[Sequence[CrossAttentionTerm]], time_addition: torch.Tensor | None = None) -> None:
        """What the next model call adds: each branch's terms (one per block, from ``branch_terms``; a branch that no
        row gets is left out), and [B, D] for the time embedding (or None)."""
        for terms in branches:
            if len(terms) != len(self.blocks):
                raise RuntimeError(f"FantasyTalking: terms for {len(terms)} blocks, but the model has {len(self.blocks)}.")
        for index, tap in enumerate(self.blocks):
            tap.terms, tap.query = tuple(terms[index] for terms in branches if terms[index].rows), None
        self.time.addition = time_addition

    def clear(self) -> None:
        for tap in self.blocks:
            tap.terms, tap.query = (), None
        self.time.addition = None
