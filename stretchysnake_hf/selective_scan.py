# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Selective-scan operators (Mamba's S6 recurrence) with interchangeable backends.

Every backend takes mamba-ssm's arguments, computes what `selective_scan_reference` computes and returns the same:

- "reference": a plain sequential loop, the oracle of the tests;
- "numba": a fused CPU kernel, parallel over batch x channels, with a hand-written reverse-time backward
  (`scan_numba`, imported on first use, so this module and the model load without numba);
- "chunked": portable pure torch, a loop over chunks with a log-depth scan inside each chunk;
- "cuda": mamba-ssm's `selective_scan_fn`, imported on first use (it needs a GPU to build and import).

Neither the forward nor the backward of the fast backends holds a (batch, channels, length, d_state) tensor: they
keep the state at chunk boundaries and recompute a chunk's states when the backward pass reaches it.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.amp import is_autocast_available
from transformers.utils import logging

logger = logging.get_logger(__name__)

SCAN_BACKENDS = ("auto", "reference", "numba", "chunked", "cuda")

NUMBA_MISSING = "The 'numba' scan backend and the fused CPU inference need numba: `pip install numba`."


def usable_cpus() -> list[int]:
    """The CPUs this process may run on: its affinity mask, which `taskset`, container cpusets and job schedulers
    (Slurm, Kubernetes) narrow to a part of the machine; every CPU where the platform has no affinity mask."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_quota(
    proc_cgroup: str | os.PathLike = "/proc/self/cgroup", root: str | os.PathLike = "/sys/fs/cgroup"
) -> float | None:
    """CPUs' worth of time that this process's cgroup and its ancestors allow it (`docker --cpus`, Kubernetes CPU
    limits): the smallest quota / period among them, in cgroup v2 (`cpu.max`) and v1 (`cpu.cfs_quota_us`); None where
    none is set or the files cannot be read. A container sees its own cgroup at `root`, so every ancestor of the
    listed path, up to `root` itself, is read."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            folders, files = [Path(root)], ("cpu.max",)
        elif "cpu" in controllers.split(","):
            folders, files = [Path(root, "cpu"), Path(root, controllers)], ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        parts = Path(path).relative_to("/").parts
        for folder in dict.fromkeys(folders):
            for depth in range(len(parts) + 1):
                quotas.append(_read_quota(folder.joinpath(*parts[:depth]), files))
    quotas = [quota for quota in quotas if quota is not None]
    return min(quotas) if quotas else None


def _read_quota(folder: Path, files: tuple[str, ...]) -> float | None:
    """quota / period from `cpu.max` ("max 100000" or "150000 100000") or v1's two files ("-1" for no limit); None
    where there is no limit or no readable one."""
    try:
        quota, period = " ".join(folder.joinpath(name).read_text() for name in files).split()[:2]
        return None if quota in ("max", "-1") else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def usable_cpu_count() -> int:
    """How many CPUs this process can keep busy: its affinity mask (`usable_cpus`), at most its cgroup's CPU quota
    rounded up (`cpu_quota`). Threads beyond it would only take turns, and wait for each other at every barrier."""
    cpus, quota = len(usable_cpus()), cpu_quota()
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


def cores_per_process() -> int:
    """This process's share of `usable_cpu_count`: divided among the `LOCAL_WORLD_SIZE` processes that a launcher
    (torchrun, `accelerate launch`) started on this machine, which all run at once; at least 1."""
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, usable_cpu_count() // local_processes)


# Elements of a chunk's (batch, channels, steps, d_state) tensors, which sets the steps per chunk (`scan_chunk_length`).
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


def scan_chunk_length(batch: int, channels: int, state_size: int, longest: int) -> int:
    """Steps per chunk of the fast backends: about `_CHUNK_ELEMENTS` per (batch, channels, steps, d_state) tensor, as a
    multiple of 64 between 64 and `longest`. More steps mean fewer Python-level iterations, fewer mean less memory."""
    return min(max(_CHUNK_ELEMENTS // (batch * channels * state_size) // 64 * 64, 64), longest)


def gated_scan(
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

    A loop over chunks of K steps (`scan_chunk_length`, at most 256), each scanned by `_linear_scan`. The backward is
    written out: per chunk, in reverse, it recomputes the chunk's states from the state saved before it, runs the
    reverse recurrence g_h_t = g_y_t C_t + exp(dt_{t+1} A) g_h_{t+1} with the same scan, and forms the gradients.
    Saved: the inputs and one (B D N) state per chunk; the (B D K N) tensors exist for one chunk at a time.
    """

    @staticmethod
    def _chunks(shape: tuple[int, ...], state_size: int) -> list[slice]:
        """The chunks of steps, as slices of the length axis."""
        batch, channels, length = shape
        steps = scan_chunk_length(batch, channels, state_size, longest=256)
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
    return gated_scan(SelectiveScanChunkedFn.apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


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
    """`selective_scan_reference` on CPU tensors by fused numba kernels (`scan_numba`, imported on first use); same
    arguments and return."""
    from .scan_numba import SelectiveScanNumbaFn

    return gated_scan(SelectiveScanNumbaFn.apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _scan_on_meta(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, **_: Any
) -> torch.Tensor:
    """The scan on meta tensors, which hold shapes only: its output's shape, without running a step, so a meta forward
    (`flops.count_flops`) costs the same at any sequence length."""
    return torch.empty_like(u)


_BACKEND_FUNCTIONS = {
    "meta": _scan_on_meta,
    "reference": selective_scan_reference,
    "numba": selective_scan_numba_fn,
    "chunked": selective_scan_chunked_fn,
    "cuda": selective_scan_cuda_fn,
}


@functools.cache
def numba_available() -> bool:
    """Whether numba is installed; checked without importing it (it is imported where a numba kernel runs)."""
    return importlib.util.find_spec("numba") is not None


def cuda_kernels_available() -> bool:
    """Whether mamba-ssm and causal-conv1d import, so the fused `mamba_inner` path can run on CUDA tensors."""
    return _mamba_ssm_kernels() is not None and _causal_conv1d_kernel() is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """Name of the backend that `backend` ("auto" or a name from `SCAN_BACKENDS`) stands for on `device`.

    "auto" picks "cuda" on CUDA tensors when mamba-ssm imports, "numba" on CPU when numba imports, and "chunked"
    otherwise, and logs its choice once. A backend asked for by name raises `ImportError` (with the install command)
    when its package is missing and `ValueError` when it cannot run on `device`. On the meta device every backend
    stands for "meta" (`_scan_on_meta`), which runs no step.
    """
    if backend not in SCAN_BACKENDS:
        raise ValueError(f"Unknown scan backend {backend!r}; choose one of {SCAN_BACKENDS}.")
    device = torch.device(device)
    if device.type == "meta":
        return "meta"
    if backend == "auto":
        if device.type == "cuda" and _mamba_ssm_kernels() is not None:
            resolved = "cuda"
        elif device.type == "cpu" and numba_available():
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
        if not numba_available():
            raise ImportError(NUMBA_MISSING)
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
