# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Selective-scan benchmark: forward and forward+backward time and peak memory of every available scan backend, of
the "reference" loop and of transformers' `MambaMixer` CPU fallback, side by side, as ratios against the latter.

Sizes: VideoMamba-Ti, one direction of one layer: batch 2, hidden 192 (384 scan channels), d_state 16, at 1,569 tokens
(8 frames at 224 px) and 12,545 tokens (64 frames). `MambaMixer` is a whole mixer (projections, conv and scan); the
scans get the inputs that mixer's scan sees. Each measurement runs in a fresh process, which reports the increase of
its peak resident memory over the inputs (Linux `VmHWM`, reset through `/proc/self/clear_refs`) and the fastest of a
few runs after the first. Runs whose autograd is quadratic in the length are skipped at 12,545 and marked so.

Run by hand: `python benchmarks/scan.py` (prints a Markdown table; about 5 minutes on 2 cores, most of it
`MambaMixer`'s forward+backward at 1,569 tokens). On a GPU, `python benchmarks/scan.py --device cuda` times the
backends that run there ("chunked", and "cuda" when mamba-ssm is installed) against `MambaMixer` on the GPU (which
uses mamba-ssm's kernels itself when they import); peak memory is then `torch.cuda.max_memory_allocated` above the
inputs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from process_memory import reset_peak_resident, resident_bytes

BATCH, HIDDEN, STATE = 2, 192, 16
CHANNELS = 2 * HIDDEN
LENGTHS = (1569, 12545)
CASES = ("MambaMixer fallback", "reference", "numba", "chunked", "cuda")
MODES = ("forward", "forward+backward")
# Autograd through a per-step loop costs time quadratic in the length (each step's slice of a whole-sequence tensor
# gets a whole-sequence gradient): ~64x the 1,569-token time at 12,545 tokens, i.e. minutes to hours.
SKIPPED = {("MambaMixer fallback", "forward+backward", 12545), ("reference", "forward+backward", 12545)}


def _workload(case: str, mode: str, length: int, device: str, batch: int = BATCH) -> Callable[[], None]:
    """A closure running `case` once in `mode` on fresh-gradient inputs of `length` tokens on `device`."""
    generator = torch.Generator().manual_seed(0)
    if case == "MambaMixer fallback":
        from transformers import MambaConfig
        from transformers.models.mamba.modeling_mamba import MambaMixer

        config = MambaConfig(hidden_size=HIDDEN, state_size=STATE, expand=2, conv_kernel=4)
        mixer = MambaMixer(config, layer_idx=0).to(device)
        inputs = [torch.randn(batch, length, HIDDEN, generator=generator).to(device)]
        run = lambda: mixer(inputs[0])  # noqa: E731
    else:
        from stretchysnake_hf.selective_scan import selective_scan

        channels = CHANNELS
        dt = torch.empty(channels).uniform_(-6.9, -2.3, generator=generator).exp()  # Mamba's dt init, 0.001..0.1
        inputs = [
            torch.randn(batch, channels, length, generator=generator),  # u
            0.1 * torch.randn(batch, channels, length, generator=generator),  # delta (before bias and softplus)
            -torch.arange(1, STATE + 1.0).repeat(channels, 1),  # A: S4D-real
            torch.randn(batch, STATE, length, generator=generator),  # B
            torch.randn(batch, STATE, length, generator=generator),  # C
            torch.ones(channels),  # D
            torch.randn(batch, channels, length, generator=generator),  # z
            dt + torch.log(-torch.expm1(-dt)),  # delta_bias: inverse softplus of dt
        ]
        inputs = [tensor.to(device) for tensor in inputs]
        run = lambda: selective_scan(*inputs, delta_softplus=True, backend=case)  # noqa: E731
    if mode == "forward":

        def step() -> None:
            with torch.no_grad():
                run()

        return step
    for tensor in inputs:
        tensor.requires_grad_()
    parameters = [*inputs, *(mixer.parameters() if case == "MambaMixer fallback" else ())]

    def step() -> None:
        for tensor in parameters:
            tensor.grad = None
        run().sum().backward()

    return step


def worker(case: str, mode: str, length: int, repeats: int, device: str) -> dict[str, float]:
    """Peak memory of a first run (after a tiny run that loads compiled kernels), then the best of `repeats` more
    runs, unless the first took over 60 s (then that run's time)."""
    cuda = device == "cuda"
    _workload(case, mode, 70, device, batch=1)()
    step = _workload(case, mode, length, device)

    def timed() -> float:
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    if cuda:
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        baseline = reset_peak_resident()
    times = [timed()]
    peak = torch.cuda.max_memory_allocated() if cuda else resident_bytes("VmHWM")
    times += [timed() for _ in range(repeats if times[0] < 60 else 0)]
    return {"seconds": min(times[1:] or times), "peak_mib": (peak - baseline) / 2**20}


def measure(case: str, mode: str, length: int, repeats: int, device: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", case, mode, str(length), "--repeats", str(repeats)]
    command += ["--device", device]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def available_cases(device: str) -> list[str]:
    from stretchysnake_hf.selective_scan import resolve_backend

    cases = []
    for case in CASES:
        try:
            if case != "MambaMixer fallback":
                resolve_backend(case, torch.device(device))
        except (ImportError, ValueError):
            continue
        cases.append(case)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--worker", nargs=3, metavar=("CASE", "MODE", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case, mode, length = args.worker
        print(json.dumps(worker(case, mode, int(length), args.repeats, args.device)))
        return

    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {where}; batch {BATCH}, channels {CHANNELS}, "
          f"d_state {STATE}; ratio = MambaMixer fallback time / time\n")  # fmt: skip
    print("| backend | tokens | forward s | fwd ratio | fwd peak MiB | fwd+bwd s | fwd+bwd ratio | fwd+bwd peak MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        results = {}
        for case in available_cases(args.device):
            cells = []
            for mode in MODES:
                if (case, mode, length) in SKIPPED:
                    cells.append("skipped (quadratic: est. > 10 min) | - | -")
                    continue
                result = results[case, mode] = measure(case, mode, length, args.repeats, args.device)
                baseline = results.get(("MambaMixer fallback", mode))
                ratio = f"{baseline['seconds'] / result['seconds']:.1f}x" if baseline else "n/a"
                cells.append(f"{result['seconds']:.3f} | {ratio} | {result['peak_mib']:.0f}")
            print(f"| {case} | {length} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
