# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""The "numba" selective-scan backend: fused parallel CPU kernels with a hand-written reverse-time backward.

Imported on first use by `selective_scan.selective_scan_numba_fn` (and by `mixer_inference_cpu`), never at model
load: the model files run where numba is not installed, with the "chunked" scan.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

try:  # transformers' remote-code loader requires the packages a file imports, except inside try blocks
    import numba
except ImportError as error:
    from .selective_scan import NUMBA_MISSING

    raise ImportError(NUMBA_MISSING) from error

from .numba_math import (
    FASTMATH,
    compiled_once_under_lock,
    fast_exp,
    flush_denormals,
    prefer_512_bit_vectors,
    restore_float_mode,
)
from .selective_scan import cores_per_process, scan_chunk_length


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _scan_chunk_forward(u, dt, A, B, C, start, stop, state, y):
    """Advances `state` (b d n) through steps [start, stop) and writes y_t = <h_t, C_t> into y.

    u, dt, y (b d l); A (d n); B, C (b l n). One thread per (batch, channel).
    """
    batch, channels, state_size = state.shape
    for index in numba.prange(batch * channels):
        mode = flush_denormals()
        prefer_512_bit_vectors()
        b, d = index // channels, index % channels
        for t in range(start, stop):
            dt_t = dt[b, d, t]
            dt_u = dt_t * u[b, d, t]
            y_t = 0.0
            for n in range(state_size):
                h = fast_exp(dt_t * A[d, n]) * state[b, d, n] + dt_u * B[b, t, n]
                state[b, d, n] = h
                y_t += h * C[b, t, n]
            y[b, d, t] = y_t
        restore_float_mode(mode)


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _scan_chunk_backward(
    u, dt, A, B, C, start, stop, state, grad_y, grad_state, grad_u, grad_dt, grad_A, grad_B, grad_C
):
    """Reverse-time scan through steps [start, stop), whose states are recomputed from `state` (b d n), the
    state before the chunk. Arguments as in `_scan_chunk_forward`, and:

    grad_state (b d n): exp(dt_{t+1} A) g_h_{t+1} after the chunk on entry, at its first step on return, where
    g_h_t = g_y_t C_t + exp(dt_{t+1} A) g_h_{t+1}. grad_u, grad_dt (b d l): written for these steps.
    grad_A (b d n, float64): accumulated per batch element. grad_B, grad_C (b groups l n): accumulated per
    channel group; one thread per (batch, group) walks its channels, so no two threads write the same element.
    """
    batch, channels, state_size = state.shape
    steps = stop - start
    groups = grad_B.shape[1]
    for index in numba.prange(batch * groups):
        mode = flush_denormals()
        prefer_512_bit_vectors()
        b, group = index // groups, index % groups
        states = np.empty((steps + 1, state_size), dtype=u.dtype)  # h_{start-1}, ..., h_{stop-1}
        decays = np.empty((steps, state_size), dtype=u.dtype)  # exp(dt_t A) of the chunk's steps
        for d in range(group, channels, groups):
            for n in range(state_size):
                states[0, n] = state[b, d, n]
            for i in range(steps):
                t = start + i
                dt_t = dt[b, d, t]
                dt_u = dt_t * u[b, d, t]
                for n in range(state_size):
                    decays[i, n] = fast_exp(dt_t * A[d, n])
                    states[i + 1, n] = decays[i, n] * states[i, n] + dt_u * B[b, t, n]
            for i in range(steps - 1, -1, -1):
                t = start + i
                grad_y_t, dt_t, u_t = grad_y[b, d, t], dt[b, d, t], u[b, d, t]
                grad_dt_u = 0.0  # gradient of dt_t * u_t
                grad_dt_t = 0.0
                for n in range(state_size):
                    grad_h = grad_state[b, d, n] + grad_y_t * C[b, t, n]
                    grad_C[b, group, t, n] += grad_y_t * states[i + 1, n]
                    grad_B[b, group, t, n] += grad_h * dt_t * u_t
                    grad_dt_u += grad_h * B[b, t, n]
                    grad_decay = grad_h * states[i, n] * decays[i, n]  # d/d(dt A) of exp(dt A) h_{t-1}
                    grad_dt_t += grad_decay * A[d, n]
                    grad_A[b, d, n] += grad_decay * dt_t
                    grad_state[b, d, n] = grad_h * decays[i, n]
                grad_u[b, d, t] = grad_dt_u * dt_t
                grad_dt[b, d, t] = grad_dt_t + grad_dt_u * u_t
        restore_float_mode(mode)


@compiled_once_under_lock
def _compile_scan_kernels() -> None:
    """Calls both numba scan kernels on tiny float32 and float64 inputs of the layouts that
    `SelectiveScanNumbaFn` uses."""
    batch, channels, length, state_size = 1, 4, 3, 2
    for dtype in (np.float32, np.float64):
        u, dt, y, grad_u, grad_dt = (np.zeros((batch, channels, length), dtype) for _ in range(5))
        A, state, grad_state = (
            np.zeros((channels, state_size), dtype),
            *(np.zeros((batch, channels, state_size), dtype) for _ in range(2)),
        )
        B, C = (np.zeros((batch, length, state_size), dtype) for _ in range(2))
        grad_A = np.zeros((batch, channels, state_size), np.float64)
        grad_B, grad_C = (np.zeros((batch, 1, length, state_size), dtype) for _ in range(2))
        _scan_chunk_forward(u, dt, A, B, C, 0, length, state, y)
        _scan_chunk_backward(u, dt, A, B, C, 0, length, state, y, grad_state, grad_u, grad_dt, grad_A, grad_B, grad_C)


@functools.cache
def _cores_per_process() -> int:
    return min(numba.config.NUMBA_NUM_THREADS, cores_per_process())


def numba_threads_per_process() -> int:
    """numba threads for this process: its share of the cores when a launcher (torchrun, `accelerate launch`) started
    `LOCAL_WORLD_SIZE` processes on this machine, at most `NUMBA_NUM_THREADS`, and never more than torch's intra-op
    threads (which `cpu_sharing.CpuShare` lowers while other processes keep cores busy): one thread count for both.
    OpenMP threads that outnumber the cores spin against each other: two 2-thread processes on 2 cores ran the
    Ti-size scan 9x slower (220 ms instead of 24) than with one thread each (30 ms)."""
    return min(_cores_per_process(), torch.get_num_threads())


class SelectiveScanNumbaFn(torch.autograd.Function):
    """y_t = <h_t, C_t> of h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t on CPU: u, dt, y (B D L); A (D N); B, C (B N L).

    The recurrence runs in fused numba kernels, one chunk of steps per call, with the decays exp(dt A) computed in
    the kernels by `fast_exp`. The backward is a hand-written reverse-time scan. Saved for it: the inputs and the state before every chunk
    (B D L/chunk N); a chunk's states are recomputed when the backward reaches it. Takes contiguous float32 or float64
    tensors of one dtype (see `gated_scan`).
    """

    @staticmethod
    def _chunks(shape: tuple[int, ...], state_size: int) -> list[tuple[int, int]]:
        """(start, stop) of the chunks of steps that the kernels process per call."""
        batch, channels, length = shape
        steps = scan_chunk_length(batch, channels, state_size, longest=1024)
        return [(start, min(start + steps, length)) for start in range(0, length, steps)]

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        u: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
    ) -> torch.Tensor:
        _compile_scan_kernels()
        numba.set_num_threads(numba_threads_per_process())  # per calling thread, so in forward and backward
        batch, channels, length = u.shape
        B_t, C_t = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()  # (B L N): B_t read at each step
        y = torch.empty_like(u)
        state = u.new_zeros(batch, channels, A.shape[1])
        chunks = SelectiveScanNumbaFn._chunks(u.shape, A.shape[1])
        checkpoints = u.new_empty(len(chunks), batch, channels, A.shape[1])
        u_np, dt_np, A_np, B_np, C_np = (t.detach().numpy() for t in (u, dt, A, B_t, C_t))
        for chunk, (start, stop) in enumerate(chunks):
            checkpoints[chunk] = state
            _scan_chunk_forward(u_np, dt_np, A_np, B_np, C_np, start, stop, state.numpy(), y.numpy())
        ctx.save_for_backward(u, dt, A, B_t, C_t, checkpoints)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        u, dt, A, B_t, C_t, checkpoints = ctx.saved_tensors
        numba.set_num_threads(numba_threads_per_process())
        batch, channels, length = u.shape
        # one (B L N) accumulator per thread for grad_B and grad_C, but never more than a quarter of the channels'
        groups = max(1, min(channels // 4, numba.get_num_threads()))
        grad_u, grad_dt = torch.empty_like(u), torch.empty_like(u)
        grad_state = u.new_zeros(batch, channels, A.shape[1])
        grad_A = torch.zeros(batch, channels, A.shape[1], dtype=torch.float64)
        grad_B, grad_C = (u.new_zeros(batch, groups, length, A.shape[1]) for _ in range(2))
        u_np, dt_np, A_np, B_np, C_np = (t.detach().numpy() for t in (u, dt, A, B_t, C_t))
        grad_y = grad_y.to(u.dtype).contiguous().numpy()
        outputs = [t.numpy() for t in (grad_state, grad_u, grad_dt, grad_A, grad_B, grad_C)]
        for chunk, (start, stop) in reversed(list(enumerate(SelectiveScanNumbaFn._chunks(u.shape, A.shape[1])))):
            _scan_chunk_backward(
                u_np, dt_np, A_np, B_np, C_np, start, stop, checkpoints[chunk].numpy(), grad_y, *outputs
            )
        return (
            grad_u,
            grad_dt,
            grad_A.sum(0).to(A.dtype),
            grad_B.sum(1).transpose(1, 2),
            grad_C.sum(1).transpose(1, 2),
        )
