# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Fused CPU inference of the bidirectional Mamba mixer: numba kernels on token-major tensors, in chunks of tokens.

Imported by `StretchySnakeMixer.cpu_inference_forward` on first use, never at model load (numba is optional there).

`StretchySnakeMixer.autograd_forward` computes the same function with autograd-friendly ops. Without gradients it
spends most of its time and memory on layout: (batch, channels, length) transposes, flips, separate conv, silu,
softplus, skip and gate tensors, and a scan whose exp(dt * A) is computed by numpy before the kernel. Here:

- the input projection's output keeps torch's (batch, tokens, channels) layout, and neither direction is flipped:
  the backward direction reads its tokens in reverse order;
- each direction runs over chunks of tokens: a numba causal conv + silu, x_proj (a torch matmul), and a numba scan
  that applies dt_proj and softplus itself and whose exp is `fast_exp`, vectorized over the channels; its state
  carries from one chunk to the next;
- the forward direction writes `scan + D * u` for every token, the backward one adds its own, and as it finishes a
  chunk that chunk is gated by silu(z) (a numba kernel) and projected by out_proj.

Memory: besides the input and the output, one (batch, tokens, channels) tensor for the conv input x and one for the
two directions' sum, and a chunk's worth of temporaries; the slow path holds about twenty (batch, channels, tokens)
tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

try:  # transformers' remote-code loader requires the packages a file imports, except inside try blocks
    import numba
except ImportError as error:
    from .selective_scan import NUMBA_MISSING

    raise ImportError(NUMBA_MISSING) from error

from .numba_math import (
    FASTMATH,
    compiled_once_under_lock,
    fast_exp,
    fast_sigmoid,
    fast_softplus,
    flush_denormals,
    non_negative,
    prefer_512_bit_vectors,
    restore_float_mode,
)
from .scan_numba import numba_threads_per_process

# Tokens per chunk: the chunk's (batch, tokens, channels) temporaries stay about this many elements (1 MiB).
_CHUNK_ELEMENTS = 2**18


def _chunk_tokens(batch: int, channels: int) -> int:
    """Tokens per chunk: about `_CHUNK_ELEMENTS` per (batch, tokens, channels) chunk, a multiple of 64, at least 64."""
    return max(64, _CHUNK_ELEMENTS // (batch * channels) // 64 * 64)


# Channels that one thread of the scan takes at a time, the first of these that gives every thread two blocks, else
# the last (`_scan_block`). Its loops run over a block's channels, in 512-bit vectors: over 64 the scan ran 1.25x as
# fast as over 16 (and 1.45x as fast as with loops over the states), over 32 1.06x slower than over 64.
_CHANNEL_BLOCKS = (64, 32, 16)

# Steps between the states the training path keeps: its backward recomputes the states of one such stretch at a time
# from the state before it, and a stretch's (steps, d_state, 64 channels) states and decays, 512 KiB each, stay in a
# core's L2 cache. With a whole chunk's, the backward ran 3x slower, from memory; 32 and 64 steps ran as fast as 128.
CHECKPOINT_STEPS = 128


def checkpoints_per_chunk(chunk: int) -> int:
    """The states kept per chunk of `chunk` tokens: one before every `CHECKPOINT_STEPS` steps."""
    return (chunk + CHECKPOINT_STEPS - 1) // CHECKPOINT_STEPS


class DirectionSaved(NamedTuple):
    """What the training path's backward keeps of one direction's forward, chunks in processing order:
    checkpoints (chunks, `checkpoints_per_chunk(min(chunk, length))`, b, channels, d_state), the states before every
    `CHECKPOINT_STEPS` steps of each chunk (the backward recomputes the states from them), and projections (chunks,
    b min(chunk, length), dt_rank + 2 d_state), each chunk's x_proj output (`chunk_projections`)."""

    checkpoints: torch.Tensor
    projections: torch.Tensor


def chunk_projections(projections: torch.Tensor, index: int, batch: int, tokens: int) -> torch.Tensor:
    """Chunk `index`'s x_proj output (batch, tokens, dt_rank + 2 d_state): a view of its first batch * tokens rows in
    `DirectionSaved.projections`."""
    return projections[index, : batch * tokens].view(batch, tokens, -1)


class MambaDirectionParameters(NamedTuple):
    """One direction's parameters as `StretchySnakeMixer` holds them (or their gradients): conv_weight (channels, 1,
    d_conv), conv_bias (channels), x_proj_weight (dt_rank + 2 d_state, channels), dt_proj_weight (channels, dt_rank),
    dt_proj_bias (channels), A_log (channels, d_state), D (channels)."""

    conv_weight: torch.Tensor
    conv_bias: torch.Tensor
    x_proj_weight: torch.Tensor
    dt_proj_weight: torch.Tensor
    dt_proj_bias: torch.Tensor
    A_log: torch.Tensor
    D: torch.Tensor


class MambaDirectionWeights(NamedTuple):
    """One direction's tensors in the layouts the kernels read, float32 (`of`): conv_weight_t (d_conv, channels) and
    dt_proj_weight_t (dt_rank, channels), contiguous over channels, and A (channels, d_state) = -exp(A_log), made
    without autograd; conv_bias (channels), x_proj_weight (dt_rank + 2 d_state, channels), dt_proj_bias (channels) and
    D (channels), the parameters themselves (read where grad mode is off: the fused paths run without it)."""

    conv_weight_t: torch.Tensor
    conv_bias: torch.Tensor
    x_proj_weight: torch.Tensor
    dt_proj_weight_t: torch.Tensor
    dt_proj_bias: torch.Tensor
    A: torch.Tensor
    D: torch.Tensor

    @classmethod
    def of(cls, parameters: MambaDirectionParameters) -> MambaDirectionWeights:
        """The kernels' tensors for a direction's parameters: A computed and the two weights transposed, outside
        autograd (the fused training node returns A_log's gradient itself)."""
        conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D = parameters
        with torch.no_grad():
            conv_weight_t, dt_proj_weight_t = conv_weight[:, 0].t().contiguous(), dt_proj_weight.t().contiguous()
            return cls(conv_weight_t, conv_bias, x_proj_weight, dt_proj_weight_t, dt_proj_bias, -torch.exp(A_log), D)


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _causal_conv_silu(x, weight, bias, start, stop, reverse, out, pre_activation):
    """out[:, i] = silu(p_t), p_t = bias + sum_k weight[k] * x[:, t - (W - 1) + k] for tokens t = start + i in
    [start, stop), zero outside the sequence; with `reverse`, the causal conv of the reversed sequence:
    x[:, t + (W - 1) - k].

    x (b, length, channels); weight (W, channels); bias (channels); out (b, stop - start, channels); pre_activation
    (b, k, channels): unless k is 0, p is stored there too (for the training path's backward).
    """
    batch, length, channels = x.shape
    width = weight.shape[0]
    steps = stop - start
    keep = pre_activation.shape[1] > 0
    for index in numba.prange(batch * steps):
        b, i = index // steps, index % steps
        t = start + i
        for c in range(channels):
            out[b, i, c] = bias[c]
        for k in range(width):
            source = t + (width - 1) - k if reverse else t - (width - 1) + k
            if 0 <= source < length:
                for c in range(channels):
                    out[b, i, c] += weight[k, c] * x[b, source, c]
        for c in range(channels):
            p = out[b, i, c]
            if keep:
                pre_activation[b, i, c] = p
            out[b, i, c] = p * fast_sigmoid(p)


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _silu_gate(y, y_start, z, z_start, out):
    """out[:, i] = y[:, y_start + i] * silu(z[:, z_start + i]) for the k tokens of out (b, k, channels), in one pass;
    y, z (b, tokens, channels)."""
    batch, steps, channels = out.shape
    for index in numba.prange(batch * steps):
        b, i = index // steps, index % steps
        for c in range(channels):
            z_c = z[b, z_start + i, c]
            out[b, i, c] = y[b, y_start + i, c] * z_c * fast_sigmoid(z_c)


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _scan_chunk(u, x_dbl, dt_proj_weight_t, dt_bias, A, D, start, reverse, accumulate, state, out, checkpoints, block):
    """One direction's scan through a chunk of tokens [start, start + k), in reverse token order with `reverse`:

        h_t = exp(dt_t A) h_prev + dt_t B_t u_t,    y_t = <h_t, C_t> + D u_t,
        dt_t = softplus(time_step_t dt_proj^T + dt_bias),    (time_step_t, B_t, C_t) = x_dbl_t

    u (b, k, channels) the chunk's conv output; x_dbl (b, k, r + 2 n) x_proj's output; dt_proj_weight_t (r, channels),
    dt_bias (channels): dt_proj, applied here with softplus (`fast_softplus`) for at most 4% more scan time, where
    dt_proj as a torch matmul and softplus as a pass of its own took a fifth of it; A (channels, n);
    D (channels). state (b, channels, n): h before the chunk on entry, after it on return. y_t is written (or with
    `accumulate` added) to out[:, start + i] (out: b, length, channels). checkpoints (s, b, channels, n): unless s is
    0, h before scan steps 0, `CHECKPOINT_STEPS`, 2 `CHECKPOINT_STEPS`, ... is stored there. One thread per (batch
    element, block of `block` channels).
    """
    batch, steps, channels = u.shape
    rank, state_size = dt_proj_weight_t.shape[0], A.shape[1]
    blocks = (channels + block - 1) // block
    for index in numba.prange(batch * blocks):
        mode = flush_denormals()
        prefer_512_bit_vectors()
        b = index // blocks
        first = non_negative(index % blocks * block)
        width = min(first + block, channels) - first
        # (n, width), the inner loops over channels: y sums over n without horizontal adds
        h = np.empty((state_size, width), dtype=u.dtype)
        A_t = np.empty((state_size, width), dtype=u.dtype)
        y = np.empty(width, dtype=u.dtype)
        dt = np.empty(width, dtype=u.dtype)
        dt_u = np.empty(width, dtype=u.dtype)
        for n in range(state_size):
            for j in range(width):
                h[n, j] = state[b, first + j, n]
                A_t[n, j] = A[first + j, n]
        for step in range(steps):
            if checkpoints.shape[0] > 0 and step % CHECKPOINT_STEPS == 0:
                for j in range(width):
                    for n in range(state_size):
                        checkpoints[step // CHECKPOINT_STEPS, b, first + j, n] = h[n, j]
            i = steps - 1 - step if reverse else step
            for j in range(width):
                dt[j] = dt_bias[first + j]
            for r in range(rank):
                time_step = x_dbl[b, i, r]
                for j in range(width):
                    dt[j] += time_step * dt_proj_weight_t[r, first + j]
            for j in range(width):
                dt[j] = fast_softplus(dt[j])
                dt_u[j] = dt[j] * u[b, i, first + j]
                y[j] = D[first + j] * u[b, i, first + j]
            for n in range(state_size):
                B_n, C_n = x_dbl[b, i, rank + n], x_dbl[b, i, rank + state_size + n]
                for j in range(width):
                    h_n = fast_exp(dt[j] * A_t[n, j]) * h[n, j] + dt_u[j] * B_n
                    h[n, j] = h_n
                    y[j] += h_n * C_n
            if accumulate:
                for j in range(width):
                    out[b, start + i, first + j] += y[j]
            else:
                for j in range(width):
                    out[b, start + i, first + j] = y[j]
        for j in range(width):
            for n in range(state_size):
                state[b, first + j, n] = h[n, j]
        restore_float_mode(mode)


def _scan_block(batch: int, channels: int, threads: int) -> int:
    """The channels per block of `_scan_chunk`: the first of `_CHANNEL_BLOCKS` that gives each of `threads` threads
    two blocks, else the smallest."""
    for block in _CHANNEL_BLOCKS:
        if batch * -(-channels // block) >= 2 * threads:
            return block
    return _CHANNEL_BLOCKS[-1]


@compiled_once_under_lock
def _compile_kernels() -> None:
    """Calls the conv and scan kernels on tiny float32 inputs of the layouts `_scan_direction` uses."""
    batch, length, channels, state_size, width = 1, 3, 4, 2, 2
    x, out = (np.zeros((batch, length, channels), np.float32) for _ in range(2))
    vector = np.zeros(channels, np.float32)
    _causal_conv_silu(x, np.zeros((width, channels), np.float32), vector, 0, length, False, out, out)
    _silu_gate(x, 0, x, 0, out)
    state = np.zeros((batch, channels, state_size), np.float32)
    A = np.zeros((channels, state_size), np.float32)
    x_dbl = np.zeros((batch, length, 1 + 2 * state_size), np.float32)
    dt_proj_weight_t = np.zeros((1, channels), np.float32)
    _scan_chunk(
        x, x_dbl, dt_proj_weight_t, vector, A, vector, 0, False, False, state, out, state[np.newaxis],
        _CHANNEL_BLOCKS[-1],
    )  # fmt: skip


def _chunk_starts(length: int, chunk: int, reverse: bool) -> list[int]:
    starts = list(range(0, length, chunk))
    return starts[::-1] if reverse else starts


def _scan_direction(
    x: torch.Tensor,
    weights: MambaDirectionWeights,
    reverse: bool,
    out: torch.Tensor,
    chunk: int,
    on_chunk_done: Callable[[int, int], None] | None = None,
    keep_for_backward: bool = False,
) -> DirectionSaved | None:
    """One direction over the token-major conv input x (b, length, channels): writes (forward) or adds (`reverse`)
    its `scan + D u` to out, chunk by chunk, and calls `on_chunk_done(start, stop)` after each. With
    `keep_for_backward`, returns what the training path's backward needs (`DirectionSaved`)."""
    batch, length, channels = x.shape
    state_size = weights.A.shape[1]
    state = x.new_zeros(batch, channels, state_size)
    conv_weight, dt_proj_weight_t = weights.conv_weight_t.numpy(), weights.dt_proj_weight_t.numpy()
    conv_bias, x_np = weights.conv_bias.numpy(), x.numpy()
    starts = _chunk_starts(length, chunk, reverse)
    per_chunk = checkpoints_per_chunk(min(chunk, length)) if keep_for_backward else 0
    checkpoints = x.new_empty(len(starts), per_chunk, batch, channels, state_size)
    if keep_for_backward:
        projections = x.new_empty(len(starts), batch * min(chunk, length), weights.x_proj_weight.shape[0])
    no_pre_activation = np.empty((batch, 0, channels), np.float32)
    block = _scan_block(batch, channels, numba.get_num_threads())
    for index, start in enumerate(starts):
        stop = min(start + chunk, length)
        u = x.new_empty(batch, stop - start, channels)
        _causal_conv_silu(x_np, conv_weight, conv_bias, start, stop, reverse, u.numpy(), no_pre_activation)
        if keep_for_backward:
            x_dbl = torch.matmul(u, weights.x_proj_weight.t(), out=chunk_projections(projections, index, *u.shape[:2]))
        else:
            x_dbl = F.linear(u, weights.x_proj_weight)
        _scan_chunk(
            u.numpy(), x_dbl.numpy(), dt_proj_weight_t, weights.dt_proj_bias.numpy(), weights.A.numpy(),
            weights.D.numpy(), start, reverse, reverse, state.numpy(), out.numpy(), checkpoints[index].numpy(), block,
        )  # fmt: skip
        if on_chunk_done is not None:
            on_chunk_done(start, stop)
    return DirectionSaved(checkpoints, projections) if keep_for_backward else None


@torch.no_grad()
def bidirectional_mamba_inference_cpu(
    hidden_states: torch.Tensor,
    in_proj_weight: torch.Tensor,
    forward_parameters: MambaDirectionParameters,
    backward_parameters: MambaDirectionParameters,
    out_proj_weight: torch.Tensor,
) -> torch.Tensor:
    """The bidirectional mixer (see `StretchySnakeMixer`) without autograd, on float32 CPU tensors.

    hidden_states (batch, tokens, hidden); in_proj_weight (2 channels, hidden); out_proj_weight (hidden, channels);
    returns (batch, tokens, hidden).
    """
    _compile_kernels()
    numba.set_num_threads(numba_threads_per_process())
    hidden_states = hidden_states.contiguous()
    batch, length, _ = hidden_states.shape
    channels = out_proj_weight.shape[1]
    chunk = _chunk_tokens(batch, channels)
    x_weight, z_weight = in_proj_weight.split(channels)
    x = F.linear(hidden_states, x_weight)  # (batch, tokens, channels), the conv input of both directions
    summed = torch.empty_like(x)  # scan + D u of the forward direction, then of both
    output = hidden_states.new_empty(batch, length, out_proj_weight.shape[0])

    def gate_and_project(start: int, stop: int) -> None:
        z = F.linear(hidden_states[:, start:stop], z_weight)
        gated = torch.empty_like(z)  # in place, over z, the kernel's loop did not vectorize: 3.6x slower
        _silu_gate(summed.numpy(), start, z.numpy(), 0, gated.numpy())
        output[:, start:stop] = F.linear(gated, out_proj_weight)

    _scan_direction(x, MambaDirectionWeights.of(forward_parameters), False, summed, chunk)
    _scan_direction(x, MambaDirectionWeights.of(backward_parameters), True, summed, chunk, gate_and_project)
    return output
