# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Peak resident memory over a stretch of a benchmark worker's life (Linux): reset, run, read."""

from __future__ import annotations

import ctypes
from pathlib import Path


def resident_bytes(field: str = "VmRSS") -> int:
    """A memory field of /proc/self/status in bytes: "VmRSS" (resident now) or "VmHWM" (peak resident)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_resident() -> int:
    """Returns the memory glibc keeps after frees to the system, sets the peak resident size (VmHWM) to the current
    one (Linux >= 4.0) and returns that size: `resident_bytes("VmHWM")` minus it is then the peak of what follows."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return resident_bytes()
