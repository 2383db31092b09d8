# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Selective-scan operators (Mamba's S6 recurrence) with interchangeable backends.

Every backend takes mamba-ssm's arguments, computes what `selective_scan_reference` computes and returns the same:

- "reference": a plain sequential loop, the oracle of the tests;
- "numba": a fused CPU kernel, parallel over batch x channels, with a hand-written reverse-time backward;
- "chunked": portable pure torch, a loop over chunks with a log-depth scan inside each chunk;
- "cuda": mamba-ssm's `selective_scan_fn`, imported on first use (it needs a GPU to build and import).

Neither the forward nor the backward of the fast backends holds a (batch, channels, length, d_state) tensor: they
keep the state at chunk boundaries and recompute a chunk's states when the backward pass reaches it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch.amp import is_autocast_available
from transformers.utils import logging

try:
    import numba
except ImportError:  # the "numba" backend is then unavailable and "auto" runs "chunked" on CPU
    numba = None

logger = logging.get_logger(__name__)

SCAN_BACKENDS = ("auto", "reference", "numba", "chunked", "cuda")

# Elements of a chunk's (batch, channels, steps, d_state) tensors, which sets the steps per chunk (`_chunk_length`).
_CHUNK_ELEMENTS = 2**20


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Plain sequential selective scan, written for clarity; the oracle of every other backend.

    Shapes (mamba-ssm's convention): u, delta, z (B D L); A (D N); B, C (B N L); D, delta_bias (D).
    Computes in float32 (float64 stays float64) and returns u's dtype:

        dt_t = softplus(delta_t + delta_bias)            (softplus only if delta_softplus)
        h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t,   h_{-1} = 0, h_t of shape (B D N)
        y_t  = <h_t, C_t> + D * u_t
        out  = y * silu(z)                               (if z is given)
    """
    dtype_in = u.dtype
    compute_dtype = torch.float64 if dtype_in == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(compute_dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute_dtype)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)

    batch, channels, length = u.shape
    state = u.new_zeros(batch, channels, A.shape[1])
    outputs = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)  # (B D N)
        drive = delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]  # (B D N)
        state = decay * state + drive
        outputs.append((state * C[:, None, :, t]).sum(-1))  # (B D)
    y = torch.stack(outputs, dim=-1)  # (B D L)

    if D is not None:
        y = y + D.to(compute_dtype)[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.to(compute_dtype))
    return y.to(dtype_in)


def _chunk_length(batch: int, channels: int, state_size: int, longest: int) -> int:
    """Steps per chunk of the fast backends: about `_CHUNK_ELEMENTS` per (batch, channels, steps, d_state) tensor, as a
    multiple of 64 between 64 and `longest`. More steps mean fewer Python-level iterations, fewer mean less memory."""
    return min(max(_CHUNK_ELEMENTS // (batch * channels * state_size) // 64 * 64, 64), longest)


def _gated_scan(
    scan_core: Callable[..., torch.Tensor],
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> torch.Tensor:
    """`selective_scan_reference` around `scan_core(u, dt, A, B, C) -> <h_t, C_t>` (B D L), which gets contiguous
    float32 (or float64) tensors. The elementwise parts (bias, softplus, skip, gate) are left to torch's autograd:
    they only save (B D L) tensors."""
    dtype_in = u.dtype
    compute_dtype = torch.float64 if dtype_in == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(compute_dtype).contiguous() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute_dtype)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    # Autocast would run the chunks' einsums in bf16/fp16; the scan stays in compute_dtype.
    no_autocast = (
        torch.autocast(u.device.type, enabled=False) if is_autocast_available(u.device.type) else nullcontext()
    )
    with no_autocast:
        y = scan_core(u, delta, A, B, C)
    if D is not None:
        y = y + D.to(compute_dtype)[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.to(compute_dtype))
    return y.to(dtype_in)


if numba is not None:
    from .numba_math import FASTMATH, compiled_once_under_lock, fast_exp

    @numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
    def _scan_chunk_forward(u, dt, A, B, C, start, stop, state, y):
        """Advances `state` (b d n) through steps [start, stop) and writes y_t = <h_t, C_t> into y.

        u, dt, y (b d l); A (d n); B, C (b l n). One thread per (batch, channel).
        """
        batch, channels, state_size = state.shape
        for index in numba.prange(batch * channels):
            b, d = index // channels, index % channels
            h, A_d = state[b, d], A[d]
            for t in range(start, stop):
                dt_t = dt[b, d, t]
                dt_u = dt_t * u[b, d, t]
                B_t, C_t = B[b, t], C[b, t]
                y_t = 0.0
                for n in range(state_size):
                    h[n] = fast_exp(dt_t * A_d[n]) * h[n] + dt_u * B_t[n]
                    y_t += h[n] * C_t[n]
                y[b, d, t] = y_t

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
            b, group = index // groups, index % groups
            states = np.empty((steps + 1, state_size), dtype=u.dtype)  # h_{start-1}, ..., h_{stop-1}
            decays = np.empty((steps, state_size), dtype=u.dtype)  # exp(dt_t A) of the chunk's steps
            for d in range(group, channels, groups):
                A_d = A[d]
                states[0, :] = state[b, d, :]
                for i in range(steps):
                    t = start + i
                    dt_t = dt[b, d, t]
                    dt_u = dt_t * u[b, d, t]
                    for n in range(state_size):
                        decays[i, n] = fast_exp(dt_t * A_d[n])
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
                        grad_dt_t += grad_decay * A_d[n]
                        grad_A[b, d, n] += grad_decay * dt_t
                        grad_state[b, d, n] = grad_h * decays[i, n]
                    grad_u[b, d, t] = grad_dt_u * dt_t
                    grad_dt[b, d, t] = grad_dt_t + grad_dt_u * u_t

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
            _scan_chunk_backward(
                u, dt, A, B, C, 0, length, state, y, grad_state, grad_u, grad_dt, grad_A, grad_B, grad_C
            )


@functools.cache
def numba_threads_per_process() -> int:
    """numba threads for this process: its share of the cores when a launcher (torchrun, `accelerate launch`) started
    `LOCAL_WORLD_SIZE` processes on this machine, at most `NUMBA_NUM_THREADS`. OpenMP threads that outnumber the
    cores spin against each other: two 2-thread processes on 2 cores ran the Ti-size scan 9x slower (220 ms instead
    of 24) than with one thread each (30 ms)."""
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // local_processes))


class SelectiveScanNumbaFn(torch.autograd.Function):
    """y_t = <h_t, C_t> of h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t on CPU: u, dt, y (B D L); A (D N); B, C (B N L).

    The recurrence runs in fused numba kernels, one chunk of steps per call, with the decays exp(dt A) computed in
    the kernels by `fast_exp`. The backward is a hand-written reverse-time scan. Saved for it: the inputs and the state before every chunk
    (B D L/chunk N); a chunk's states are recomputed when the backward reaches it. Takes contiguous float32 or float64
    tensors of one dtype (see `_gated_scan`).
    """

    @staticmethod
    def _chunks(shape: tuple[int, ...], state_size: int) -> list[tuple[int, int]]:
        """(start, stop) of the chunks of steps that the kernels process per call."""
        batch, channels, length = shape
        steps = _chunk_length(batch, channels, state_size, longest=1024)
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


def selective_scan_numba_fn(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """`selective_scan_reference` on CPU tensors by fused numba kernels; same arguments and return."""
    return _gated_scan(SelectiveScanNumbaFn.apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _linear_scan(decay: torch.Tensor, drive: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """h_t = decay_t h_{t-1} + drive_t along dim 2 of (B D K N) tensors, h_{-1} = state (B D N); returns h (B D K N).

    A Hillis-Steele scan: log2(K) steps, each composing every affine map with the one `offset` steps earlier. It only
    multiplies decays in (0, 1], so nothing under- or overflows into a NaN however long the sequence.
    """
    decay, drive = decay.clone(), drive.clone()
    offset = 1
    while offset < decay.shape[2]:
        drive[:, :, offset:] = drive[:, :, offset:] + decay[:, :, offset:] * drive[:, :, :-offset]
        decay[:, :, offset:] = decay[:, :, offset:] * decay[:, :, :-offset]
        offset *= 2
    return drive + decay * state[:, :, None]


class SelectiveScanChunkedFn(torch.autograd.Function):
    """y_t = <h_t, C_t> of h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t in portable torch: u, dt, y (B D L); A (D N);
    B, C (B N L).

    A loop over chunks of K steps (`_chunk_length`, at most 256), each scanned by `_linear_scan`. The backward is
    written out: per chunk, in reverse, it recomputes the chunk's states from the state saved before it, runs the
    reverse recurrence g_h_t = g_y_t C_t + exp(dt_{t+1} A) g_h_{t+1} with the same scan, and forms the gradients.
    Saved: the inputs and one (B D N) state per chunk; the (B D K N) tensors exist for one chunk at a time.
    """

    @staticmethod
    def _chunks(shape: tuple[int, ...], state_size: int) -> list[slice]:
        """The chunks of steps, as slices of the length axis."""
        batch, channels, length = shape
        steps = _chunk_length(batch, channels, state_size, longest=256)
        return [slice(start, start + steps) for start in range(0, length, steps)]

    @staticmethod
    def _chunk_tensors(
        u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, chunk: slice
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The chunk's decays exp(dt A) and drives dt u B, both (B D K N)."""
        decay = torch.exp(dt[:, :, chunk, None] * A[:, None, :])
        drive = (dt[:, :, chunk] * u[:, :, chunk])[..., None] * B[:, :, chunk].transpose(1, 2)[:, None]
        return decay, drive

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        u: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
    ) -> torch.Tensor:
        chunks = SelectiveScanChunkedFn._chunks(u.shape, A.shape[1])
        states = u.new_zeros(len(chunks) + 1, *u.shape[:2], A.shape[1])  # the state before each chunk, and the last
        outputs = []
        for index, chunk in enumerate(chunks):
            h = _linear_scan(*SelectiveScanChunkedFn._chunk_tensors(u, dt, A, B, chunk), states[index])
            outputs.append(torch.einsum("bdkn,bnk->bdk", h, C[:, :, chunk]))
            states[index + 1] = h[:, :, -1]
        ctx.save_for_backward(u, dt, A, B, C, states[:-1])
        return torch.cat(outputs, dim=-1)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        u, dt, A, B, C, states = ctx.saved_tensors
        grad_u, grad_dt, grad_B, grad_C = (torch.empty_like(t) for t in (u, dt, B, C))
        grad_A = torch.zeros_like(A)
        grad_state = u.new_zeros(states.shape[1:])  # exp(dt_{t+1} A) g_h_{t+1} after the current chunk
        for index, chunk in reversed(list(enumerate(SelectiveScanChunkedFn._chunks(u.shape, A.shape[1])))):
            decay, drive = SelectiveScanChunkedFn._chunk_tensors(u, dt, A, B, chunk)
            h = _linear_scan(decay, drive, states[index])
            h_previous = torch.cat([states[index][:, :, None], h[:, :, :-1]], dim=2)
            grad_y_chunk, C_chunk, B_chunk = grad_y[:, :, chunk], C[:, :, chunk], B[:, :, chunk]
            # the reverse recurrence, as a forward one over flipped time; exp(dt_{t+1} A) is 1 past the chunk's end
            next_decay = torch.cat([decay[:, :, 1:], torch.ones_like(decay[:, :, :1])], dim=2)
            direct = grad_y_chunk[..., None] * C_chunk.transpose(1, 2)[:, None]  # g_y_t C_t (B D K N)
            grad_h = _linear_scan(next_decay.flip(2), direct.flip(2), grad_state).flip(2)
            grad_state = decay[:, :, 0] * grad_h[:, :, 0]
            grad_C[:, :, chunk] = torch.einsum("bdk,bdkn->bnk", grad_y_chunk, h)
            dt_u = dt[:, :, chunk] * u[:, :, chunk]
            grad_B[:, :, chunk] = torch.einsum("bdkn,bdk->bnk", grad_h, dt_u)
            grad_dt_u = torch.einsum("bdkn,bnk->bdk", grad_h, B_chunk)
            grad_decay = grad_h * h_previous * decay  # d/d(dt A) of exp(dt A) h_{t-1}
            grad_A += torch.einsum("bdkn,bdk->dn", grad_decay, dt[:, :, chunk])
            grad_u[:, :, chunk] = grad_dt_u * dt[:, :, chunk]
            grad_dt[:, :, chunk] = grad_dt_u * u[:, :, chunk] + torch.einsum("bdkn,dn->bdk", grad_decay, A)
        return grad_u, grad_dt, grad_A, grad_B, grad_C


def selective_scan_chunked_fn(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """`selective_scan_reference` in portable torch, a loop over chunks vectorized inside; same arguments and return."""
    return _gated_scan(SelectiveScanChunkedFn.apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


@functools.cache
def _mamba_ssm_kernels() -> tuple[Callable, Callable] | None:
    """mamba-ssm's `(selective_scan_fn, mamba_inner_fn)`, imported on first use; None when not installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn, selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn, mamba_inner_fn


@functools.cache
def _causal_conv1d_kernel() -> Callable | None:
    """causal-conv1d's `causal_conv1d_fn`, imported on first use; None when not installed."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except ImportError:
        return None
    return causal_conv1d_fn


def selective_scan_cuda_fn(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """`selective_scan_reference` on CUDA tensors by mamba-ssm's `selective_scan_fn`; same arguments and return."""
    selective_scan_fn, _ = _mamba_ssm_kernels()
    return selective_scan_fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


_BACKEND_FUNCTIONS = {
    "reference": selective_scan_reference,
    "numba": selective_scan_numba_fn,
    "chunked": selective_scan_chunked_fn,
    "cuda": selective_scan_cuda_fn,
}


def cuda_kernels_available() -> bool:
    """Whether mamba-ssm and causal-conv1d import, so the fused `mamba_inner` path can run on CUDA tensors."""
    return _mamba_ssm_kernels() is not None and _causal_conv1d_kernel() is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """Name of the backend that `backend` ("auto" or a name from `SCAN_BACKENDS`) stands for on `device`.

    "auto" picks "cuda" on CUDA tensors when mamba-ssm imports, "numba" on CPU when numba imports, and "chunked"
    otherwise, and logs its choice once. A backend asked for by name raises `ImportError` (with the install command)
    when its package is missing and `ValueError` when it cannot run on `device`.
    """
    if backend not in SCAN_BACKENDS:
        raise ValueError(f"Unknown scan backend {backend!r}; choose one of {SCAN_BACKENDS}.")
    device = torch.device(device)
    if backend == "auto":
        if device.type == "cuda" and _mamba_ssm_kernels() is not None:
            resolved = "cuda"
        elif device.type == "cpu" and numba is not None:
            resolved = "numba"
        else:
            resolved = "chunked"
            fast, package = ("cuda", "mamba-ssm") if device.type == "cuda" else ("numba", "numba")
            if device.type in ("cuda", "cpu"):
                logger.warning_once(
                    f"The {fast!r} selective-scan backend needs {package}, which is not installed; falling back to "
                    f"the slower pure-torch 'chunked' scan. Install it with `pip install {package}`."
                )
        logger.info_once(f"Selective scan on {device.type}: using the {resolved!r} backend.")
        return resolved
    if backend == "numba":
        if numba is None:
            raise ImportError("The 'numba' scan backend needs numba: `pip install numba`.")
        if device.type != "cpu":
            raise ValueError(f"The 'numba' scan backend runs on CPU tensors; got tensors on {device}.")
    if backend == "cuda":
        if _mamba_ssm_kernels() is None:
            raise ImportError(
                "The 'cuda' scan backend needs mamba-ssm (and a GPU): `pip install 'stretchysnake-hf[cuda]'` "
                "(or `pip install mamba-ssm causal-conv1d`)."
            )
        if device.type != "cuda":
            raise ValueError(f"The 'cuda' scan backend runs on CUDA tensors; got tensors on {device}.")
    return backend


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Selective scan with mamba-ssm's arguments (see `selective_scan_reference`), run by `backend`."""
    scan = _BACKEND_FUNCTIONS[resolve_backend(backend, u.device)]
    return scan(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


def causal_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str | None = None
) -> torch.Tensor:
    """Causal depthwise convolution, x (B D L), weight (D W), bias (D), activation None or "silu"; returns (B D L).

    Runs causal-conv1d's kernel on CUDA tensors when it is installed, a grouped torch conv with W - 1 steps of left
    padding otherwise.
    """
    kernel = _causal_conv1d_kernel() if x.is_cuda else None
    if kernel is not None:
        return kernel(x, weight, bias, activation=activation)
    out = F.conv1d(F.pad(x, (weight.shape[-1] - 1, 0)), weight[:, None, :], bias, groups=x.shape[1])
    return F.silu(out) if activation == "silu" else out


def mamba_inner_cuda(
    xz: torch.Tensor,
    conv1d_weight: torch.Tensor,
    conv1d_bias: torch.Tensor | None,
    x_proj_weight: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    out_proj_weight: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    delta_bias: torch.Tensor,
) -> torch.Tensor:
    """One causal Mamba pass fused by mamba-ssm's `mamba_inner_fn`: conv, x_proj, dt_proj, scan, gate and out_proj.

    xz (B 2D L), conv1d_weight (D 1 W), x_proj_weight (R+2N D), dt_proj_weight (D R), out_proj_weight (H D),
    A (D N), D and delta_bias (D, float32); returns (B L H). Needs `cuda_kernels_available()` and CUDA tensors.
    """
    _, mamba_inner_fn = _mamba_ssm_kernels()
    return mamba_inner_fn(
        xz, conv1d_weight, conv1d_bias, x_proj_weight, dt_proj_weight, out_proj_weight, None, A, None, None, D,
        delta_bias=delta_bias, delta_softplus=True,
    )  # fmt: skip
