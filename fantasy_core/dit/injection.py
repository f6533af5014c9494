"""The one place where FantasyTalking taps into a Wan DiT, without replacing any of Wan's code.

Two kinds of tap, installed for one model call and removed afterwards (also when the call raises):

* **Extra key/value branches of the cross-attention.** Wan computes ``q = norm_q(q(x))`` once and returns
  ``o(x_text + x_image)``. FantasyTalking adds terms that share that q and that o:
  ``o(x_text + x_image + sum_b scale_b * x_b)`` (audio now, identity next). A forward hook on ``cross_attn.norm_q``
  keeps q; a forward pre-hook on ``cross_attn.o`` adds every branch's scaled output to o's input.
* **Time-embedding taps.** A forward hook on ``time_embedding`` adds each tap's output to Wan's time embedding
  ``e``, which feeds both the blocks' modulation (through ``time_projection``) and the head (motion next).

Each branch has one scale per batch row (the row's pass decides it); rows with scale 0 are not computed at all, so a
batch whose rows are all 0 runs the model untouched, bit for bit. The blocks' own forwards still run, so LoRA, weight
casting, low-VRAM streaming and other patches keep working.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import nn


class ModelMismatchError(ValueError):
    """A FantasyTalking module was made for a different DiT than the one it is applied to."""


class CrossAttentionBranch(Protocol):
    """One extra key/value branch for one model call."""

    scales: torch.Tensor  # [B], one per batch row; 0 turns the branch off for that row

    def attend(self, block_index: int, q: torch.Tensor, num_heads: int) -> torch.Tensor:
        """q [b, N, dim] of the rows being computed -> the branch's attention output [b, N, dim], before o."""
        ...

    # A branch whose context differs per batch row (training: each row its own clip) also has
    # ``for_rows(index) -> CrossAttentionBranch``: the same branch restricted to those rows, used when some rows are off.


TimeEmbeddingTap = Callable[[torch.Tensor], torch.Tensor]  # Wan's time embedding e -> an addition of e's shape


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


class _ActiveRows:
    """The rows a branch computes: None for all of them, else their indices."""

    def __init__(self, scales: torch.Tensor):
        nonzero = scales != 0
        self.count = int(nonzero.sum())
        self.index = None if self.count == scales.shape[0] else nonzero.nonzero().flatten()


class _QuerySlot:
    """The query of one block, from its norm_q to its o (an attribute, which torch.compile traces as a side effect)."""

    q: torch.Tensor | None = None


class DiTInjection:
    """Context manager: while active, the model's cross-attentions include the branches and its time embedding the taps."""

    def __init__(self, wan: nn.Module, branches: Sequence[CrossAttentionBranch] = (), time_taps: Sequence[TimeEmbeddingTap] = ()):
        self.blocks = wan.blocks
        self.time_embedding = getattr(wan, "time_embedding", None)
        self.branches = []
        for branch in branches:
            rows = _ActiveRows(branch.scales)
            if not rows.count:
                continue  # a branch no row hears is not installed
            computed = branch.for_rows(rows.index) if rows.index is not None and hasattr(branch, "for_rows") else branch
            self.branches.append((branch.scales, computed, rows))
        self.time_taps = list(time_taps)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> DiTInjection:
        try:
            if self.branches:
                for index, block in enumerate(self.blocks):
                    self._hook_cross_attention(index, block.cross_attn)
            if self.time_taps:
                self._handles.append(self.time_embedding.register_forward_hook(self._add_time_taps))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _add_time_taps(self, _module, _args, e: torch.Tensor) -> torch.Tensor:
        for tap in self.time_taps:
            e = e + tap(e).to(e)
        return e

    def _hook_cross_attention(self, index: int, cross_attn: nn.Module) -> None:
        slot = _QuerySlot()

        def keep_query(_module, _args, q):
            slot.q = q

        def add_branches(_module, args):
            q, slot.q = slot.q, None
            if q is None:
                raise RuntimeError(
                    f"FantasyTalking: block {index}'s cross-attention output ran without its query; another patch "
                    "replaced Wan's cross-attention. Remove that patch or apply FantasyTalking after it."
                )
            hidden = args[0]
            for scales, branch, rows in self.branches:
                scales = scales.to(hidden)
                if rows.index is None:
                    hidden = hidden + scales.reshape(-1, 1, 1) * branch.attend(index, q, cross_attn.num_heads)
                else:
                    active = rows.index.to(hidden.device)
                    out = branch.attend(index, q[active], cross_attn.num_heads)
                    hidden = hidden.index_add(0, active, scales[active].reshape(-1, 1, 1) * out)
            return (hidden, *args[1:])

        self._handles.append(cross_attn.norm_q.register_forward_hook(keep_query))
        self._handles.append(cross_attn.o.register_forward_pre_hook(add_branches))
