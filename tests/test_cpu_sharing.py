"""Sharing the CPU: the thread rule, the measurement of other processes' load, and a real busy neighbour."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stretchysnake_hf import cpu_sharing, selective_scan
from stretchysnake_hf.cpu_sharing import CpuShare, threads_for_idle_cores
from stretchysnake_hf.selective_scan import cpu_quota


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
    monkeypatch.setattr(cpu_sharing, "_busy_seconds", lambda cpus: clock.machine)
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


def test_only_the_cpus_this_process_may_use_count(monkeypatch):
    """On a 4-CPU machine where this process may run on CPUs 1 and 3 (a container's cpuset), work on CPUs 0 and 2
    takes nothing from it, and guest time (inside user time in the kernel's counts) is not counted twice."""
    fields = ("user", "nice", "system", "idle", "iowait", "guest", "guest_nice")
    CpuTimes = collections.namedtuple("CpuTimes", fields)
    busy_for = {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}

    def cpu_times(percpu):
        assert percpu
        return [CpuTimes(busy, 0, 0, 100 - busy, 0, busy / 2, 0) for busy in busy_for.values()]

    wall = iter([0.0, 10.0, 20.0])
    monkeypatch.setattr(cpu_sharing.psutil, "cpu_times", cpu_times)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1, 3}, raising=False)
    monkeypatch.setattr(selective_scan, "cpu_quota", lambda: None)
    monkeypatch.setattr(cpu_sharing.time, "monotonic", lambda: next(wall))
    monkeypatch.setattr(cpu_sharing, "_own_cpu_seconds", lambda process: 0.0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        share = CpuShare(interval=1.0)
        assert share.cores == 2
        share.update()
        busy_for.update({0: 10.0, 2: 10.0})  # 10 s of work on each CPU outside the set
        assert share.update() == 2 and share.busy_elsewhere == 0.0
        busy_for.update({3: 10.0})  # and on one of this process's CPUs
        assert share.update() == 1 and share.busy_elsewhere == pytest.approx(1.0)
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


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_cpu_quota_is_the_smallest_limit_of_the_cgroup_and_its_ancestors(tmp_path):
    """cgroup v2: a job's own cgroup has no limit, its parent allows 1.5 CPUs, the root none."""
    write_tree(tmp_path, {
        "self": "0::/user.slice/job\n",
        "fs/cpu.max": "max 100000\n",
        "fs/user.slice/cpu.max": "150000 100000\n",
        "fs/user.slice/job/cpu.max": "max 100000\n",
    })  # fmt: skip
    assert cpu_quota(tmp_path / "self", tmp_path / "fs") == 1.5
    (tmp_path / "fs/user.slice/job/cpu.max").write_text("50000 100000\n")
    assert cpu_quota(tmp_path / "self", tmp_path / "fs") == 0.5
    (tmp_path / "fs/user.slice/job/cpu.max").write_text("garbled")  # unreadable: the other limits hold
    assert cpu_quota(tmp_path / "self", tmp_path / "fs") == 1.5


def test_cpu_quota_of_a_cgroup_v1_container(tmp_path):
    """cgroup v1 without a cgroup namespace: /proc/self/cgroup names the host's path, and the container sees its own
    cgroup (limited to 1 CPU by `docker --cpus 1`) at the mount's root; the cpuacct line is not the cpu controller."""
    write_tree(tmp_path, {
        "self": "4:cpuacct:/docker/abc\n3:cpu:/docker/abc\n2:cpuset:/docker/abc\n1:name=systemd:/docker/abc\n",
        "fs/cpu/cpu.cfs_quota_us": "100000\n",
        "fs/cpu/cpu.cfs_period_us": "100000\n",
        "fs/cpuacct/cpu.cfs_quota_us": "20000\n",
        "fs/cpuacct/cpu.cfs_period_us": "100000\n",
    })  # fmt: skip
    assert cpu_quota(tmp_path / "self", tmp_path / "fs") == 1.0
    (tmp_path / "fs/cpu/cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_quota(tmp_path / "self", tmp_path / "fs") is None
    assert cpu_quota(tmp_path / "missing", tmp_path / "fs") is None


@pytest.mark.parametrize(("quota", "expected"), [(None, 4), (1.0, 1), (1.5, 2), (0.2, 1), (16.0, 4)])
def test_a_cpu_quota_caps_the_cores_a_process_uses(monkeypatch, quota, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(selective_scan, "cpu_quota", lambda: quota)
    assert selective_scan.usable_cpu_count() == expected
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        share = CpuShare()
        assert share.cores == expected and torch.get_num_threads() == 4  # constructing it changes nothing
        assert share.update() == expected  # the first step already runs on the cores the quota allows
    finally:
        torch.set_num_threads(threads)
