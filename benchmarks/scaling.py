"""Cost against video length: StretchySnake vs VideoMAE side by side, and against the machine's matmul throughput.

Both models get the same width, depth, patch size and tubelet (VideoMAE heads = width / 64) and the same inputs, at
every (frames, resolution) setting. Each measurement runs in a fresh process, so its peak memory is its own: after
one warm-up step (JIT compilation, resize caches) the peak resident size is reset, and peak memory is the peak
resident size during the timed steps above the resident size before them. Run by hand:

    python benchmarks/scaling.py                       # tiny width/depth, 8-64 frames at 112 and 224 px
    python benchmarks/scaling.py --frames 8 16 --sizes 112 --repeats 1
    python benchmarks/scaling.py --frames 8 64 --sizes 224 --training-paths fused autograd   # both CPU training paths
    python benchmarks/scaling.py --device cuda --dtype bfloat16 --scan-backend chunked   # on a GPU

On CUDA, times are synchronized and peak memory is `torch.cuda.max_memory_allocated` above the model and inputs;
`--dtype bfloat16` runs under bf16 autocast (float32 weights, as in mixed-precision training).

On CPU, StretchySnake trains through the fused training path (`mixer_training_cpu`) when the scan backend resolves to
"numba"; `--training-paths fused autograd` also measures its training step through `autograd_forward` (the
mixers' path for the other backends), in rows of its own. The choice is the mixers': the RMSNorms run their numba
kernels (`rms_norm_cpu`) in both.

The last lines are the ratios the performance targets are about: forward cost growth divided by token growth
(1.0 = linear), StretchySnake / VideoMAE time and memory at the largest setting both ran, fused / autograd training
path, and achieved FLOP/s as a fraction of dense float32 matmul throughput measured in the same run (training
FLOPs counted as 3x the forward's: the backward computes two products per forward one).
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


def _use_autograd_training_path() -> None:
    """Makes every StretchySnake mixer of this process train through `autograd_forward` instead of the fused path."""
    from stretchysnake_hf.modeling_stretchysnake import StretchySnakeMixer

    choose = StretchySnakeMixer.forward_path

    def forward_path(self, hidden_states):
        path = choose(self, hidden_states)
        return self.autograd_forward if path == self.cpu_training_forward else path

    StretchySnakeMixer.forward_path = forward_path


def worker(spec: dict) -> dict:
    """One model, one setting, one mode, in this process: fastest of the timed runs (on a shared or virtual
    machine, interference only ever adds time), peak extra memory and (forward) FLOPs."""
    torch.manual_seed(0)
    device, cuda = torch.device(spec["device"]), spec["device"] == "cuda"
    shape = (spec["batch"], spec["frames"], 3, spec["size"], spec["size"])
    model = _build(spec["model"], spec["preset"], spec["frames"], spec["size"], spec["scan_backend"])
    model.to(device)
    if spec.get("training_path") == "autograd":
        _use_autograd_training_path()
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
    parser.add_argument(
        "--training-paths",
        nargs="+",
        default=["fused"],
        choices=("fused", "autograd"),
        help="StretchySnake training paths to measure on CPU: fused (mixer_training_cpu, the default where the scan "
        "backend is numba) and/or autograd (autograd_forward); the first one's rows also carry the forward columns",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    from tqdm import tqdm

    matmul = matmul_flops_per_second(args.device, args.dtype)
    settings = sorted(((t, s) for t in args.frames for s in args.sizes), key=lambda ts: ts[0] * ts[1] ** 2)
    rows = []
    # (model, training path): the extra StretchySnake paths measure training only (inference has one path)
    variants = [("stretchysnake", args.training_paths[0])]
    variants += [("stretchysnake", path) for path in args.training_paths[1:]] + [("videomae", None)]
    measurements = [
        (v, mode)
        for v in variants
        for mode in ("forward", "train")
        if mode == "train" or v[1] in (None, args.training_paths[0])
    ]
    with tqdm(total=len(settings) * len(measurements), desc="measuring", file=sys.stderr) as progress:
        for frames, size in settings:
            row = {"frames": frames, "size": size, "tokens": frames * (size // 16) ** 2}
            for (model_name, path), mode in measurements:
                spec = dict(vars(args), model=model_name, mode=mode, frames=frames, size=size, training_path=path)
                row[(model_name, path), mode] = _run(spec, args.timeout)
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
        "| frames x px | tokens | model | forward s | fwd+bwd s | peak MiB fwd | peak MiB train | GFLOPs "
        "| FLOP/s vs matmul fwd | train |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    forward_of = {v: v if v[1] in (None, args.training_paths[0]) else variants[0] for v in variants}
    for row in rows:
        for variant in variants:
            fwd, train = row[forward_of[variant], "forward"], row[variant, "train"]
            own = forward_of[variant] == variant  # False: the forward columns are another row's

            def forward_cell(key: str, scale: float, fmt: str, own: bool = own, fwd: dict | None = fwd) -> str:
                return cell(fwd, key, scale, fmt) if own else "-"

            flops = None if fwd is None else fwd["flops"]
            fwd_efficiency = "-" if fwd is None or not own else f"{flops / fwd['seconds'] / matmul:.0%}"
            train_efficiency = "-" if None in (flops, train) else f"{3 * flops / train['seconds'] / matmul:.0%}"
            print(
                f"| {row['frames']} x {row['size']} | {row['tokens']} | {_label(variant)} "
                f"| {forward_cell('seconds', 1, '.3f')} | {cell(train, 'seconds', 1, '.3f')} "
                f"| {forward_cell('peak_bytes', 2**20, '.0f')} | {cell(train, 'peak_bytes', 2**20, '.0f')} "
                f"| {cell(fwd, 'flops', 1e9, '.1f')} | {fwd_efficiency} | {train_efficiency} |"
            )

    snake, mae = variants[0], ("videomae", None)
    print("\n| ratio | value |\n|---|---|")
    for variant in (snake, mae):
        measured = [r for r in rows if r[variant, "forward"] is not None]
        if len(measured) >= 2:
            first, last = measured[0], measured[-1]
            growth = last[variant, "forward"]["seconds"] / first[variant, "forward"]["seconds"]
            print(
                f"| {variant[0]} forward time growth / token growth ({first['frames']}x{first['size']} -> "
                f"{last['frames']}x{last['size']}) | {growth / (last['tokens'] / first['tokens']):.2f} |"
            )
    for r in rows:
        at = f"{r['frames']}x{r['size']}"
        for mode, label in (("forward", "forward"), ("train", "fwd+bwd")):
            ours, theirs = r[snake, mode], r[mae, mode]
            if ours and theirs:
                print(f"| StretchySnake / VideoMAE {label} time at {at} | {ours['seconds'] / theirs['seconds']:.2f} |")
                print(
                    f"| StretchySnake / VideoMAE {label} peak memory at {at} "
                    f"| {ours['peak_bytes'] / max(theirs['peak_bytes'], 1):.2f} |"
                )
        for other in variants[1:-1]:
            ours, theirs = r[snake, "train"], r[other, "train"]
            if ours and theirs:
                print(
                    f"| {_label(other)} / {_label(snake)} fwd+bwd time at {at} "
                    f"| {theirs['seconds'] / ours['seconds']:.2f} |"
                )
                print(
                    f"| {_label(other)} / {_label(snake)} fwd+bwd peak memory at {at} "
                    f"| {theirs['peak_bytes'] / max(ours['peak_bytes'], 1):.2f} |"
                )


def _label(variant: tuple[str, str | None]) -> str:
    model_name, path = variant
    return model_name if path is None else f"{model_name} ({path} training path)"


if __name__ == "__main__":
    main()
