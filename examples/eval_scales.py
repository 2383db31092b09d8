# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Evaluate a StretchySnake checkpoint on every (frames, resolution) cell of a grid.

    python examples/eval_scales.py --model DIR --data_dir DIR/test --frames 8 16 32 64 \
        --resolutions 96 128 224 384 [--patch_rule static_tokens|static_patch] [--patch_sizes ...] --output-dir OUT
    python examples/eval_scales.py --model DIR --dataset_format ucf101 --data_root UCF101 --fold 1 \
        --eval_num_clips 4 --eval_num_crops 3 ... --output-dir OUT

Reports top-1/top-5 accuracy, clips per second, GFLOPs per clip (counted) and peak memory per cell, and writes
`OUT/scales.csv`, `OUT/scales.md`, `OUT/scales.png` (the accuracy heatmap; cells outside the checkpoint's
training sets hatched) and `OUT/pareto.png` (top-1 against GFLOPs, the Pareto front labelled with its scales). With
`--max_gflops`, `--max_latency_ms` and/or `--min_top1` it prints the cell to run at (`evaluation.pick_scale`): the
most accurate within the cost caps, or with only `--min_top1` the cheapest that reaches it. `--data_dir` is a class-per-folder tree whose folder names are the checkpoint's labels;
`--dataset_format` reads a benchmark as distributed (`stretchysnake_hf.video_datasets`), by default its official
evaluation split, matching its classes to the checkpoint's labels by name. With several views per video
(`--eval_num_clips` x `--eval_num_crops`) a video is scored by its softmax averaged over them.
Runs under `accelerate launch` too: the videos are split across processes and the results gathered. On CPU it runs
on the cores other processes leave idle, within the process's CPU quota (`--share_cpu false`: every thread).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModelForVideoClassification
from transformers.hf_argparser import string_to_bool

import stretchysnake_hf  # noqa: F401  (registers the Auto classes)
from stretchysnake_hf import StretchySnakeVideoProcessor
from stretchysnake_hf.data import folder_dataset
from stretchysnake_hf.evaluation import PATCH_RULES, evaluate_scales, pick_scale
from stretchysnake_hf.evaluation_report import plot_pareto, results_markdown, save_results
from stretchysnake_hf.video_datasets import (
    EVALUATION_SPLITS,
    FORMATS,
    load_evaluation_split,
    parse_dataset_options,
    processor_videos,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder (or Hub id)")
    parser.add_argument("--data_dir", help="class-per-folder evaluation videos (or --dataset_format)")
    parser.add_argument("--dataset_format", choices=list(FORMATS), help="a benchmark in its own format")
    parser.add_argument("--data_root", help="the folder of the --dataset_format benchmark")
    parser.add_argument("--fold", type=int, default=1, help="its official fold (UCF-101/HMDB-51 1-3, ...)")
    parser.add_argument("--split", default=None, help="its split (default: its official evaluation split)")
    parser.add_argument(
        "--dataset_options", nargs="+", default=None, metavar="KEY=VALUE", help="e.g. split_scheme=vis4mer"
    )
    parser.add_argument("--eval_num_clips", type=int, default=1, help="clips per video (test protocols: 4; COIN 10)")
    parser.add_argument("--eval_num_crops", type=int, default=1, help="square crops per clip (test protocols: 3)")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64], help="frame counts (columns)")
    parser.add_argument(
        "--resolutions", type=int, nargs="+", default=[96, 128, 224, 384], help="frame sides in pixels (rows)"
    )
    parser.add_argument(
        "--patch_rule",
        choices=PATCH_RULES,
        default="static_tokens",
        help="static_tokens: the token grid stays fixed, the patch size grows with the resolution; "
        "static_patch: the patch size stays fixed",
    )
    parser.add_argument(
        "--patch_sizes", type=int, nargs="+", default=None, help="static_patch's patch sizes (default: the model's)"
    )
    parser.add_argument(
        "--token_grid", type=int, default=None, help="static_tokens' grid side (default: from the checkpoint)"
    )
    parser.add_argument("--batch_size", type=int, default=8, help="videos per processor call and forward pass")
    parser.add_argument(
        "--max_tokens", type=int, default=None, help="token budget of one forward pass; larger cells are reported"
    )
    parser.add_argument(
        "--share_cpu",
        type=string_to_bool,
        default=True,
        help="on CPU, run on the cores other processes leave idle (false: keep every thread)",
    )
    parser.add_argument("--max_gflops", type=float, default=None, help="pick: GFLOPs per clip at most this")
    parser.add_argument(
        "--max_latency_ms", type=float, default=None, help="pick: measured forward time per clip (ms) at most this"
    )
    parser.add_argument("--min_top1", type=float, default=None, help="pick: top-1 (a fraction) at least this")
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True, help="where results go")
    args = parser.parse_args(argv)
    if (args.data_dir is None) == (args.dataset_format is None):
        parser.error("give either --data_dir or --dataset_format (with --data_root)")
    if args.dataset_format is not None and args.data_root is None:
        parser.error("--dataset_format needs --data_root")
    return args


def main(argv: list[str] | None = None) -> list:
    args = parse_args(argv)
    # Without cpu=True, `accelerate launch --multi_gpu` on a machine without CUDA leaves every process alone,
    # evaluating every video and writing the same files.
    state = PartialState(cpu=not torch.cuda.is_available())
    model = AutoModelForVideoClassification.from_pretrained(args.model).to(state.device)
    views = {"num_clips": args.eval_num_clips, "num_crops": args.eval_num_crops}
    if Path(args.model, "preprocessor_config.json").is_file():
        processor = StretchySnakeVideoProcessor.from_pretrained(args.model, **views)
    else:
        processor = StretchySnakeVideoProcessor(**views)
    class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if args.dataset_format is None:
        dataset, data = folder_dataset(args.data_dir, class_names), args.data_dir
    else:
        split = args.split or EVALUATION_SPLITS[args.dataset_format]
        options = parse_dataset_options(args.dataset_options)
        dataset = load_evaluation_split(args.dataset_format, args.data_root, class_names, split, args.fold, **options)
        data = f"{args.dataset_format} {split} (fold {args.fold})"
    results = evaluate_scales(
        {Path(args.model).name: model},
        processor,
        processor_videos(dataset),
        dataset["label"],
        args.frames,
        args.resolutions,
        patch_rule=args.patch_rule,
        patch_sizes=args.patch_sizes,
        token_grid=args.token_grid,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        share_cpu=args.share_cpu,
    )
    if state.is_main_process:
        title = f"{Path(args.model).name} on {data}"
        paths = list(save_results(results, args.output_dir, title).values()) + [Path(args.output_dir, "pareto.png")]
        plot_pareto(results, paths[-1], title)
        print(results_markdown(results))
        print("Wrote " + ", ".join(str(path) for path in paths))
        constraints = {"max_gflops": args.max_gflops, "max_latency_ms": args.max_latency_ms, "min_top1": args.min_top1}
        if any(value is not None for value in constraints.values()):
            try:
                pick = pick_scale(results, **constraints)
            except ValueError as error:
                print(f"No pick: {error}")
            else:
                latency = "not timed" if pick.latency_ms is None else f"{pick.latency_ms:.3g} ms per clip"
                print(
                    f"Pick: {pick.num_frames} frames, {pick.image_size} px, patch {pick.patch_size}: top-1 "
                    f"{100 * pick.top1:.1f}%, {pick.gflops_per_clip:.4g} GFLOPs per clip, {latency}"
                )
    state.wait_for_everyone()
    # Left to interpreter exit, gloo's worker threads may still hold the tensors of the last gather and abort the
    # process ("terminate called without an active exception") after the results are written.
    state.destroy_process_group()
    return results


if __name__ == "__main__":
    main()
