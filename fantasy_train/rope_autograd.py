"""Gradients through ComfyUI's RoPE kernels. ComfyUI (v0.8+) applies Wan's rotary embedding with comfy-kitchen's
custom ops, which are inference-only: a backward pass through them raises "no autograd formula was registered".
RoPE is linear in x: each pair (x0, x1) is multiplied by a 2 x 2 matrix F (``freqs_cis[..., i, j]``), so the gradient
is the same op applied to the incoming gradient with F transposed; the rotation tables get none. This registers that
formula when (and only when) the installed kernels lack one, keeping ComfyUI's own fast kernels in use."""

from __future__ import annotations

import torch

OPS = ("comfy_kitchen::apply_rope1",)


def _transposed(freqs_cis: torch.Tensor) -> torch.Tensor:
    return freqs_cis.transpose(-1, -2).contiguous()


def _setup_context(ctx, inputs, output) -> None:
    ctx.freqs_cis = inputs[1]


def _backward(ctx, grad: torch.Tensor):
    return torch.ops.comfy_kitchen.apply_rope1(grad.contiguous(), _transposed(ctx.freqs_cis)), None


def _has_backward(op) -> bool:
    x = torch.randn(1, 1, 2, 2, requires_grad=True)
    freqs = torch.eye(2).expand(1, 1, 1, 2, 2).contiguous()
    try:
        op(x, freqs).sum().backward()
    except RuntimeError as error:
        if "autograd" in str(error):
            return False
        raise
    return True


def enable_rope_gradients() -> bool:
    """True when a formula was registered (False: no comfy-kitchen kernels, or they already have one)."""
    namespace = getattr(torch.ops, "comfy_kitchen", None)
    op = getattr(namespace, "apply_rope1", None) if namespace is not None else None
    if op is None:
        try:
            import comfy_kitchen  # noqa: F401 - registers its ops
        except ImportError:
            return False
        op = getattr(torch.ops.comfy_kitchen, "apply_rope1", None)
        if op is None:
            return False
    if _has_backward(op):
        return False
    torch.library.register_autograd(OPS[0], _backward, setup_context=_setup_context)
    return True
