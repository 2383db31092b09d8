# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Fused CPU training of the bidirectional Mamba mixer: a forward and a hand-written backward on token-major tensors.

Imported by `StretchySnakeMixer.cpu_training_forward` on first use, never at model load (numba is optional there).

`StretchySnakeMixer.autograd_forward` builds the mixer out of about twenty autograd nodes per direction, each saving
a (batch, channels, tokens) tensor (conv output, silu, transposes, flips, softplus, skip, gate), and its backward
runs as many separate passes over memory. `BidirectionalMambaTrainingFn` is one node:

- forward: the fused inference path of `mixer_inference_cpu` (token-major, no flips, chunks of tokens, numba conv +
  silu and scan), which also stores each direction's scan state every `CHECKPOINT_STEPS` tokens;
- saved: the input, the two halves of the input projection (x, the conv input, and z, the gate input), the sum of
  the two directions' `scan + D u`, each direction's x_proj output and its stored states: three (batch, tokens,
  channels) tensors, two of (dt_rank + 2 d_state) / channels and two of d_state / `CHECKPOINT_STEPS` times that size;
  and each direction's weights in the kernels' layouts;
- backward: out_proj by torch and the gate by a numba kernel, then per direction and chunk, in reverse scan order,
  the chunk's conv + silu is recomputed (keeping the conv's output), a numba kernel recomputes dt (dt_proj and
  softplus) and the chunk's states from the stored ones, a stretch of `CHECKPOINT_STEPS` at a time, and runs the
  reverse-time scan (gradients of u, of dt before softplus and of dt_proj's weight and bias, of x_proj's output
  through B, C and dt_proj, of A and D), torch matmuls take x_proj's weight gradient and the gradient through
  x_proj, and a numba kernel through silu and the causal conv into its weight and bias and into x (one thread per
  range of tokens);
- the node takes each direction's parameters as the mixer holds them (`MambaDirectionParameters`): A = -exp(A_log)
  and the kernels' transposed layouts are made inside it without autograd (`MambaDirectionWeights.of`), and the
  backward returns A_log's gradient (A's times A), so the autograd graph has no exp, neg or select per direction.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

try:  # transformers' remote-code loader requires the packages a file imports, except inside try blocks
    import numba
except ImportError as error:
    from .selective_scan import NUMBA_MISSING

    raise ImportError(NUMBA_MISSING) from error

from .mixer_inference_cpu import (
    CHECKPOINT_STEPS,
    DirectionSaved,
    MambaDirectionParameters,
    MambaDirectionWeights,
    _causal_conv_silu,
    _chunk_starts,
    _chunk_tokens,
    _compile_kernels,
    _scan_direction,
    _silu_gate,
    chunk_projections,
)
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
    silu_derivative,
)
from .scan_numba import numba_threads_per_process

# Channels that one thread of the scan backward takes at a time. Its innermost loops run over them (they are
# contiguous in the token-major tensors): long enough that a loop's set-up is paid for by its SIMD iterations.
_CHANNEL_BLOCK = 64


def _blocks(channels: int) -> int:
    return (channels + _CHANNEL_BLOCK - 1) // _CHANNEL_BLOCK


# Tokens per thread of `_silu_conv_backward`; each also computes grad_p for the W - 1 tokens after its own. 32 ran
# 1.2x as fast as 64 and 1.4x as fast as 128 (one 640-token chunk at 384 channels, 2 threads).
_CONV_TOKENS = 32


def _conv_ranges(tokens: int) -> int:
    return (tokens + _CONV_TOKENS - 1) // _CONV_TOKENS


@numba.njit(cache=True, fastmath=FASTMATH)
def _recompute_states(u, dt, A_t, x_dbl, rank, b, first, reverse, from_step, count, states, decays):
    """Advances states[0] (n, width), the state before scan step from_step of channels [first, first + width) of
    batch element b, through steps [from_step, from_step + count): stores states[k + 1], the state after step
    from_step + k, and decays[k] = exp(dt[k] A) of that step (states (>= count + 1, n, width), decays (>= count, n,
    width)). A_t (n, width): A of the block, transposed. dt (>= count, width): the block's time steps of those steps.
    u (batch, k, channels); x_dbl (batch, k, rank + 2 n), whose columns from rank on are B. Runs in the calling thread
    (a thread of `_scan_chunk_backward`)."""
    prefer_512_bit_vectors()  # numba vectorizes this function's loops in a module of its own, before inlining
    state_size, width = A_t.shape
    chunk_steps = u.shape[1]
    first = non_negative(first)
    for k in range(count):
        step = from_step + k
        i = chunk_steps - 1 - step if reverse else step
        for n in range(state_size):
            B_n = x_dbl[b, i, rank + n]
            for j in range(width):
                decays[k, n, j] = fast_exp(dt[k, j] * A_t[n, j])
                states[k + 1, n, j] = decays[k, n, j] * states[k, n, j] + dt[k, j] * u[b, i, first + j] * B_n


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _scan_chunk_backward(
    u, x_dbl, dt_proj_weight_t, dt_bias, A, D, grad_sum, start, reverse, saved, grad_state, grad_u, grad_A, grad_D,
    grad_dt_bias, grad_dt_proj_t, partials, grad_x_dbl,
):  # fmt: skip
    """The reverse-time scan of one direction through a chunk of tokens [start, start + k), whose forward ran
    `mixer_inference_cpu._scan_chunk` (in reverse token order with `reverse`), which stored `saved`:

        h_t = exp(dt_t A) h_prev + dt_t B_t u_t,    y_t = <h_t, C_t> + D u_t,    g_y_t = grad_sum[:, start + t]

    u (b, k, channels); x_dbl = (time_step, B, C) (b, k, r + 2 n), x_proj's output; dt = softplus(dt_raw), dt_raw =
    time_step dt_proj^T + dt_bias with dt_proj_weight_t (r, channels), dt_bias (channels); A (channels, n);
    D (channels); grad_sum (b, length, channels); saved (s, b, channels, n): h before scan steps 0, `CHECKPOINT_STEPS`,
    2 `CHECKPOINT_STEPS`, ...

    grad_state (b, channels, n): on entry exp(dt_next A) g_h_next, the gradient reaching the chunk's last state from
    the steps after it (zero for the last chunk), on return the same for the step before the chunk. Written:
    grad_u (b, k, channels) through the scan and the skip, grad_x_dbl (b, k, r + 2 n), the gradient of x_dbl: of
    time_step through dt_proj, of B and of C. Accumulated, float64, with grad_dt_raw the gradient of dt_raw (through
    the scan and softplus): grad_A (b, channels, n), grad_D and grad_dt_bias (the sum of grad_dt_raw over the chunk's
    tokens) (b, channels), and grad_dt_proj_t (b, r, channels), dt_proj's weight gradient transposed, the sum over
    tokens of time_step^T grad_dt_raw (a torch matmul of (r, b k) by (b k, channels) ran slower on 2 threads than on
    1). partials (b, blocks, k, r + 2 n) is scratch.

    One thread per (batch element, block of channels), so no two threads write the same element. It goes through
    the stretches of `CHECKPOINT_STEPS` steps in reverse: computes a stretch's dt_raw and dt, recomputes its states and
    decays (n, block) per step from its stored state, and runs the reverse recurrence over them. grad_x_dbl sums over
    channels: each thread writes its block's partial sums, and a second parallel loop, one thread per (batch element,
    token), adds them.
    """
    batch, steps, channels = u.shape
    state_size = A.shape[1]
    rank = dt_proj_weight_t.shape[0]
    blocks = (channels + _CHANNEL_BLOCK - 1) // _CHANNEL_BLOCK
    stretches = (steps + CHECKPOINT_STEPS - 1) // CHECKPOINT_STEPS
    for index in numba.prange(batch * blocks):
        mode = flush_denormals()
        prefer_512_bit_vectors()
        b, block = index // blocks, index % blocks
        first = non_negative(block) * _CHANNEL_BLOCK
        width = min(first + _CHANNEL_BLOCK, channels) - first
        A_t = np.empty((state_size, width), dtype=u.dtype)  # (n, width): the inner loops run over channels
        grad_h = np.empty((state_size, width), dtype=u.dtype)
        for n in range(state_size):
            for j in range(width):
                A_t[n, j] = A[first + j, n]
                grad_h[n, j] = grad_state[b, first + j, n]
        states = np.empty((CHECKPOINT_STEPS + 1, state_size, width), dtype=u.dtype)  # h before and after each step
        decays = np.empty((CHECKPOINT_STEPS, state_size, width), dtype=u.dtype)  # exp(dt A) of each step
        grad_A_block = np.zeros((state_size, width), dtype=u.dtype)
        grad_D_block = np.zeros(width, dtype=u.dtype)
        grad_dt_bias_block = np.zeros(width, dtype=u.dtype)
        grad_dt_proj_block = np.zeros((rank, width), dtype=u.dtype)
        grad_dt_u = np.empty(width, dtype=u.dtype)  # gradient of dt_t * u_t
        grad_dt_i = np.empty(width, dtype=u.dtype)
        grad_dt_raw = np.empty(width, dtype=u.dtype)  # of a step
        dt_raw = np.empty((CHECKPOINT_STEPS, width), dtype=u.dtype)  # of a stretch's steps
        dt = np.empty((CHECKPOINT_STEPS, width), dtype=u.dtype)
        for stretch in range(stretches - 1, -1, -1):
            from_step = stretch * CHECKPOINT_STEPS
            count = min(CHECKPOINT_STEPS, steps - from_step)
            for n in range(state_size):
                for j in range(width):
                    states[0, n, j] = saved[stretch, b, first + j, n]
            for k in range(count):
                i = steps - 1 - (from_step + k) if reverse else from_step + k
                for j in range(width):
                    dt_raw[k, j] = dt_bias[first + j]
                for r in range(rank):
                    time_step = x_dbl[b, i, r]
                    for j in range(width):
                        dt_raw[k, j] += time_step * dt_proj_weight_t[r, first + j]
                for j in range(width):
                    dt[k, j] = fast_softplus(dt_raw[k, j])
            _recompute_states(u, dt, A_t, x_dbl, rank, b, first, reverse, from_step, count, states, decays)
            for k in range(count - 1, -1, -1):
                i = steps - 1 - (from_step + k) if reverse else from_step + k
                t = start + i
                grad_dt_u[:] = 0.0
                grad_dt_i[:] = 0.0
                for n in range(state_size):
                    B_n, C_n = x_dbl[b, i, rank + n], x_dbl[b, i, rank + state_size + n]
                    sum_B = np.float32(0.0)
                    sum_C = np.float32(0.0)
                    for j in range(width):
                        grad_y, dt_j = grad_sum[b, t, first + j], dt[k, j]
                        g = grad_h[n, j] + grad_y * C_n  # gradient of h_t
                        sum_C += grad_y * states[k + 1, n, j]
                        sum_B += g * dt_j * u[b, i, first + j]
                        grad_dt_u[j] += g * B_n
                        grad_decay = g * states[k, n, j] * decays[k, n, j]  # d/d(dt A) of exp(dt A) h_prev
                        grad_dt_i[j] += grad_decay * A_t[n, j]
                        grad_A_block[n, j] += grad_decay * dt_j
                        grad_h[n, j] = g * decays[k, n, j]
                    partials[b, block, i, rank + n] = sum_B
                    partials[b, block, i, rank + state_size + n] = sum_C
                for j in range(width):
                    c = first + j
                    grad_y, u_j = grad_sum[b, t, c], u[b, i, c]
                    grad_u[b, i, c] = grad_dt_u[j] * dt[k, j] + D[c] * grad_y
                    softplus_derivative = fast_sigmoid(dt_raw[k, j])
                    grad_dt_raw[j] = (grad_dt_i[j] + grad_dt_u[j] * u_j) * softplus_derivative
                    grad_dt_bias_block[j] += grad_dt_raw[j]
                    grad_D_block[j] += grad_y * u_j
                for r in range(rank):
                    time_step = x_dbl[b, i, r]
                    sum_time_step = np.float32(0.0)
                    for j in range(width):
                        sum_time_step += grad_dt_raw[j] * dt_proj_weight_t[r, first + j]
                        grad_dt_proj_block[r, j] += time_step * grad_dt_raw[j]
                    partials[b, block, i, r] = sum_time_step
        for j in range(width):
            grad_D[b, first + j] += grad_D_block[j]
            grad_dt_bias[b, first + j] += grad_dt_bias_block[j]
            for n in range(state_size):
                grad_state[b, first + j, n] = grad_h[n, j]
                grad_A[b, first + j, n] += grad_A_block[n, j]
            for r in range(rank):
                grad_dt_proj_t[b, r, first + j] += grad_dt_proj_block[r, j]
        restore_float_mode(mode)
    columns = partials.shape[3]
    for index in numba.prange(batch * steps):
        b, i = index // steps, index % steps
        for column in range(columns):
            grad_x_dbl[b, i, column] = partials[b, 0, i, column]
        for block in range(1, blocks):
            for column in range(columns):
                grad_x_dbl[b, i, column] += partials[b, block, i, column]


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _silu_conv_backward(x, weight, grad_u, pre_activation, start, reverse, grad_weight, grad_x):
    """The backward of u = silu(p) for the tokens [start, start + k) of the causal conv p (of `mixer_inference_cpu.
    _causal_conv_silu`), given grad_u and p (b, k, channels). With grad_p the gradient of p, adds to grad_x (b, length,
    channels) the gradient of x, sum_k grad_p[t] weight[k] over the tokens t whose tap k reads it (the W - 1 tokens
    before the chunk, after it with `reverse`, included), and to grad_weight (b ranges, W + 1, channels) the
    gradients of the conv's weight, rows k < W: sum_t grad_p[t] x[source of tap k at t], and of its bias, row W:
    sum_t grad_p[t], per batch element and range of `_CONV_TOKENS` tokens (slot b ranges + r; ranges = its first
    dimension / b, enough for the longest chunk). x (b, length, channels), weight (W, channels).

    One thread per (batch element, range of tokens): it computes grad_p for its tokens and the W - 1 after them, adds
    its tokens' weight and bias gradients to its own slot, and gathers the gradient of the sources whose first
    reader (the first but W - 1 with `reverse`) is one of its tokens, so no two threads write the same element. Its
    loops run over all channels: with one thread per block of 64 channels and a loop per token and tap over them,
    set-up cost as much as the work (2.2x the time).
    """
    batch, length, channels = x.shape
    width = weight.shape[0]
    steps = grad_u.shape[1]
    ranges = grad_weight.shape[0] // batch
    offset = width - 1 if reverse else 0  # a source's first reader is token source - offset
    for index in numba.prange(batch * ranges):
        b, r = index // ranges, index % ranges
        first = non_negative(r * _CONV_TOKENS)
        last = min(first + _CONV_TOKENS, steps)
        if first >= last:
            continue
        readers_stop = min(last + width - 1, steps)
        grad_p = np.empty((readers_stop - first, channels), dtype=x.dtype)
        for i in range(first, readers_stop):
            for c in range(channels):
                p = pre_activation[b, i, c]
                grad_p[i - first, c] = grad_u[b, i, c] * silu_derivative(p, fast_sigmoid(p))
        sums = grad_weight[index]
        for i in range(first, last):
            t = start + i
            for c in range(channels):
                sums[width, c] += grad_p[i - first, c]
            for k in range(width):
                source = t + (width - 1) - k if reverse else t - (width - 1) + k
                if 0 <= source < length:
                    for c in range(channels):
                        sums[k, c] += grad_p[i - first, c] * x[b, source, c]
        for i in range(first - (width - 1) if r == 0 else first, last):
            source = start + i + offset
            if 0 <= source < length:
                for k in range(width):
                    reader = (source - (width - 1) + k if reverse else source + (width - 1) - k) - start - first
                    if 0 <= reader < readers_stop - first:
                        for c in range(channels):
                            grad_x[b, source, c] += weight[k, c] * grad_p[reader, c]


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _silu_gate_backward(z, summed, grad_gated, gated, grad_z):
    """The backward of gated = summed * silu(z), all (b, tokens, channels), in one pass: writes gated (for out_proj's
    weight gradient) and grad_z, and turns grad_gated, the gradient of gated, into that of summed, in place."""
    batch, length, channels = z.shape
    for index in numba.prange(batch * length):
        b, t = index // length, index % length
        for c in range(channels):
            z_c, summed_c, grad_c = z[b, t, c], summed[b, t, c], grad_gated[b, t, c]
            sigmoid = fast_sigmoid(z_c)
            silu = z_c * sigmoid
            gated[b, t, c] = summed_c * silu
            grad_z[b, t, c] = grad_c * summed_c * silu_derivative(z_c, sigmoid)
            grad_gated[b, t, c] = grad_c * silu


@compiled_once_under_lock
def _compile_backward_kernels() -> None:
    """Calls the backward kernels on tiny float32 inputs of the layouts `_direction_backward` uses."""
    batch, length, channels, state_size, width = 1, 3, 4, 2, 2
    u, grad_u, grad_dt = (np.zeros((batch, length, channels), np.float32) for _ in range(3))
    vector = np.zeros(channels, np.float32)
    saved = np.zeros((1, batch, channels, state_size), np.float32)
    grad_state = np.zeros((batch, channels, state_size), np.float32)
    grad_A, grad_D = np.zeros((batch, channels, state_size)), np.zeros((batch, channels))
    grad_dt_proj_t = np.zeros((batch, 1, channels))
    A = np.zeros((channels, state_size), np.float32)
    x_dbl, grad_x_dbl = (np.zeros((batch, length, 1 + 2 * state_size), np.float32) for _ in range(2))
    dt_proj_weight_t = np.zeros((1, channels), np.float32)
    partials = np.zeros((batch, 1, *x_dbl.shape[1:]), np.float32)
    _scan_chunk_backward(
        u, x_dbl, dt_proj_weight_t, vector, A, vector, u, 0, False, saved, grad_state, grad_u, grad_A, grad_D, grad_D,
        grad_dt_proj_t, partials, grad_x_dbl,
    )  # fmt: skip
    weight = np.zeros((width, channels), np.float32)
    _silu_conv_backward(u, weight, grad_u, grad_dt, 0, False, np.zeros((batch, width + 1, channels), np.float32), u)
    _silu_gate_backward(u, u, grad_u, grad_dt, grad_dt)


def _direction_backward(
    x: torch.Tensor,
    weights: MambaDirectionWeights,
    reverse: bool,
    grad_sum: torch.Tensor,
    saved: DirectionSaved,
    chunk: int,
    grad_x: torch.Tensor,
) -> MambaDirectionParameters:
    """The gradients of one direction, given grad_sum (b, length, channels), the gradient of the two directions'
    summed `scan + D u`. x (b, length, channels) is the conv input, saved what `_scan_direction` kept of the
    forward. Adds the gradient of x to grad_x and returns the gradients of the direction's parameters."""
    batch, length, channels = x.shape
    time_step_rank, state_size = weights.dt_proj_weight_t.shape[0], weights.A.shape[1]
    blocks = _blocks(channels)
    conv_weight = weights.conv_weight_t.numpy()
    conv_width = conv_weight.shape[0]
    # per batch element and range of tokens of the longest chunk: the weight's W rows, the bias
    grad_conv = x.new_zeros(batch * _conv_ranges(min(chunk, length)), conv_width + 1, channels)
    grad_A = torch.zeros(batch, channels, state_size, dtype=torch.float64)
    grad_D, grad_dt_bias = (torch.zeros(batch, channels, dtype=torch.float64) for _ in range(2))
    grad_dt_proj_t = torch.zeros(batch, time_step_rank, channels, dtype=torch.float64)
    grad_x_proj = torch.zeros_like(weights.x_proj_weight)
    grad_state = x.new_zeros(batch, channels, state_size)
    x_np, conv_bias, A, D = x.numpy(), weights.conv_bias.numpy(), weights.A.numpy(), weights.D.numpy()
    dt_proj_weight_t, dt_bias = weights.dt_proj_weight_t.numpy(), weights.dt_proj_bias.numpy()
    accumulated = [t.numpy() for t in (grad_state, grad_A, grad_D, grad_dt_bias, grad_dt_proj_t)]
    starts = _chunk_starts(length, chunk, reverse)
    for index in reversed(range(len(starts))):  # the chunks in reverse scan order
        start = starts[index]
        stop = min(start + chunk, length)
        u, pre_activation = (x.new_empty(batch, stop - start, channels) for _ in range(2))
        _causal_conv_silu(x_np, conv_weight, conv_bias, start, stop, reverse, u.numpy(), pre_activation.numpy())
        x_dbl = chunk_projections(saved.projections, index, batch, stop - start)  # (b, k, dt_rank + 2 d_state)
        grad_u = torch.empty_like(u)
        grad_x_dbl = torch.empty_like(x_dbl)
        partials = np.empty((batch, blocks, *x_dbl.shape[1:]), np.float32)
        _scan_chunk_backward(
            u.numpy(), x_dbl.numpy(), dt_proj_weight_t, dt_bias, A, D, grad_sum.numpy(), start, reverse,
            saved.checkpoints[index].numpy(), accumulated[0], grad_u.numpy(), *accumulated[1:], partials,
            grad_x_dbl.numpy(),
        )  # fmt: skip
        grad_x_dbl = grad_x_dbl.flatten(0, 1)  # (b k, dt_rank + 2 d_state)
        grad_x_proj.addmm_(grad_x_dbl.t(), u.flatten(0, 1))
        grad_u.view(-1, channels).addmm_(grad_x_dbl, weights.x_proj_weight)  # through x_proj
        gradients = (grad_conv.numpy(), grad_x.numpy())
        _silu_conv_backward(x_np, conv_weight, grad_u.numpy(), pre_activation.numpy(), start, reverse, *gradients)
    grad_conv = grad_conv.sum(0)
    return MambaDirectionParameters(
        grad_conv[:conv_width].t().unsqueeze(1),
        grad_conv[conv_width],
        grad_x_proj,
        grad_dt_proj_t.sum(0).float().t(),
        grad_dt_bias.sum(0).float(),
        grad_A.sum(0).float().mul_(weights.A),  # A = -exp(A_log): dA / dA_log = A
        grad_D.sum(0).float(),
    )


class BidirectionalMambaTrainingFn(torch.autograd.Function):
    """The bidirectional mixer (see `StretchySnakeMixer`) as one autograd node, on float32 CPU tensors.

    Inputs: hidden_states (batch, tokens, hidden), in_proj_weight (2 channels, hidden), out_proj_weight (hidden,
    channels), then the forward direction's seven `MambaDirectionParameters` tensors and the backward direction's.
    Output: (batch, tokens, hidden). Use `bidirectional_mamba_training_cpu`.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden_states: torch.Tensor,
        in_proj_weight: torch.Tensor,
        out_proj_weight: torch.Tensor,
        *direction_parameters: torch.Tensor,
    ) -> torch.Tensor:
        _compile_kernels()
        numba.set_num_threads(numba_threads_per_process())  # per calling thread, so in forward and backward
        forward_weights = MambaDirectionWeights.of(MambaDirectionParameters(*direction_parameters[:7]))
        backward_weights = MambaDirectionWeights.of(MambaDirectionParameters(*direction_parameters[7:]))
        hidden_states = hidden_states.contiguous()
        batch, length, _ = hidden_states.shape
        channels = out_proj_weight.shape[1]
        chunk = _chunk_tokens(batch, channels)
        x_weight, z_weight = in_proj_weight.split(channels)
        x = F.linear(hidden_states, x_weight)  # (batch, tokens, channels), the conv input of both directions
        z = F.linear(hidden_states, z_weight)  # the gate's input
        summed = torch.empty_like(x)  # scan + D u of the forward direction, then of both
        output = hidden_states.new_empty(batch, length, out_proj_weight.shape[0])

        def gate_and_project(start: int, stop: int) -> None:
            gated = z.new_empty(batch, stop - start, channels)
            _silu_gate(summed.numpy(), start, z.numpy(), start, gated.numpy())
            output[:, start:stop] = F.linear(gated, out_proj_weight)

        saved = [
            *_scan_direction(x, forward_weights, False, summed, chunk, keep_for_backward=True),
            *_scan_direction(x, backward_weights, True, summed, chunk, gate_and_project, keep_for_backward=True),
        ]
        ctx.save_for_backward(
            hidden_states, in_proj_weight, out_proj_weight, x, z, summed, *saved, *forward_weights, *backward_weights
        )
        ctx.chunk = chunk
        return output

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _compile_backward_kernels()
        numba.set_num_threads(numba_threads_per_process())
        hidden_states, in_proj_weight, out_proj_weight, x, z, summed, *saved = ctx.saved_tensors
        forward_saved, backward_saved = DirectionSaved(*saved[:2]), DirectionSaved(*saved[2:4])
        forward_weights, backward_weights = MambaDirectionWeights(*saved[4:11]), MambaDirectionWeights(*saved[11:])
        channels = x.shape[-1]
        grad_output = grad_output.contiguous().flatten(0, 1)  # (batch tokens, hidden)
        # 4. out_proj and the gate: output = (summed * silu(z)) out_proj^T
        grad_sum = (grad_output @ out_proj_weight).view_as(x)  # the gradient of gated, then (in place) of summed
        gated, grad_z = torch.empty_like(x), torch.empty_like(x)
        _silu_gate_backward(z.numpy(), summed.numpy(), grad_sum.numpy(), gated.numpy(), grad_z.numpy())
        grad_out_proj = grad_output.t() @ gated.flatten(0, 1)
        # 3.-2. each direction: scan, dt_proj, x_proj, conv + silu
        grad_x = torch.zeros_like(x)
        grad_forward = _direction_backward(x, forward_weights, False, grad_sum, forward_saved, ctx.chunk, grad_x)
        grad_backward = _direction_backward(x, backward_weights, True, grad_sum, backward_saved, ctx.chunk, grad_x)
        # 1. in_proj
        x_weight, z_weight = in_proj_weight.split(channels)
        grad_x, grad_z, inputs = grad_x.flatten(0, 1), grad_z.flatten(0, 1), hidden_states.flatten(0, 1)
        grad_hidden = (grad_x @ x_weight).addmm_(grad_z, z_weight).view_as(hidden_states)
        grad_in_proj = torch.cat([grad_x.t() @ inputs, grad_z.t() @ inputs])
        return grad_hidden, grad_in_proj, grad_out_proj, *grad_forward, *grad_backward


def bidirectional_mamba_training_cpu(
    hidden_states: torch.Tensor,
    in_proj_weight: torch.Tensor,
    forward_parameters: MambaDirectionParameters,
    backward_parameters: MambaDirectionParameters,
    out_proj_weight: torch.Tensor,
) -> torch.Tensor:
    """The bidirectional mixer with a fused backward, on float32 CPU tensors (`BidirectionalMambaTrainingFn`).

    hidden_states (batch, tokens, hidden); in_proj_weight (2 channels, hidden); out_proj_weight (hidden, channels);
    returns (batch, tokens, hidden).
    """
    return BidirectionalMambaTrainingFn.apply(
        hidden_states, in_proj_weight, out_proj_weight, *forward_parameters, *backward_parameters
    )
