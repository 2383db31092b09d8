# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Sharing the CPU with other processes: train on the cores they leave idle.

A training step on CPU runs hundreds of parallel regions, each ending at a barrier that waits for every thread. When
another process keeps a core busy, the thread on that core gets a fraction of it, and the whole step waits for it at
every barrier while the other threads spin: measured on 2 cores, one busy neighbour made the demo's training step
4x-17x slower where a fair share costs under 2x. `CpuShare.update()`, called once per step, measures how many of the
cores this process may run on (`selective_scan.usable_cpus`: all of them, or the part of the machine that a container
or job scheduler gives it; no more than its cgroup's CPU quota, `selective_scan.usable_cpu_count`) other processes
used since its last measurement (their busy CPU time minus this process's, over the wall time) and sets torch's
intra-op threads, which the numba kernels follow (`scan_numba.numba_threads_per_process`), to the cores left:
`threads_for_idle_cores`. Alone, the process keeps every thread it started with, up to the cores it may use.
`FlexibleTrainer` updates it before every training step, `evaluation.evaluate_scales` before every batch of a grid,
and `inference.predict` once, before its forward pass (the first update fits the threads to the cores within the
quota). Each gives the threads back when it ends (`CpuShare.restore()`; `with sharing_cpu(...)` updates on entry
and restores on exit).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection

import psutil
import torch

from .selective_scan import usable_cpu_count, usable_cpus


def threads_for_idle_cores(max_threads: int, cores: int, busy_elsewhere: float) -> int:
    """`max(1, min(max_threads, cores - round(busy_elsewhere)))`: the cores other processes leave idle."""
    return max(1, min(max_threads, cores - round(busy_elsewhere)))


def _busy_seconds(cpus: Collection[int]) -> float:
    """CPU seconds the CPUs numbered `cpus` spent busy since boot: all but idle and I/O wait, and without guest time,
    which the kernel already counts in user time."""
    idle_or_counted_twice = ("idle", "iowait", "guest", "guest_nice")
    return sum(
        sum(times) - sum(getattr(times, field, 0.0) for field in idle_or_counted_twice)
        for cpu, times in enumerate(psutil.cpu_times(percpu=True))
        if cpu in cpus
    )


def _own_cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class CpuShare:
    """Keeps torch's intra-op threads at the cores other processes leave idle (see the module docstring).

    Args:
        max_threads: the most threads to use (default: torch's threads when created).
        interval: seconds between measurements; `update()` calls in between change nothing.
    """

    def __init__(self, max_threads: int | None = None, interval: float = 2.0) -> None:
        self.max_threads = max_threads or torch.get_num_threads()
        self.interval = interval
        self.cpus = frozenset(usable_cpus())  # other processes' work elsewhere on the machine takes none of these
        self.cores = usable_cpu_count()  # fewer than the CPUs under a cgroup CPU quota
        self.busy_elsewhere = 0.0
        self._process = psutil.Process()
        self._last: tuple[float, float, float] | None = None

    def _sample(self) -> tuple[float, float, float]:
        return time.monotonic(), _busy_seconds(self.cpus), _own_cpu_seconds(self._process)

    def update(self) -> int:
        """Measure (once per `interval`) and set the thread count; returns torch's threads. The first call, before any
        measurement, sets the threads to the cores this process may use (fewer than `max_threads` under a quota)."""
        now = self._sample()
        if self._last is None:
            self._last = now
            self._set_threads(threads_for_idle_cores(self.max_threads, self.cores, 0.0))
        elif now[0] - self._last[0] >= self.interval:
            wall, machine, own = (current - previous for current, previous in zip(now, self._last, strict=True))
            self.busy_elsewhere = max(0.0, (machine - own) / wall)
            self._last = now
            self._set_threads(threads_for_idle_cores(self.max_threads, self.cores, self.busy_elsewhere))
        return torch.get_num_threads()

    def restore(self) -> None:
        """Give torch back the threads this share started with (`max_threads`)."""
        self._set_threads(self.max_threads)

    def __enter__(self) -> CpuShare:
        self.update()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()

    @staticmethod
    def _set_threads(threads: int) -> None:
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)


def sharing_cpu(enabled: bool) -> contextlib.AbstractContextManager[CpuShare | None]:
    """A `CpuShare` that fits the threads on entry and gives them back on exit where `enabled` (the caller runs on
    CPU and wants sharing), else a context that yields None and changes nothing."""
    return CpuShare() if enabled else contextlib.nullcontext()
