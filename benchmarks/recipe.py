# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""VideoMamba's fine-tuning recipe against the demo's plain settings, fine-tuning one checkpoint on the generated data.

1. Pretrain the demo's model (64 channels, 4 blocks) at the fixed scale 8 frames x 64 px on a dataset generated with
   `--pretrain-seed` (other clips than the fine-tuning set): the stand-in for a released checkpoint.
2. Fine-tune it with the demo's flexible training (static_tokens, frames 4/8/16, 32/64 px) on the dataset of
   `--data-seed`, for `--steps` optimizer steps, once with the demo's flags and once adding `--recipe videomamba`
   (layer decay 0.8 by VideoMamba's layer ids, no gradient clipping, mixup 0.8 / cutmix 1.0, smoothing 0.1,
   RandAugment m7-n4-mstd0.5-inc1, erasing 0.25, 2 repeated augmentations, cosine to 1e-6, bicubic crops), each with
   every seed of `--seeds`.
3. Evaluate each on the test split at the demo's 8 scales; print mean and standard deviation over seeds of the top-1
   at the base scale (8 x 64, patch 16) and of the mean over the grid, and every run's numbers.

    python benchmarks/recipe.py [--output-dir recipe_runs] [--steps 600] [--pretrain-steps 1000] [--seeds 0 1 2]

Extra train_flex flags for the recipe arm (e.g. to switch parts off) go after `--recipe-args`; `--ablations` adds
the recipe without each of its parts in turn (`ABLATIONS`, on the first `--ablation-seeds` seeds). Finished runs are
cached in their folders, so a rerun with more arms or seeds trains only what is new.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import demo  # noqa: E402  (examples/demo.py: the demo's model, flags and scale grid)
import train_flex  # noqa: E402

from stretchysnake_hf.synthetic import generate_dataset  # noqa: E402

ABLATIONS = {
    "mixing": ("mixup/cutmix", ["--mixup_alpha", "0", "--cutmix_alpha", "0"]),
    "pixel_augmentation": ("RandAugment/erasing", ["--rand_augment", "none", "--random_erasing", "0"]),
    "repeats": ("repeated augmentation", ["--repeated_augmentation", "1"]),
    "layer_decay": ("layer decay", ["--layer_decay", "1.0"]),
}
"""`--ablations`: the recipe with one part switched off (name: (words, flags))."""


def run(argv: list[str], model_dir: Path, data_dir: Path) -> dict[str, object]:
    """Train with train_flex, evaluate at the demo's scales; cache the result in `model_dir/result.json`."""
    result_file = model_dir / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    start = time.perf_counter()
    train_flex.main(argv)
    seconds = time.perf_counter() - start
    accuracies = demo.accuracy_at_scales(model_dir, data_dir / "test", demo.EVAL_SCALES)
    result = {"base": accuracies[0], "grid_mean": float(np.mean(accuracies)), "grid": accuracies, "seconds": seconds}
    result_file.write_text(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="recipe_runs")
    parser.add_argument("--videos-per-class", type=int, default=100)
    parser.add_argument("--pretrain-steps", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--pretrain-seed", type=int, default=1)
    parser.add_argument("--ablations", action="store_true", help="also the recipe without each of its parts")
    parser.add_argument("--ablation-seeds", type=int, default=2, help="how many of the seeds the ablations run")
    parser.add_argument("--recipe-args", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args()
    output = Path(args.output_dir)

    pretrain_data = generate_dataset(output / "pretrain_data", args.videos_per_class, args.pretrain_seed)
    data = generate_dataset(output / "data", args.videos_per_class, args.data_seed)
    checkpoint = output / "checkpoint"
    fixed = ["--variant", "fixed", "--frames", "8", "--resolutions", "64"]
    run(demo.train_arguments(pretrain_data, checkpoint, args.pretrain_steps, 0) + fixed, checkpoint, data)

    recipe = ["--recipe", "videomamba", *args.recipe_args]
    arms = {"demo flags": ("plain", []), "--recipe videomamba": ("recipe", recipe)}
    if args.ablations:
        arms.update(
            {
                f"recipe without {part}": (f"recipe_no_{key}", recipe + flags)
                for key, (part, flags) in ABLATIONS.items()
            }
        )
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in args.seeds:
        for arm, (folder, extra) in arms.items():
            if arm not in ("demo flags", "--recipe videomamba") and seed not in args.seeds[: args.ablation_seeds]:
                continue
            model_dir = output / f"{folder}_seed{seed}"
            argv = demo.train_arguments(data, model_dir, args.steps, seed)
            argv += ["--model_name_or_path", str(checkpoint), *extra]
            results[arm].append(run(argv, model_dir, data))

    grid = ", ".join(f"{s.num_frames}x{s.image_size}/p{s.patch_size}" for s in demo.EVAL_SCALES)
    print(
        f"\nFine-tuning {args.steps} steps from a checkpoint pretrained {args.pretrain_steps} steps; seeds {args.seeds}"
    )
    print(f"Grid: {grid}\n")
    print(
        "| fine-tuning | top-1 at 8x64 (mean ± std) | grid mean top-1 (mean ± std) | per seed (base / grid) | time per run |"
    )
    print("|---|---:|---:|---|---:|")
    for arm, runs in results.items():
        base, mean = np.array([r["base"] for r in runs]), np.array([r["grid_mean"] for r in runs])
        per_seed = ", ".join(f"{b:.1%} / {m:.1%}" for b, m in zip(base, mean, strict=True))
        seconds = np.mean([r["seconds"] for r in runs])
        print(
            f"| {arm} | {base.mean():.1%} ± {base.std(ddof=1) if len(runs) > 1 else 0:.1%} | "
            f"{mean.mean():.1%} ± {mean.std(ddof=1) if len(runs) > 1 else 0:.1%} | {per_seed} | {seconds:.0f} s |"
        )
    pretrained = run([], checkpoint, data)
    print(f"\nThe checkpoint itself: {pretrained['base']:.1%} at 8x64, grid mean {pretrained['grid_mean']:.1%}.")


if __name__ == "__main__":
    main()
