# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Evaluate a StretchySnake checkpoint on every (frames, resolution) cell of a grid.

    python examples/eval_scales.py --model DIR --data_dir DIR/test --frames 8 16 32 64 \
        --resolutions 96 128 224 384 [--patch_rule static_tokens|static_patch] [--patch_sizes ...] --output-dir OUT

Reports top-1/top-5 accuracy, clips per second, GFLOPs per clip (counted) and peak memory per cell, and writes
`OUT/scales.csv`, `OUT/scales.md` and `OUT/scales.png` (the accuracy heatmap; cells outside the checkpoint's
training sets hatched). `--data_dir` is a class-per-folder tree whose folder names are the checkpoint's labels.
Runs under `accelerate launch` too: the videos are split across processes and the results gathered.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate import PartialState
from transformers import AutoModelForVideoClassification

import stretchysnake_hf  # noqa: F401  (registers the Auto classes)
from stretchysnake_hf import StretchySnakeVideoProcessor
from stretchysnake_hf.data import folder_dataset
from stretchysnake_hf.evaluation import PATCH_RULES, evaluate_scales, results_markdown, save_results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder (or Hub id)")
    parser.add_argument("--data_dir", required=True, help="class-per-folder evaluation videos")
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
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True, help="where results go")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list:
    args = parse_args(argv)
    state = PartialState()
    model = AutoModelForVideoClassification.from_pretrained(args.model).to(state.device)
    if Path(args.model, "preprocessor_config.json").is_file():
        processor = StretchySnakeVideoProcessor.from_pretrained(args.model)
    else:
        processor = StretchySnakeVideoProcessor()
    class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    dataset = folder_dataset(args.data_dir, class_names)
    results = evaluate_scales(
        {Path(args.model).name: model},
        processor,
        dataset["video"],
        dataset["label"],
        args.frames,
        args.resolutions,
        patch_rule=args.patch_rule,
        patch_sizes=args.patch_sizes,
        token_grid=args.token_grid,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
    )
    if state.is_main_process:
        paths = save_results(results, args.output_dir, f"{Path(args.model).name} on {args.data_dir}")
        print(results_markdown(results))
        print("Wrote " + ", ".join(str(path) for path in paths.values()))
    return results


if __name__ == "__main__":
    main()
