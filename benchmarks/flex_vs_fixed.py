# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""The paper's claim in miniature, with seeds and confidence intervals: flexible vs fixed fine-tuning of a pretrained
model, evaluated at scales never trained on.

The transfer protocol:
1. Pretrain one tiny StretchySnake at the fixed scale on the motion classes of the generated dataset (the stand-in for
   a released checkpoint); it is saved in `OUT/pretrained` and reused by later runs with the same settings.
2. Fine-tune copies of it on the classes where scale matters (`synthetic.py`, `class_set="scale"`: small
   pointers whose direction is lost at 8 px, flash counts that need 16 frames) with `fixed` and with each of the five
   variants, the same number of optimizer steps and, in expectation, of frames seen (every variant draws frames from
   `--train-frames`, whose mean is the fixed frame count), `--seeds` seeds per arm (seed k: head initialisation, data
   order and scale schedule; arms with the same seed share them as far as their variant allows).
3. Evaluate every arm on the test split over one frames x resolutions grid that reaches beyond every training set
   (fewer and more frames, smaller and larger resolutions), under both patch rules (static_tokens: the fixed token
   grid; static_patch: the fixed patch size).

Report (`OUT/summary.md`, printed): per patch rule and variant, top-1 at the fixed scale, mean top-1 over the cells
the variant trained on, over the cells it did not, and the worst cell, each as the mean over seeds ± the 95%
t-interval half-width, with the paired difference to `fixed`; whether the unseen-cell mean reached a half-width of 3
points; heatmaps of the seed means (`OUT/heatmaps_<rule>.png`); top-1 against GFLOPs (`OUT/pareto.png`); and per
variant the cheapest cell within 2 points of its best with its GFLOPs and measured latency relative to the fixed
scale. Per-seed cells are in `OUT/scales_<rule>.csv`.

    python benchmarks/flex_vs_fixed.py --seeds 5 [--output-dir flex_vs_fixed] [--train-args "--recipe videomamba"]

Interrupted runs resume: a fine-tuned arm whose `run.json` exists is not trained again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import transformers
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import train_flex  # noqa: E402  (examples/train_flex.py: the one training path)

from stretchysnake_hf import StretchySnakeForVideoClassification, StretchySnakeVideoProcessor  # noqa: E402
from stretchysnake_hf.data import folder_dataset  # noqa: E402
from stretchysnake_hf.evaluation import OK, PATCH_RULES, ScaleResult, evaluate_scales, pick_scale  # noqa: E402
from stretchysnake_hf.evaluation_report import plot_heatmaps, plot_pareto, read_csv, write_csv  # noqa: E402
from stretchysnake_hf.model_card import render_model_card  # noqa: E402
from stretchysnake_hf.seed_statistics import Interval, mean_ci, paired_difference, seeds_for_half_width  # noqa: E402
from stretchysnake_hf.synthetic import generate_dataset  # noqa: E402

VARIANTS = ("fixed", "static_tokens", "static_patch", "flexi_patch", "random", "temporal_only")
METRICS = {
    "at_fixed": "top-1 at fixed scale",
    "trained": "mean over trained cells",
    "unseen": "mean over unseen cells",
    "worst": "worst cell",
}
TARGET_HALF_WIDTH = 0.03
FIGURE = "docs/flex_vs_fixed.png"  # the model card's heatmap, relative to the card


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


def common_arguments(args: argparse.Namespace, output_dir: Path, seed: int) -> list[str]:
    """train_flex flags every run shares: data handling, logging, no checkpoints, the scale log."""
    return [
        "--do_flip", "false",  # flipping swaps left and right: pointing_left/right and moving_left/right
        "--crop_scale_min", "0.5",
        "--per_device_train_batch_size", str(args.batch_size),
        "--weight_decay", "0.05",
        "--seed", str(seed),
        "--logging_steps", "50",
        "--dataloader_num_workers", str(args.num_workers),
        "--save_strategy", "no",
        "--remove_unused_columns", "false",
        "--report_to", "none",
        "--disable_tqdm", "true",
        "--output_dir", str(output_dir),
        "--scale_log_file", str(output_dir / "scales.jsonl"),
    ]  # fmt: skip


def train(argv: list[str], output_dir: Path, seed: int) -> dict:
    """train_flex.main(argv), or the record of an earlier run with the same flags (a resumed experiment); returns
    `{"seconds", "frames_seen", "argv"}` (frames read from the scale log), kept in `output_dir/run.json`."""
    run_file = output_dir / "run.json"
    if run_file.is_file():
        run = json.loads(run_file.read_text())
        if run["argv"] != argv:
            raise ValueError(
                f"{output_dir} was trained with other settings; remove it or choose another --output-dir."
            )
        return run
    transformers.set_seed(seed)  # train_flex builds or loads the model before the Trainer seeds: seed its new weights
    start = time.perf_counter()
    train_flex.main(argv)
    seconds = time.perf_counter() - start
    logged = [
        json.loads(line) for log in output_dir.glob("scales.jsonl.rank*") for line in log.read_text().splitlines()
    ]
    run = {"seconds": seconds, "frames_seen": sum(e["num_frames"] * e["batch_size"] for e in logged), "argv": argv}
    run_file.write_text(json.dumps(run, indent=1))
    return run


def pretrain(data_dir: Path, args: argparse.Namespace) -> Path:
    """The fixed-scale model every arm starts from, trained once on the motion classes, its classifier removed so
    that each fine-tune starts a new head for the new classes (as from a released backbone); reused while its
    settings are unchanged."""
    output_dir = args.output_dir / "pretrained"
    num_frames, image_size, patch_size = args.fixed_scale
    overrides = (
        f"hidden_size={args.hidden_size},num_hidden_layers={args.num_layers},image_size={image_size},"
        f"patch_size={patch_size},num_frames={num_frames},drop_path_rate=0.0"
    )
    argv = [
        "--preset", "tiny",
        "--config_overrides", overrides,
        "--train_dir", str(data_dir / "train"),
        *variant_arguments("fixed", args),
        "--max_steps", str(args.pretrain_steps),
        "--learning_rate", str(args.pretrain_learning_rate),
        "--warmup_steps", str(args.pretrain_steps // 20),
        *common_arguments(args, output_dir, args.data_seed),
        *shlex.split(args.pretrain_args),
    ]  # fmt: skip
    run = train(argv, output_dir, args.data_seed)
    weights_file = output_dir / "model.safetensors"
    weights = load_file(weights_file)
    if any(key.startswith("classifier.") for key in weights):
        backbone = {key: value for key, value in weights.items() if not key.startswith("classifier.")}
        save_file(backbone, weights_file, metadata={"format": "pt"})
    print(f"Pretrained model ({run['seconds']:.0f} s of training): {output_dir}", flush=True)
    return output_dir


def fine_tune(variant: str, seed: int, pretrained: Path, data_dir: Path, args: argparse.Namespace) -> dict:
    """One arm and seed, fine-tuned from the pretrained backbone with a new head; skipped when already done."""
    output_dir = args.output_dir / "models" / variant / f"seed{seed}"
    argv = [
        "--model_name_or_path", str(pretrained),
        "--train_dir", str(data_dir / "train"),
        *variant_arguments(variant, args),
        "--max_steps", str(args.max_steps),
        "--learning_rate", str(args.learning_rate),
        "--warmup_steps", str(args.max_steps // 20),
        *common_arguments(args, output_dir, seed),
        *shlex.split(args.train_args),
    ]  # fmt: skip
    done = (output_dir / "run.json").is_file()
    run = train(argv, output_dir, seed)
    print(f"{variant} seed {seed}: {'done earlier' if done else 'fine-tuned'} in {run['seconds']:.0f} s", flush=True)
    return run


def arm_metrics(results: Sequence[ScaleResult], fixed_scale: tuple[int, int, int]) -> dict[str, float | None]:
    """One model's grid reduced to the report's numbers: top-1 at the fixed scale, mean top-1 over the cells in its
    training sets and over those not, the worst cell. A number with no cell behind it is `None`."""
    cells = [r for r in results if r.status == OK]
    at_fixed = [r.top1 for r in cells if (r.num_frames, r.image_size, r.patch_size) == tuple(fixed_scale)]
    trained = [r.top1 for r in cells if r.in_training]
    unseen = [r.top1 for r in cells if r.in_training is False]
    return {
        "at_fixed": float(np.mean(at_fixed)) if at_fixed else None,
        "trained": float(np.mean(trained)) if trained else None,
        "unseen": float(np.mean(unseen)) if unseen else None,
        "worst": min(r.top1 for r in cells) if cells else None,
    }


def seed_means(results: Sequence[ScaleResult], name: str) -> list[ScaleResult]:
    """The cells of several seeds of one arm (in grid order) averaged into one grid named `name`: top-1, top-5 and
    peak memory averaged, latency averaged (clips per second = 1000 / mean latency); a cell that failed for any seed
    keeps that seed's status."""
    groups: dict[tuple[int, int, int, int], list[ScaleResult]] = {}
    for r in results:
        groups.setdefault((r.num_frames, r.resolution, r.image_size, r.patch_size), []).append(r)
    means = []
    for cells in groups.values():
        failed = [r for r in cells if r.status != OK]
        first = failed[0] if failed else cells[0]
        mean = dataclasses.replace(first, model=name)
        if not failed:
            latencies = [r.latency_ms for r in cells]
            mean.top1 = float(np.mean([r.top1 for r in cells]))
            mean.top5 = float(np.mean([r.top5 for r in cells]))
            mean.peak_memory_mb = float(np.mean([r.peak_memory_mb for r in cells]))
            mean.clips_per_second = None if None in latencies else 1000 / float(np.mean(latencies))
        means.append(mean)
    return means


def summary_table(per_seed: dict[str, list[dict[str, float | None]]]) -> tuple[str, dict[str, dict[str, Interval]]]:
    """Markdown table of every metric as mean ± 95% half-width over seeds and the paired difference to `fixed`
    (seed k against seed k); also returns the intervals, `{variant: {metric or metric + "_vs_fixed": Interval}}`."""
    header = "| variant | " + " | ".join(METRICS.values()) + " |"
    lines = [header, "|---|" + "---:|" * len(METRICS)]
    intervals: dict[str, dict[str, Interval]] = {}
    for variant, metrics in per_seed.items():
        intervals[variant] = {}
        entries = []
        for key in METRICS:
            values = [m[key] for m in metrics]
            if None in values:
                entries.append("n/a")
                continue
            intervals[variant][key] = mean_ci(values)
            text = intervals[variant][key].format()
            baseline = [m[key] for m in per_seed.get("fixed", [])]
            if variant != "fixed" and baseline and None not in baseline:
                intervals[variant][f"{key}_vs_fixed"] = paired_difference(values, baseline)
                text += f" ({intervals[variant][f'{key}_vs_fixed'].format(signed=True)})"
            entries.append(text)
        lines.append(f"| {variant} | " + " | ".join(entries) + " |")
    return "\n".join(lines), intervals


def verdicts(intervals: dict[str, dict[str, Interval]]) -> list[str]:
    """In words, per variant and metric: better or worse than `fixed` when the paired interval excludes 0, else that
    the run shows no difference; and whether the unseen-cell mean reached the target half-width."""
    lines = []
    for variant, by_metric in intervals.items():
        for key, label in METRICS.items():
            difference = by_metric.get(f"{key}_vs_fixed")
            if difference is None or np.isnan(difference.half_width):
                continue
            # a margin of 1e-9 keeps rounding noise in identical arms from counting as a difference
            if difference.mean - difference.half_width > 1e-9:
                lines.append(f"{variant} beats fixed on the {label} ({difference.format(signed=True)} points).")
            elif difference.mean + difference.half_width < -1e-9:
                lines.append(
                    f"{variant} is worse than fixed on the {label} ({difference.format(signed=True)} points)."
                )
            else:
                lines.append(f"No difference from fixed shown on the {label} for {variant} (interval includes 0).")
        unseen = by_metric.get("unseen")
        if unseen is not None and math.isnan(unseen.half_width):
            lines.append(
                f"{variant}: one seed gives no interval: the {100 * TARGET_HALF_WIDTH:.0f}-point target needs at least 2 seeds."
            )
        elif unseen is not None and unseen.half_width > TARGET_HALF_WIDTH:
            lines.append(
                f"{variant}: the unseen-cell mean's half-width is {100 * unseen.half_width:.1f} points, above the "
                f"{100 * TARGET_HALF_WIDTH:.0f}-point target; at this seed-to-seed spread about "
                f"{seeds_for_half_width(unseen, TARGET_HALF_WIDTH)} seeds would reach it."
            )
    return lines


def cost_table(means: dict[str, list[ScaleResult]], fixed_scale: tuple[int, int, int]) -> str:
    """Per variant (seed means over every evaluated cell): the cheapest cell within 2 points of its best, with its
    GFLOPs and latency relative to the fixed scale."""
    lines = [
        "| variant | best cell (top-1) | cheapest within 2 points | top-1 | GFLOPs vs fixed scale "
        "| latency vs fixed scale |",
        "|---|---|---|---:|---:|---:|",
    ]
    for variant, cells in means.items():
        best = pick_scale(cells)
        cheap = pick_scale(cells, min_top1=best.top1 - 0.02)
        base = next(r for r in cells if (r.num_frames, r.image_size, r.patch_size) == tuple(fixed_scale))
        gflops = cheap.gflops_per_clip / base.gflops_per_clip
        latency = "n/a"
        if cheap.latency_ms is not None and base.latency_ms is not None:
            latency = f"{cheap.latency_ms / base.latency_ms:.3g}x"
        lines.append(
            f"| {variant} | {best.num_frames} fr, {best.image_size} px, p{best.patch_size} ({100 * best.top1:.1f}) "
            f"| {cheap.num_frames} fr, {cheap.image_size} px, p{cheap.patch_size} | {100 * cheap.top1:.1f} "
            f"| {gflops:.3g}x | {latency} |"
        )
    return "\n".join(lines)


def reused_results(path: Path, names: list[str]) -> list[ScaleResult]:
    """An earlier run's results (`--reuse-evaluation`), which must cover exactly this run's models."""
    if not path.is_file():
        raise FileNotFoundError(f"--reuse-evaluation needs {path}, written by a run without it.")
    results = read_csv(path)
    if (found := sorted({r.model for r in results})) != sorted(names):
        raise ValueError(f"{path} holds the models {found}, this run has {sorted(names)}: evaluate again.")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("flex_vs_fixed"))
    parser.add_argument("--seeds", type=int, default=5, help="fine-tuning seeds per arm (0 .. N-1)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--videos-per-class", type=int, default=100, help="clips per fine-tuning class (all splits)")
    parser.add_argument("--pretrain-videos-per-class", type=int, default=60, help="clips per motion class")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the datasets and of pretraining")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--pretrain-learning-rate", type=float, default=2e-3)
    parser.add_argument("--max-steps", type=int, default=800, help="fine-tuning steps of every arm")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="fine-tuning learning rate")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=1, help="dataloader workers (decoding) per run")
    parser.add_argument(
        "--fixed-scale", type=int, nargs=3, default=[16, 64, 16], metavar=("FRAMES", "SIZE", "PATCH"),
        help="pretraining's and the fixed arm's scale; its token grid SIZE/PATCH is the grid static_tokens keeps",
    )  # fmt: skip
    parser.add_argument(
        "--train-frames", type=int, nargs="+", default=[8, 16, 24], help="the variants' frame set (mean: FRAMES)"
    )
    parser.add_argument("--train-resolutions", type=int, nargs="+", default=[32, 64, 96], help="their resolutions")
    parser.add_argument("--eval-frames", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--eval-resolutions", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument(
        "--train-args", default="", help='extra train_flex flags for every fine-tune, e.g. "--recipe videomamba"'
    )
    parser.add_argument("--pretrain-args", default="", help="extra train_flex flags for pretraining")
    parser.add_argument(
        "--reuse-evaluation", action="store_true",
        help="read each rule's results from scales_<rule>.csv of an earlier run in --output-dir instead of evaluating "
        "again (to rewrite the report and figures)",
    )  # fmt: skip
    parser.add_argument(
        "--model-card", type=Path, default=None,
        help="also write a model card with these results here (the repository's MODEL_CARD.md)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.fixed_scale = tuple(args.fixed_scale)
    if "fixed" not in args.variants:
        parser.error("--variants must include fixed, the arm every difference is measured against")
    if args.fixed_scale[0] not in args.eval_frames or args.fixed_scale[1] not in args.eval_resolutions:
        parser.error("the evaluation grid must contain the fixed scale (its frames and its size)")
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    output = args.output_dir
    datasets = {"pretrain": ("motion", args.pretrain_videos_per_class), "finetune": ("scale", args.videos_per_class)}
    for name, (class_set, videos_per_class) in datasets.items():
        if not (output / "data" / name / "labels.txt").is_file():
            generate_dataset(output / "data" / name, videos_per_class, args.data_seed, class_set)
    pretrained = pretrain(output / "data" / "pretrain", args)
    runs = {
        variant: [
            fine_tune(variant, seed, pretrained, output / "data" / "finetune", args) for seed in range(args.seeds)
        ]
        for variant in args.variants
    }

    names = [f"{variant}/seed{seed}" for variant in args.variants for seed in range(args.seeds)]
    models = {name: StretchySnakeForVideoClassification.from_pretrained(output / "models" / name) for name in names}
    processor = StretchySnakeVideoProcessor.from_pretrained(output / "models" / names[0])
    labels = models[names[0]].config.id2label
    test = folder_dataset(output / "data" / "finetune" / "test", [labels[i] for i in range(len(labels))])
    _, image_size, patch_size = args.fixed_scale
    start = time.perf_counter()
    sections, all_means = [], {variant: [] for variant in args.variants}
    for rule in PATCH_RULES:
        if args.reuse_evaluation:
            results = reused_results(output / f"scales_{rule}.csv", names)
        else:
            results = evaluate_scales(
                models, processor, test["video"], test["label"], args.eval_frames, args.eval_resolutions,
                patch_rule=rule, patch_sizes=[patch_size] if rule == "static_patch" else None,
                token_grid=image_size // patch_size if rule == "static_tokens" else None,
                batch_size=args.eval_batch_size,
            )  # fmt: skip
            write_csv(results, output / f"scales_{rule}.csv")
        by_model = {name: [r for r in results if r.model == name] for name in names}
        per_seed = {v: [arm_metrics(by_model[f"{v}/seed{s}"], args.fixed_scale) for s in range(args.seeds)] for v in args.variants}  # fmt: skip
        table, intervals = summary_table(per_seed)
        means = {v: seed_means([r for s in range(args.seeds) for r in by_model[f"{v}/seed{s}"]], v) for v in args.variants}  # fmt: skip
        for variant, cells in means.items():
            all_means[variant] += cells
        plot_heatmaps(
            [r for cells in means.values() for r in cells], output / f"heatmaps_{rule}.png",
            f"Top-1 (%), mean of {args.seeds} seeds, {rule} rule; hatched: not in the training set",
        )  # fmt: skip
        sections.append(f"### {rule} rule\n\n{table}\n\n" + "\n".join(f"- {line}" for line in verdicts(intervals)))
    evaluation_seconds = time.perf_counter() - start
    plot_pareto(
        [r for cells in all_means.values() for r in cells], output / "pareto.png",
        f"Top-1 against GFLOPs, mean of {args.seeds} seeds, both patch rules",
    )  # fmt: skip

    frames, size, patch = args.fixed_scale
    training = "| variant | fine-tuning time (s, mean) | frames seen (mean) |\n|---|---:|---:|\n" + "\n".join(
        f"| {variant} | {np.mean([r['seconds'] for r in arm]):.0f} | {np.mean([r['frames_seen'] for r in arm]):.0f} |"
        for variant, arm in runs.items()
    )
    report = (
        f"{len(test)} test clips, {len(labels)} classes (chance {100 / len(labels):.0f}%), {args.seeds} seeds per arm; "
        f"fixed scale {frames} frames, {size} px, patch {patch}; grid: frames {args.eval_frames} x resolutions "
        f"{args.eval_resolutions}. Top-1 (%) as mean ± 95% CI half-width over seeds (t-distribution); in brackets "
        f"the paired difference to fixed (same seed) ± its half-width.\n\n"
        + "\n\n".join(sections)
        + "\n\n### Cost: the cheapest cell within 2 points of each variant's best (seed means, both rules)\n\n"
        + cost_table(all_means, args.fixed_scale)
        + f"\n\n### Fine-tuning\n\n{training}\n\n"
        + (
            "Evaluation: reused from an earlier run.\n"
            if args.reuse_evaluation
            else f"Evaluation: {evaluation_seconds:.0f} s.\n"
        )
    )
    (output / "summary.md").write_text(report)
    print("\n" + report)
    if args.model_card:
        write_model_card(args, report, output / "heatmaps_static_tokens.png")
    return report


def write_model_card(args: argparse.Namespace, report: str, heatmap: Path) -> None:
    """The architecture's model card, with this run's report and heatmap (copied to `docs/flex_vs_fixed.png` next to
    the card, which links it there)."""
    frames, size, patch = args.fixed_scale
    training = (
        f"The results below come from `benchmarks/flex_vs_fixed.py --seeds {args.seeds}`: a StretchySnake "
        f"({args.hidden_size} channels, {args.num_layers} blocks) pretrained {args.pretrain_steps} steps at {frames} "
        f"frames, {size} px, patch {patch} on the motion classes of the generated dataset "
        f"(`python -m stretchysnake_hf.synthetic`), then fine-tuned {args.max_steps} steps (batch {args.batch_size}, "
        f"AdamW, learning rate {args.learning_rate}{', ' + args.train_args if args.train_args else ''}) on the classes "
        f"where scale matters (`--class-set scale`, {args.videos_per_class} clips per class), once at the fixed scale "
        f"and once per variant, with frames drawn from {list(args.train_frames)} and resolutions from "
        f"{list(args.train_resolutions)} where the variant varies them."
    )
    card = render_model_card(
        model_id="stretchysnake-checkpoint",
        title="StretchySnake",
        summary="A video state-space model (VideoMamba architecture) trained so that one set of weights recognises "
        "actions at any frame count, resolution and patch size (Siddiqui et al., arXiv 2510.16209). This card "
        "describes the architecture and the package's flexible training; checkpoints trained with "
        "`examples/train_flex.py` carry a card of the same shape with their own results.",
        training=training,
        results=report.replace("### ", "#### "),
        heatmap=FIGURE,
    )
    (args.model_card.parent / FIGURE).parent.mkdir(exist_ok=True)
    shutil.copyfile(heatmap, args.model_card.parent / FIGURE)
    args.model_card.write_text(card)


if __name__ == "__main__":
    main()
