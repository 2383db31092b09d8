"""Cost against video length: StretchySnake vs VideoMAE side by side, and against the machine's matmul throughput.

Both models get the same width, depth, patch size and tubelet (VideoMAE heads = width / 64) and the same inputs, at
every (frames, resolution) setting. Each measurement runs in a fresh process, so its peak memory is its own: after
one warm-up step (JIT compilation, resize caches) the peak resident size is reset, and peak memory is the peak
resident size during the timed steps above the resident size before them. Run by hand:

    python benchmarks/scaling.py                       # tiny width/depth, 8-64 frames at 112 and 224 px
    python benchmarks/scaling.py --frames 8 16 --sizes 112 --repeats 1
    python benchmarks/scaling.py --device cuda --dtype bfloat16 --scan-backend chunked   # on a GPU

On CUDA, times are synchronized and peak memory is `torch.cuda.max_memory_allocated` above the model and inputs;
`--dtype bfloat16` runs under bf16 autocast (float32 weights, as in mixed-precision training).

The last lines are the ratios the performance targets are about: forward cost growth divided by token growth
(1.0 = linear), StretchySnake / VideoMAE time and memory at the largest setting both ran, and the tiny forward's
achieved FLOP/s as a fraction of dense float32 matmul throughput measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from process_memory import reset_peak_resident, resident_bytes


def _build(model_name: str, preset: str, frames: int, size: int, scan_backend: str = "auto"):
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    from stretchysnake_hf import StretchySnakeConfig, StretchySnakeForVideoClassification

    snake_config = StretchySnakeConfig.from_preset(
        preset, num_labels=400, drop_path_rate=0.0, scan_backend=scan_backend
    )
    if model_name == "stretchysnake":
        return StretchySnakeForVideoClassification(snake_config)
    width = snake_config.hidden_size
    config = VideoMAEConfig(
        image_size=size,
        patch_size=snake_config.patch_size,
        num_frames=frames,
        tubelet_size=snake_config.tubelet_size,
        hidden_size=width,
        num_hidden_layers=snake_config.num_hidden_layers,
        num_attention_heads=width // 64,
        intermediate_size=4 * width,
        num_labels=400,
    )
    return VideoMAEForVideoClassification(config)


def _flops(model_name: str, model, shape: tuple[int, ...], device: torch.device) -> int:
    if model_name == "stretchysnake":
        from stretchysnake_hf.flops import count_flops

        return count_flops(model, shape)
    from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop

    # torch counts the CUDA attention kernels but not the CPU flash one; its FLOPs are those of any exact attention.
    cpu_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    register_flop_formula(cpu_flash, get_raw=True)(sdpa_flop)  # the exported sdpa_flop is shape-wrapped: takes tensors
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.eval()(torch.randn(shape, device=device))
    return counter.get_total_flops()


def worker(spec: dict) -> dict:
    """One model, one setting, one mode, in this process: fastest of the timed runs (on a shared or virtual
    machine, interference only ever adds time), peak extra memory and (forward) FLOPs."""
    torch.manual_seed(0)
    device, cuda = torch.device(spec["device"]), spec["device"] == "cuda"
    shape = (spec["batch"], spec["frames"], 3, spec["size"], spec["size"])
    model = _build(spec["model"], spec["preset"], spec["frames"], spec["size"], spec["scan_backend"])
    model.to(device)
    flops = _flops(spec["model"], model, shape, device) if spec["mode"] == "forward" else None
    pixel_values = torch.randn(shape, device=device)
    labels = torch.zeros(spec["batch"], dtype=torch.long, device=device)
    autocast = torch.autocast(device.type, dtype=getattr(torch, spec["dtype"]), enabled=spec["dtype"] != "float32")

    def step() -> None:
        with autocast:
            if spec["mode"] == "forward":
                with torch.inference_mode():
                    model.eval()(pixel_values)
            else:
                model.train()(pixel_values, labels=labels).loss.backward()
                model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    step()  # warm-up: JIT compilation, caches, allocator
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated() if cuda else reset_peak_resident()
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else resident_bytes("VmHWM")
    return {"seconds": min(times), "peak_bytes": max(peak - baseline, 0), "flops": flops}


def matmul_flops_per_second(device: str, dtype: str, n: int = 4096, repeats: int = 5) -> float:
    """Dense matmul throughput in the benchmark's compute dtype (float32 on CPU: the models' dtype there)."""
    a, b = (torch.randn(n, n, device=device, dtype=getattr(torch, dtype)) for _ in range(2))
    torch.matmul(a, b)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def _run(spec: dict, timeout: float) -> dict | None:
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        print(f"  {spec['model']} {spec['mode']} failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds before a measurement counts as not fitting"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="autocast dtype")
    parser.add_argument("--scan-backend", default="auto", help="StretchySnake's config.scan_backend")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    from tqdm import tqdm

    matmul = matmul_flops_per_second(args.device, args.dtype)
    settings = sorted(((t, s) for t in args.frames for s in args.sizes), key=lambda ts: ts[0] * ts[1] ** 2)
    rows = []
    with tqdm(total=len(settings) * 4, desc="measuring", file=sys.stderr) as progress:
        for frames, size in settings:
            row = {"frames": frames, "size": size, "tokens": frames * (size // 16) ** 2}
            for model_name in ("stretchysnake", "videomae"):
                for mode in ("forward", "train"):
                    spec = dict(vars(args), model=model_name, mode=mode, frames=frames, size=size)
                    row[model_name, mode] = _run(spec, args.timeout)
                    progress.update()
            rows.append(row)

    def cell(result: dict | None, key: str, scale: float, fmt: str) -> str:
        return "did not fit" if result is None else format(result[key] / scale, fmt)

    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"\n{where}; dense {args.dtype} matmul: {matmul / 1e9:.1f} GFLOP/s (torch.matmul 4096x4096)")
    print(
        f"Model: {args.preset} width/depth for both, batch {args.batch}, {args.dtype}, StretchySnake scan backend "
        f"{args.scan_backend!r}; times are the fastest of {args.repeats} runs.\n"
    )
    print(
        "| frames x px | tokens | model | forward s | fwd+bwd s | peak MiB fwd | peak MiB train | GFLOPs | FLOP/s vs matmul |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        for model_name in ("stretchysnake", "videomae"):
            fwd, train = row[model_name, "forward"], row[model_name, "train"]
            efficiency = "-" if fwd is None else f"{fwd['flops'] / fwd['seconds'] / matmul:.0%}"
            print(
                f"| {row['frames']} x {row['size']} | {row['tokens']} | {model_name} | {cell(fwd, 'seconds', 1, '.3f')} "
                f"| {cell(train, 'seconds', 1, '.3f')} | {cell(fwd, 'peak_bytes', 2**20, '.0f')} "
                f"| {cell(train, 'peak_bytes', 2**20, '.0f')} | {cell(fwd, 'flops', 1e9, '.1f')} | {efficiency} |"
            )

    print("\n| ratio | value |\n|---|---|")
    for model_name in ("stretchysnake", "videomae"):
        measured = [r for r in rows if r[model_name, "forward"] is not None]
        if len(measured) >= 2:
            first, last = measured[0], measured[-1]
            growth = last[model_name, "forward"]["seconds"] / first[model_name, "forward"]["seconds"]
            print(
                f"| {model_name} forward time growth / token growth ({first['frames']}x{first['size']} -> "
                f"{last['frames']}x{last['size']}) | {growth / (last['tokens'] / first['tokens']):.2f} |"
            )
    both = [r for r in rows if all(r[m, "forward"] and r[m, "train"] for m in ("stretchysnake", "videomae"))]
    if both:
        r = both[-1]
        for mode, label in (("forward", "forward"), ("train", "fwd+bwd")):
            snake, mae = r["stretchysnake", mode], r["videomae", mode]
            print(
                f"| StretchySnake / VideoMAE {label} time at {r['frames']}x{r['size']} | {snake['seconds'] / mae['seconds']:.2f} |"
            )
            print(
                f"| StretchySnake / VideoMAE {label} peak memory at {r['frames']}x{r['size']} "
                f"| {snake['peak_bytes'] / max(mae['peak_bytes'], 1):.2f} |"
            )


if __name__ == "__main__":
    main()
