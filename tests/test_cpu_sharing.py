"""Sharing the CPU: the thread rule, the measurement of other processes' load, and a real busy neighbour."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from stretchysnake_hf import cpu_sharing
from stretchysnake_hf.cpu_sharing import CpuShare, threads_for_idle_cores


@pytest.mark.parametrize(
    "max_threads, cores, busy, expected",
    [(2, 2, 0.0, 2), (2, 2, 0.4, 2), (2, 2, 0.6, 1), (2, 2, 1.0, 1), (2, 2, 2.0, 1), (8, 8, 2.7, 5), (4, 8, 1, 4)],
)
def test_threads_are_the_cores_left_idle(max_threads, cores, busy, expected):
    assert threads_for_idle_cores(max_threads, cores, busy) == expected


class FakeClock:
    """Wall time, the machine's busy CPU seconds and this process's CPU seconds, advanced by hand."""

    def __init__(self) -> None:
        self.wall = self.machine = self.own = 0.0

    def advance(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.wall += seconds
        self.own += seconds * own_cores
        self.machine += seconds * (own_cores + other_cores)


def test_cpu_share_follows_the_load_of_other_processes(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(cpu_sharing.time, "monotonic", lambda: clock.wall)
    monkeypatch.setattr(cpu_sharing, "_machine_busy_seconds", lambda: clock.machine)
    monkeypatch.setattr(cpu_sharing, "_own_cpu_seconds", lambda process: clock.own)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        share = CpuShare(interval=2.0)
        share.cores = 4
        assert share.update() == 4  # the first call only starts the measurement
        clock.advance(1.0, own_cores=4, other_cores=2)
        assert share.update() == 4  # within the interval: nothing changes
        clock.advance(1.5, own_cores=4, other_cores=2)
        assert share.update() == 2 and share.busy_elsewhere == pytest.approx(2.0)
        clock.advance(2.0, own_cores=2, other_cores=3.2)
        assert share.update() == 1
        clock.advance(2.0, own_cores=1, other_cores=0.1)
        assert share.update() == 4  # the neighbours are gone: every thread back, never more than at the start
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")
def test_a_busy_neighbour_is_measured_and_leaves_this_process_fewer_threads():
    threads = torch.get_num_threads()
    busy = "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end: pass"
    neighbour = subprocess.Popen([sys.executable, "-c", busy])
    try:
        torch.set_num_threads(os.cpu_count())
        share = CpuShare(interval=0.5)
        share.update()
        time.sleep(0.7)
        assert share.update() <= os.cpu_count() - 1
        assert share.busy_elsewhere >= 0.7  # at least the neighbour's core (other tests may add more)
    finally:
        neighbour.kill()
        neighbour.wait()
        torch.set_num_threads(threads)


def test_the_trainer_callback_gives_back_its_threads_when_training_ends():
    from stretchysnake_hf.flexible_training import _CpuShareCallback

    threads = torch.get_num_threads()
    try:
        callback = _CpuShareCallback()
        torch.set_num_threads(1)  # as CpuShare does next to a busy neighbour
        callback.on_train_end(None, None, None)
        assert torch.get_num_threads() == callback.share.max_threads == threads
    finally:
        torch.set_num_threads(threads)
