# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""The paper's claim in miniature: flexible training vs fixed-scale training, evaluated at scales never trained on.

Generates the synthetic action dataset, trains the same tiny StretchySnake (same seed, data, optimizer, number of
steps and, in expectation, of frames seen) once with `fixed` and once with each of the five flexible variants through
`examples/train_flex.py`, then evaluates all six on a (frames x resolution) grid that reaches outside every training
set (fewer and more frames, lower and higher resolution). Prints one table (accuracy at the fixed model's scale, mean
and worst cell over the grid, mean over the cells outside each model's own training set, training time, frames
seen) and writes the heatmaps side by side.

    python benchmarks/flex_vs_fixed.py [--output-dir flex_vs_fixed] [--max-steps 600] [--videos-per-class 100]

The defaults finish in under an hour on 2 CPU cores. On a GPU, scale up through the flags, e.g. `--hidden-size 192
--num-layers 24 --max-steps 5000 --videos-per-class 200 --batch-size 32`.

Every flexible variant samples frames from `--train-frames` (default 4 8 12, mean 8 = the fixed model's 8 frames),
so all six see the same number of frames in expectation; the realized count, read from the scale log, is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import train_flex  # noqa: E402  (examples/train_flex.py: the one training path)

from stretchysnake_hf import StretchySnakeForVideoClassification, StretchySnakeVideoProcessor  # noqa: E402
from stretchysnake_hf.data import folder_dataset  # noqa: E402
from stretchysnake_hf.evaluation import OK, ScaleResult, evaluate_scales  # noqa: E402
from stretchysnake_hf.evaluation_report import plot_heatmaps, save_results  # noqa: E402
from stretchysnake_hf.model_card import render_model_card  # noqa: E402
from stretchysnake_hf.synthetic import generate_dataset  # noqa: E402

VARIANTS = ("fixed", "static_tokens", "static_patch", "flexi_patch", "random", "temporal_only")


def variant_arguments(variant: str, args: argparse.Namespace) -> list[str]:
    """The flexible-training flags of one run: the fixed scale, or the variant's sets around it."""
    fixed_frames, fixed_size, fixed_patch = args.fixed_scale
    frames = [fixed_frames] if variant == "fixed" else args.train_frames
    single_size = variant in ("fixed", "flexi_patch", "temporal_only")
    resolutions = [fixed_size] if single_size else args.train_resolutions
    return [
        "--variant", variant,
        "--frames", *map(str, frames),
        "--resolutions", *map(str, resolutions),
        "--token_grid", str(fixed_size // fixed_patch),
        "--base_patch_size", str(fixed_patch),
    ]  # fmt: skip


def train(variant: str, data_dir: Path, model_dir: Path, args: argparse.Namespace) -> tuple[float, int]:
    """Train one variant with train_flex; returns (seconds, frames seen)."""
    num_frames, image_size, patch_size = args.fixed_scale
    overrides = (
        f"hidden_size={args.hidden_size},num_hidden_layers={args.num_layers},image_size={image_size},"
        f"patch_size={patch_size},num_frames={num_frames},drop_path_rate=0.0"
    )
    scale_log = model_dir / "scales.jsonl"
    argv = [
        "--preset", "tiny",
        "--config_overrides", overrides,
        "--train_dir", str(data_dir / "train"),
        "--do_flip", "false",  # flipping swaps moving_left/moving_right and the rotation senses
        "--crop_scale_min", "0.5",
        *variant_arguments(variant, args),
        "--max_steps", str(args.max_steps),
        "--per_device_train_batch_size", str(args.batch_size),
        "--learning_rate", str(args.learning_rate),
        "--warmup_steps", str(args.max_steps // 20),
        "--weight_decay", "0.05",
        "--seed", str(args.seed),
        "--logging_steps", "50",
        "--dataloader_num_workers", str(args.num_workers),
        "--save_strategy", "no",
        "--remove_unused_columns", "false",
        "--report_to", "none",
        "--disable_tqdm", "true",
        "--output_dir", str(model_dir),
        "--scale_log_file", str(scale_log),
    ]  # fmt: skip
    start = time.perf_counter()
    train_flex.main(argv)
    seconds = time.perf_counter() - start
    logged = [
        json.loads(line) for log in model_dir.glob("scales.jsonl.rank*") for line in log.read_text().splitlines()
    ]
    return seconds, sum(entry["num_frames"] * entry["batch_size"] for entry in logged)


def _mean_percent(values: list[float]) -> str:
    return f"{100 * np.mean(values):.1f}" if values else "n/a"


def summary_table(
    results: list[ScaleResult], fixed_scale: tuple[int, int, int], timings: dict[str, tuple[float, int]]
) -> str:
    """One row per variant: accuracy at the fixed model's scale, mean/worst over the grid and over unseen cells."""
    lines = [
        "| variant | top-1 at fixed scale | mean top-1 over grid | worst cell | mean top-1 outside own training set "
        "| training time (s) | frames seen |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for variant, (seconds, frames_seen) in timings.items():
        cells = [r for r in results if r.model == variant and r.status == OK]
        at_fixed = [r.top1 for r in cells if (r.num_frames, r.image_size, r.patch_size) == fixed_scale]
        unseen = [r.top1 for r in cells if r.in_training is False]
        worst = min(cells, key=lambda r: r.top1)
        columns = [
            _mean_percent(at_fixed),
            _mean_percent([r.top1 for r in cells]),
            f"{100 * worst.top1:.1f} ({worst.num_frames} fr, {worst.image_size} px, p{worst.patch_size})",
            _mean_percent(unseen),
            f"{seconds:.0f}",
            str(frames_seen),
        ]
        lines.append(f"| {variant} | " + " | ".join(columns) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("flex_vs_fixed"))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--videos-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--num-workers", type=int, default=1, help="dataloader workers (decoding) per run")
    parser.add_argument(
        "--fixed-scale", type=int, nargs=3, default=[8, 64, 16], metavar=("FRAMES", "SIZE", "PATCH"),
        help="the fixed model's scale; its token grid SIZE/PATCH is the grid static_tokens keeps",
    )  # fmt: skip
    parser.add_argument("--train-frames", type=int, nargs="+", default=[4, 8, 12], help="flexible frame set")
    parser.add_argument("--train-resolutions", type=int, nargs="+", default=[32, 64, 96], help="flexible sizes")
    parser.add_argument("--eval-frames", type=int, nargs="+", default=[2, 4, 8, 12, 24])
    parser.add_argument("--eval-resolutions", type=int, nargs="+", default=[32, 48, 64, 96, 128])
    parser.add_argument("--eval-patch-rule", choices=("static_tokens", "static_patch"), default="static_tokens")
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument(
        "--model-card", type=Path, default=None,
        help="also write a model card with these results here (the repository's MODEL_CARD.md)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.fixed_scale = tuple(args.fixed_scale)
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    output = args.output_dir
    data_dir = output / "data"
    if not (data_dir / "labels.txt").is_file():
        generate_dataset(data_dir, args.videos_per_class, args.seed)

    timings = {}
    for variant in args.variants:
        timings[variant] = train(variant, data_dir, output / "models" / variant, args)
        print(f"{variant}: trained in {timings[variant][0]:.0f} s", flush=True)

    models = {v: StretchySnakeForVideoClassification.from_pretrained(output / "models" / v) for v in args.variants}
    processor = StretchySnakeVideoProcessor.from_pretrained(output / "models" / args.variants[0])
    labels = models[args.variants[0]].config.id2label
    test = folder_dataset(data_dir / "test", [labels[i] for i in range(len(labels))])
    start = time.perf_counter()
    _, image_size, patch_size = args.fixed_scale
    results = evaluate_scales(
        models, processor, test["video"], test["label"], args.eval_frames, args.eval_resolutions,
        patch_rule=args.eval_patch_rule, patch_sizes=[patch_size] if args.eval_patch_rule == "static_patch" else None,
        token_grid=image_size // patch_size if args.eval_patch_rule == "static_tokens" else None,
        batch_size=args.eval_batch_size,
    )  # fmt: skip
    evaluation_seconds = time.perf_counter() - start

    table = summary_table(results, args.fixed_scale, timings)
    save_results(results, output, "Flexible vs fixed training")
    plot_heatmaps(
        results, output / "flex_vs_fixed.png", "Top-1 (%) on the test split; hatched: not in the training set"
    )
    (output / "summary.md").write_text(table + "\n")
    print(f"\n{len(test)} test clips, chance {100 / len(labels):.0f}%; evaluation {evaluation_seconds:.0f} s\n")
    print(table)
    if args.model_card:
        write_model_card(args, table, len(test), len(labels), output / "flex_vs_fixed.png")
    return table


def write_model_card(args: argparse.Namespace, table: str, num_test: int, num_labels: int, heatmap: Path) -> None:
    """The architecture's model card, with this run's table and heatmap (linked relative to the card)."""
    frames, size, patch = args.fixed_scale
    training = (
        f"The results below come from `benchmarks/flex_vs_fixed.py`: the same StretchySnake ({args.hidden_size} "
        f"channels, {args.num_layers} blocks) trained from scratch {args.max_steps} steps (batch {args.batch_size}, "
        f"AdamW, learning rate {args.learning_rate}, seed {args.seed}) on the generated action dataset "
        f"(`python -m stretchysnake_hf.synthetic`, {args.videos_per_class} clips per class, {num_labels} classes), once "
        f"at the fixed scale ({frames} frames, {size} px, patch {patch}) and once per variant, with frames drawn from "
        f"{list(args.train_frames)} and resolutions from {list(args.train_resolutions)} where the variant varies them."
    )
    results = (
        f"Top-1 on the {num_test} test clips (chance {100 / num_labels:.0f}%) over frames {list(args.eval_frames)} x "
        f"resolutions {list(args.eval_resolutions)} ({args.eval_patch_rule} patch rule); the grid reaches outside every "
        f"training set.\n\n{table}"
    )
    card = render_model_card(
        model_id="stretchysnake-checkpoint",
        title="StretchySnake",
        summary="A video state-space model (VideoMamba architecture) trained so that one set of weights recognises "
        "actions at any frame count, resolution and patch size (Siddiqui et al., arXiv 2510.16209). This card "
        "describes the architecture and the package's flexible training; checkpoints trained with "
        "`examples/train_flex.py` carry a card of the same shape with their own results.",
        training=training,
        results=results,
        heatmap=os.path.relpath(heatmap, args.model_card.parent),
    )
    args.model_card.write_text(card)


if __name__ == "__main__":
    main()
