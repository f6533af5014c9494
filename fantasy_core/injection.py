"""Injecting the audio term into Wan's image-to-video cross-attention without replacing any of its code.

Wan computes ``q = norm_q(q(x))`` once and returns ``o(x_text + x_image)``. FantasyTalking's block output is
``o(x_text + x_image + audio_scale * x_audio)`` with the *same* q and the *same* o. Two temporary hooks per block
give exactly that: a forward hook on ``cross_attn.norm_q`` keeps q, and a forward pre-hook on ``cross_attn.o``
adds ``audio_scale * attention(q, k_proj(audio), v_proj(audio))`` to o's input. The block's own forward still
runs, so LoRA, weight casting and other patches on it keep working.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .adapter import AudioContext, FantasyTalkingAdapter


class AdapterMismatchError(ValueError):
    """The adapter was made for a different DiT than the one it is applied to."""


def check_adapter_fits(adapter: FantasyTalkingAdapter, blocks: Sequence[nn.Module]) -> None:
    config = adapter.config
    model_dim = blocks[0].cross_attn.o.in_features if len(blocks) else 0
    if config.num_blocks != len(blocks) or config.model_dim != model_dim:
        raise AdapterMismatchError(
            f"The FantasyTalking adapter has {config.num_blocks} blocks of width {config.model_dim}"
            f"{' (Wan2.1-14B)' if (config.num_blocks, config.model_dim) == (40, 5120) else ''}, but the model has "
            f"{len(blocks)} blocks of width {model_dim}"
            f"{' (Wan2.1-1.3B)' if (len(blocks), model_dim) == (30, 1536) else ''}. "
            "Load the Wan2.1 I2V model the adapter was trained for (Wan2.1-I2V-14B)."
        )


class _QuerySlot:
    """The query of one block, from its norm_q to its o (an attribute, which torch.compile traces as a side effect)."""

    q: torch.Tensor | None = None


class AudioInjection:
    """Context manager: while active, every block's cross-attention includes the audio term.

    ``audio_scale`` is a float or a [B] tensor (per batch entry; 0 turns audio off for that entry).
    Hooks are removed on exit, also when the forward raises.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        adapter: FantasyTalkingAdapter,
        audio: AudioContext,
        audio_scale: float | torch.Tensor = 1.0,
    ):
        check_adapter_fits(adapter, blocks)
        self.blocks = blocks
        self.adapter = adapter
        self.audio = audio
        self.audio_scale = audio_scale
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _is_silent(self) -> bool:
        scale = self.audio_scale
        return bool((scale == 0).all()) if isinstance(scale, torch.Tensor) else scale == 0

    def __enter__(self) -> AudioInjection:
        if self._is_silent():
            return self  # audio off: the model runs untouched, bit for bit
        try:
            for index, block in enumerate(self.blocks):
                self._hook_block(index, block.cross_attn)
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

    def _hook_block(self, index: int, cross_attn: nn.Module) -> None:
        audio_kv = self.adapter.blocks[index]
        slot = _QuerySlot()

        def keep_query(_module, _args, q):
            slot.q = q

        def add_audio(_module, args):
            q, slot.q = slot.q, None
            if q is None:
                raise RuntimeError(
                    f"FantasyTalking: block {index}'s cross-attention output ran without its query; another patch "
                    "replaced Wan's cross-attention. Remove that patch or apply FantasyTalking after it."
                )
            audio_out = audio_kv(q, self.audio, cross_attn.num_heads)
            return (args[0] + self._scale_for(audio_out) * audio_out, *args[1:])

        self._handles.append(cross_attn.norm_q.register_forward_hook(keep_query))
        self._handles.append(cross_attn.o.register_forward_pre_hook(add_audio))

    def _scale_for(self, audio_out: torch.Tensor):
        scale = self.audio_scale
        if isinstance(scale, torch.Tensor):
            return scale.to(audio_out).reshape(-1, 1, 1)
        return scale
