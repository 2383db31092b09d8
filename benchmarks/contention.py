"""A training step next to other work on the same cores: how much slower than alone, and how that compares to a fair share.

The step is the demo's (`examples/demo.py`): StretchySnake with 64 channels and 4 blocks, batch 8, 8 frames of 64 px,
patch 16, forward + backward + fused AdamW (the Trainer's default), float32 on CPU. Each scenario runs the step in a
fresh process:

- alone;
- next to 1 and 2 busy processes (`while True: pass` in Python);
- next to a stream of short-lived processes (a loop starting `python -c pass` one after another), which is what a
  test runner, a build or a shell script does to a machine;
- alone with 1 thread (torch and numba), for the thread scaling of the step;
- alone, with 1 and with all threads, on a batch of one 1-frame clip (17 tokens instead of 1032): the step's fixed
  cost (Python, dispatch, kernel launches, the optimizer), which threads cannot shrink. With S that time and T1 the
  step's on 1 thread, no thread count n makes the step faster than S + (T1 - S) / n (Amdahl's law), the bound printed;
- alone, with 1 and with all threads, VideoMamba-Ti's training step on one 8x224 clip (the setting of
  `benchmarks/scaling.py`; `--ti-steps`): the thread scaling of a step whose ops are large enough to share out;
- alone, with 1 and with all threads, the machine itself (`machine_loads`): a numba kernel of arithmetic alone,
  split evenly over the threads, and a 2048 x 2048 float32 matmul. What they gain from the threads is what the cores
  give; a step that gains less loses the rest in software.

Every scenario runs twice, side by side: with all threads throughout (what training did before), and with
`stretchysnake_hf.cpu_sharing.CpuShare` updating the threads before each step (what `FlexibleTrainer` does on CPU).

Neighbours are started with this interpreter, end by themselves after `--neighbour-seconds`, and are stopped by their
own process ids as soon as the step's measurement ends. Times are medians over `--steps` steps after warm-up steps
(the median, not the fastest: under contention the typical step is what a user waits for), with the CPU time the
step's process used per step (threads that spin while they wait add CPU time but no work). Run by hand:

    python benchmarks/contention.py                       # 2 threads (the machine's cores), 30 steps
    python benchmarks/contention.py --threads 1 --steps 20
    python benchmarks/contention.py --env OMP_WAIT_POLICY=ACTIVE   # a variable set in the step's process

"Slowdown" is the median step time over the time alone; with one busy neighbour on 2 cores a fair share of the machine
gives the step 2/3 of it, so about 1.5x (2.0x is the target); with two, half of it (2x).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

_BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
_CHURN = (
    "import subprocess, sys, time\nend = time.monotonic() + {seconds}\n"
    "while time.monotonic() < end: subprocess.run([sys.executable, '-c', 'pass'])"
)


# The models whose training step the worker times: (preset overrides, frame size).
MODELS = {
    "demo": (dict(hidden_size=64, num_hidden_layers=4, image_size=64, patch_size=16, num_frames=8, num_labels=10), 64),
    "ti": (dict(image_size=224, num_frames=8, num_labels=400), 224),  # VideoMamba-Ti, as in benchmarks/scaling.py
}


def worker(
    steps: int,
    warmup: int,
    threads: int | None,
    share: bool,
    batch: int = 8,
    frames: int = 8,
    model_name: str = "demo",
) -> dict:
    """The training step of `MODELS[model_name]` on `batch` clips of `frames` frames, timed `steps` times after
    `warmup` steps, in this process. With `share`, each step first calls `CpuShare.update()` as `FlexibleTrainer`
    does, and warm-up lasts until it has measured twice."""
    import torch

    from stretchysnake_hf import StretchySnakeConfig, StretchySnakeForVideoClassification
    from stretchysnake_hf.cpu_sharing import CpuShare

    if threads is not None:
        torch.set_num_threads(threads)
    cpu_share = CpuShare() if share else None
    torch.manual_seed(0)
    overrides, size = MODELS[model_name]
    config = StretchySnakeConfig.from_preset("tiny", drop_path_rate=0.0, **overrides)
    model = StretchySnakeForVideoClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # the Trainer's default, adamw_torch_fused
    pixel_values = torch.randn(batch, frames, 3, size, size)
    labels = torch.arange(batch) % config.num_labels

    def step() -> None:
        if cpu_share is not None:
            cpu_share.update()
        model(pixel_values, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    settle = time.monotonic() + (2.2 * cpu_share.interval if cpu_share is not None else 0.0)
    for _ in range(warmup):
        step()
    while time.monotonic() < settle:
        step()
    times = []
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_end.ru_utime + cpu_end.ru_stime - cpu_start.ru_utime - cpu_start.ru_stime) / steps
    return {
        "median": statistics.median(times),
        "fastest": min(times),
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "busy_elsewhere": cpu_share.busy_elsewhere if cpu_share is not None else None,
    }


def machine_loads(threads: int | None) -> dict:
    """Seconds per run of two loads that only the cores limit, on `threads` torch and numba threads (default: all), in
    this process: "kernel", a numba kernel of float32 arithmetic in registers (no memory traffic) split into one
    equal part per CPU, and "matmul", a 2048 x 2048 float32 torch matmul. Best of 5 runs."""
    import numba
    import numpy as np
    import torch

    @numba.njit(parallel=True, fastmath=True)
    def arithmetic(out: np.ndarray, iterations: int) -> None:
        for part in numba.prange(out.shape[0]):
            values = np.full(64, np.float32(part))
            for _ in range(iterations):
                for lane in range(64):
                    values[lane] = values[lane] * np.float32(0.999) + np.float32(0.001)
            out[part] = values.sum()

    parts = np.zeros(os.cpu_count() or 1, np.float32)
    threads = threads or torch.get_num_threads()
    arithmetic(parts, 1)  # starts numba's threads, which resets the OpenMP thread count torch reads
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    left, right = torch.randn(2048, 2048), torch.randn(2048, 2048)
    loads = {"kernel": lambda: arithmetic(parts, 16_000_000 // len(parts)), "matmul": lambda: left @ right}
    seconds = {}
    for name, load in loads.items():
        load()
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            load()
            runs.append(time.perf_counter() - start)
        seconds[name] = min(runs)
    return {**seconds, "threads": torch.get_num_threads()}


def _start(code: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code.format(seconds=seconds)])


def _measure(
    args: argparse.Namespace,
    neighbours: list[str],
    threads: int | None,
    share: bool = False,
    clips: int = 8,
    frames: int = 8,
    model_name: str = "demo",
    steps: int | None = None,
    machine: bool = False,
) -> dict:
    """Starts the neighbours, waits a moment so they are running, runs the step of `MODELS[model_name]` on `clips`
    clips of `frames` frames `steps` times (default `args.steps`) in a fresh process (with `threads` torch and numba
    threads, when given; with `CpuShare` when `share`), stops them."""
    started = [_start(code, args.neighbour_seconds) for code in neighbours]
    try:
        if started:
            time.sleep(1.0)
        env = dict(os.environ, **dict(item.split("=", 1) for item in args.env))
        command = [
            sys.executable,
            __file__,
            "--worker",
            "--steps",
            str(steps or args.steps),
            "--warmup",
            str(args.warmup),
        ]
        command += ["--batch", str(clips), "--frames", str(frames), "--model", model_name]
        if share:
            command.append("--share")
        if machine:
            command.append("--machine")
        if threads is not None:
            command += ["--threads", str(threads)]
            env["NUMBA_NUM_THREADS"] = str(threads)
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    finally:
        for process in started:
            process.kill()
            process.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and numba threads in the step's process (default: all)"
    )
    parser.add_argument("--neighbour-seconds", type=float, default=300, help="lifetime limit of every neighbour")
    parser.add_argument("--env", nargs="*", default=[], help="NAME=VALUE set in the step's process only")
    parser.add_argument("--scenarios", type=int, default=4, help="run the first N scenarios only (1: alone)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--share", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--machine", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=sorted(MODELS), default="demo", help=argparse.SUPPRESS)
    parser.add_argument(
        "--ti-steps",
        type=int,
        default=10,
        help="steps of the VideoMamba-Ti 8x224 step for its thread scaling (0: skip)",
    )
    args = parser.parse_args()
    if args.worker and args.machine:
        print(json.dumps(machine_loads(args.threads)))
        return
    if args.worker:
        print(
            json.dumps(worker(args.steps, args.warmup, args.threads, args.share, args.batch, args.frames, args.model))
        )
        return

    scenarios = {
        "alone": [],
        "1 busy process": [_BUSY],
        "2 busy processes": [_BUSY, _BUSY],
        "stream of short-lived processes": [_CHURN],
    }
    names = list(scenarios)[: args.scenarios]
    rows = [
        (name, _measure(args, scenarios[name], args.threads), _measure(args, scenarios[name], args.threads, True))
        for name in names
    ]
    one_thread = _measure(args, [], 1) if args.threads != 1 else rows[0][1]
    fixed_one = _measure(args, [], 1, clips=1, frames=1)
    fixed_all = _measure(args, [], args.threads, clips=1, frames=1) if args.threads != 1 else fixed_one
    ti_threads = ((1,) if args.threads == 1 else (1, args.threads)) if args.ti_steps else ()
    ti = [_measure(args, [], count, clips=1, model_name="ti", steps=args.ti_steps) for count in ti_threads]
    machine = [_measure(args, [], count, machine=True) for count in ((1,) if args.threads == 1 else (1, args.threads))]
    alone, alone_shared = rows[0][1]["median"], rows[0][2]["median"]
    load = os.getloadavg()
    print(
        f"\nDemo model training step (64 channels, 4 blocks, batch 8, 8 x 64 px, patch 16, fused AdamW), "
        f"{rows[0][1]['threads']} torch threads, {os.cpu_count()} CPUs, env {' '.join(args.env) or '-'}; "
        f"median of {args.steps} steps; load average before the last scenario ended: {load[0]:.2f}\n"
    )
    print(
        "| next to | all threads: median ms | CPU ms per step | slowdown | CpuShare: median ms | CPU ms per step "
        "| threads | slowdown |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for name, fixed, shared in rows:
        print(
            f"| {name} | {fixed['median'] * 1e3:.0f} | {fixed['cpu'] * 1e3:.0f} | {fixed['median'] / alone:.2f}x "
            f"| {shared['median'] * 1e3:.0f} | {shared['cpu'] * 1e3:.0f} | {shared['threads']} "
            f"| {shared['median'] / alone:.2f}x |"
        )
    print(
        f"\nCpuShare alone costs {alone_shared / alone:.3f}x the time of all threads. Thread scaling, alone: 1 thread "
        f"{one_thread['median'] * 1e3:.0f} ms, {rows[0][1]['threads']} threads {alone * 1e3:.0f} ms: "
        f"{one_thread['median'] / alone:.2f}x. Slowdowns are against the time alone with all threads."
    )
    serial, single, threads = fixed_one["median"], one_thread["median"], rows[0][1]["threads"]
    print(
        f"Fixed cost: the step on one 1-frame clip takes {serial * 1e3:.1f} ms on 1 thread, "
        f"{fixed_all['median'] * 1e3:.1f} ms on {fixed_all['threads']}; with it, {threads} threads can make the step "
        f"at most {single / (serial + (single - serial) / threads):.2f}x faster than 1 thread (Amdahl's law)."
    )
    if args.ti_steps:
        print(
            f"VideoMamba-Ti's training step at 8x224 (batch 1, fused AdamW; the setting of benchmarks/scaling.py), "
            f"median of {args.ti_steps}: 1 thread {ti[0]['median'] * 1e3:.0f} ms, {ti[-1]['threads']} threads "
            f"{ti[-1]['median'] * 1e3:.0f} ms: {ti[0]['median'] / ti[-1]['median']:.2f}x."
        )
    print(
        f"The machine, 1 thread against {machine[-1]['threads']}: a numba kernel of arithmetic alone "
        f"{machine[0]['kernel'] / machine[-1]['kernel']:.2f}x ({machine[0]['kernel'] * 1e3:.0f} and "
        f"{machine[-1]['kernel'] * 1e3:.0f} ms), a 2048 x 2048 matmul {machine[0]['matmul'] / machine[-1]['matmul']:.2f}x "
        f"({machine[0]['matmul'] * 1e3:.1f} and {machine[-1]['matmul'] * 1e3:.1f} ms)."
    )


if __name__ == "__main__":
    main()
