# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Sharing the CPU with other processes: train on the cores they leave idle.

A training step on CPU runs hundreds of parallel regions, each ending at a barrier that waits for every thread.
When another process keeps a core busy, the thread on that core gets a fraction of it, and the whole step waits for
it at every barrier while the other threads spin: measured on 2 cores, one busy neighbour made the demo's training
step 4x-17x slower where a fair share costs under 2x. `CpuShare.update()`, called once per step, measures how many
cores other processes used since its last measurement (the machine's busy CPU time minus this process's, over the
wall time) and sets torch's intra-op threads, which the numba kernels follow (`scan_numba.numba_threads_per_process`),
to the cores left: `threads_for_idle_cores`. Alone, the process keeps every thread it started with.
"""

from __future__ import annotations

import os
import time

import psutil
import torch


def threads_for_idle_cores(max_threads: int, cores: int, busy_elsewhere: float) -> int:
    """`max(1, min(max_threads, cores - round(busy_elsewhere)))`: the cores other processes leave idle."""
    return max(1, min(max_threads, cores - round(busy_elsewhere)))


def _machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


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
        self.cores = os.cpu_count() or 1
        self.busy_elsewhere = 0.0
        self._process = psutil.Process()
        self._last: tuple[float, float, float] | None = None

    def _sample(self) -> tuple[float, float, float]:
        return time.monotonic(), _machine_busy_seconds(), _own_cpu_seconds(self._process)

    def update(self) -> int:
        """Measure (once per `interval`) and set the thread count; returns torch's threads."""
        now = self._sample()
        if self._last is None:
            self._last = now
        elif now[0] - self._last[0] >= self.interval:
            wall, machine, own = (current - previous for current, previous in zip(now, self._last, strict=True))
            self.busy_elsewhere = max(0.0, (machine - own) / wall)
            self._last = now
            threads = threads_for_idle_cores(self.max_threads, self.cores, self.busy_elsewhere)
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)
        return torch.get_num_threads()
