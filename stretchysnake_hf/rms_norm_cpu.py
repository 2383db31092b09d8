# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""RMSNorm on float32 CPU tensors as two numba kernels, forward and backward, in one autograd node.

Imported by `StretchySnakeRMSNorm` on first use on the fused CPU path, never at model load (numba is optional there).
Written with torch ops, the norm is six kernels forward and about ten backward, each a pass over the
(tokens, hidden) tensor and a dispatch of its own; here it is one pass each way. Saved for the backward: the input
and one inverse RMS per token.

    y = x r w,   r = 1 / sqrt(mean(x^2) + eps)
    grad_x = r (g w) - x r^3 <g w, x> / hidden,   grad_w = sum over tokens of g x r
"""

from __future__ import annotations

import numpy as np
import torch

try:  # transformers' remote-code loader requires the packages a file imports, except inside try blocks
    import numba
except ImportError as error:
    from .selective_scan import NUMBA_MISSING

    raise ImportError(NUMBA_MISSING) from error

from .numba_math import FASTMATH, compiled_once_under_lock, non_negative
from .scan_numba import numba_threads_per_process

# Tokens per parallel iteration; the backward keeps one partial grad_w per such block, summed by torch after it.
_TOKENS_PER_BLOCK = 64


@numba.njit(cache=True)
def _blocks(tokens: int) -> int:
    return (tokens + _TOKENS_PER_BLOCK - 1) // _TOKENS_PER_BLOCK


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _rms_norm_forward(x, weight, eps, out, inverse_rms):
    """out = x r weight and inverse_rms = r per token, for x and out (tokens, hidden), weight (hidden)."""
    tokens, hidden = x.shape
    for block in numba.prange(_blocks(tokens)):
        first = non_negative(block * _TOKENS_PER_BLOCK)
        for token in range(first, min(first + _TOKENS_PER_BLOCK, tokens)):
            squares = np.float32(0.0)
            for c in range(hidden):
                squares += x[token, c] * x[token, c]
            r = np.float32(1.0) / np.sqrt(squares / np.float32(hidden) + eps)
            inverse_rms[token] = r
            for c in range(hidden):
                out[token, c] = x[token, c] * r * weight[c]


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _rms_norm_backward(x, weight, inverse_rms, grad_out, grad_x, grad_weight_blocks):
    """grad_x (tokens, hidden), and in grad_weight_blocks (blocks, hidden) each block's share of grad_w."""
    tokens, hidden = x.shape
    for block in numba.prange(_blocks(tokens)):
        first = non_negative(block * _TOKENS_PER_BLOCK)
        grad_weight = grad_weight_blocks[block]
        grad_weight[:] = np.float32(0.0)
        for token in range(first, min(first + _TOKENS_PER_BLOCK, tokens)):
            r = inverse_rms[token]
            dot = np.float32(0.0)
            for c in range(hidden):
                dot += grad_out[token, c] * weight[c] * x[token, c]
            correction = dot * r * r * r / np.float32(hidden)
            for c in range(hidden):
                grad_x[token, c] = grad_out[token, c] * weight[c] * r - x[token, c] * correction
                grad_weight[c] += grad_out[token, c] * x[token, c] * r


@compiled_once_under_lock
def _compile_kernels() -> None:
    x, grad = (np.zeros((2, 3), np.float32) for _ in range(2))
    weight, inverse_rms = np.zeros(3, np.float32), np.zeros(2, np.float32)
    _rms_norm_forward(x, weight, np.float32(1e-5), grad, inverse_rms)
    _rms_norm_backward(x, weight, inverse_rms, x, grad, np.zeros((_blocks(2), 3), np.float32))


class RMSNormCpuFn(torch.autograd.Function):
    """RMSNorm of float32 CPU hidden_states (..., hidden) by weight (hidden); see the module docstring."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, hidden_states: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> torch.Tensor:
        _compile_kernels()
        numba.set_num_threads(numba_threads_per_process())
        x = hidden_states.contiguous().view(-1, hidden_states.shape[-1])
        out, inverse_rms = torch.empty_like(x), x.new_empty(x.shape[0])
        _rms_norm_forward(x.numpy(), weight.detach().numpy(), np.float32(eps), out.numpy(), inverse_rms.numpy())
        ctx.save_for_backward(x, weight, inverse_rms)
        return out.view_as(hidden_states)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor) -> tuple[torch.Tensor, ...]:
        numba.set_num_threads(numba_threads_per_process())
        x, weight, inverse_rms = ctx.saved_tensors
        grad_out = grad_output.contiguous().view_as(x)
        grad_x, grad_weight_blocks = torch.empty_like(x), x.new_empty(_blocks(x.shape[0]), x.shape[1])
        _rms_norm_backward(*(t.numpy() for t in (x, weight, inverse_rms, grad_out, grad_x, grad_weight_blocks)))
        return grad_x.view_as(grad_output), grad_weight_blocks.sum(0), None


def rms_norm_cpu(hidden_states: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`hidden_states * rsqrt(mean(hidden_states^2, -1) + eps) * weight` on float32 CPU tensors (`RMSNormCpuFn`)."""
    return RMSNormCpuFn.apply(hidden_states, weight, eps)
