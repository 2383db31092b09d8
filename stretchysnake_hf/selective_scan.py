# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Selective-scan operators (Mamba's S6 recurrence) with interchangeable backends."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SCAN_BACKENDS = ("auto", "reference", "numba", "chunked", "cuda")


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


_BACKEND_FUNCTIONS = {"reference": selective_scan_reference}


def resolve_backend(backend: str, device: torch.device) -> str:
    """Name of the backend that `backend` ("auto" or a name from `SCAN_BACKENDS`) stands for on `device`."""
    if backend not in SCAN_BACKENDS:
        raise ValueError(f"Unknown scan backend {backend!r}; choose one of {SCAN_BACKENDS}.")
    if backend == "auto":
        return "reference"
    if backend not in _BACKEND_FUNCTIONS:
        raise ImportError(f"The {backend!r} scan backend is not available in this installation.")
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
