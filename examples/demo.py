# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Main job: generate the action dataset, train a tiny StretchySnake with static_tokens flexible training on CPU,
evaluate it at several scales (some never seen in training) and print the accuracy table.

    python examples/demo.py [--output-dir demo_output] [--videos-per-class 100] [--max-steps 1500] [--seed 0]

Takes about 5 minutes on 2 CPU cores. Chance level is 10% (10 classes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import train_flex  # examples/train_flex.py, next to this file

from stretchysnake_hf import StretchySnakeForVideoClassification, StretchySnakeVideoProcessor
from stretchysnake_hf.flexible_training import FlexibleTrainingConfig, Scale
from stretchysnake_hf.synthetic import CLASSES, generate_dataset

TRAIN_FRAMES, TRAIN_RESOLUTIONS, TOKEN_GRID = (4, 8, 16), (32, 64), 4
EVAL_SCALES = [
    Scale(8, 64, 16),
    Scale(4, 32, 8),
    Scale(16, 64, 16),
    Scale(8, 48, 12),
    Scale(32, 64, 16),
    Scale(8, 96, 24),
    Scale(8, 64, 8),
    Scale(2, 64, 16),
]


def train_arguments(data_dir: Path, model_dir: Path, max_steps: int, seed: int) -> list[str]:
    return [
        "--preset", "tiny",
        "--config_overrides", "hidden_size=64,num_hidden_layers=4,image_size=64,patch_size=16,num_frames=8,drop_path_rate=0.0",
        "--train_dir", str(data_dir / "train"),
        "--validation_dir", str(data_dir / "validation"),
        "--do_flip", "false",  # flipping would swap moving_left/moving_right and the rotation senses
        "--crop_scale_min", "0.5",
        "--variant", "static_tokens",
        "--frames", *map(str, TRAIN_FRAMES),
        "--resolutions", *map(str, TRAIN_RESOLUTIONS),
        "--token_grid", str(TOKEN_GRID),
        "--eval_num_frames", "8", "--eval_image_size", "64", "--eval_patch_size", "16",
        "--max_steps", str(max_steps),
        "--per_device_train_batch_size", "8",
        "--learning_rate", "2e-3",
        "--warmup_steps", "50",
        "--weight_decay", "0.05",
        "--seed", str(seed),
        "--logging_steps", "50",
        "--dataloader_num_workers", "1",
        "--save_strategy", "no",
        "--remove_unused_columns", "false",
        "--use_cpu",
        "--report_to", "none",
        "--output_dir", str(model_dir),
    ]  # fmt: skip


@torch.no_grad()
def accuracy_at_scales(model_dir: Path, test_dir: Path, scales: list[Scale], batch_size: int = 16) -> list[float]:
    """Top-1 accuracy on the class-per-folder `test_dir` at each (frames, resolution, patch size)."""
    model = StretchySnakeForVideoClassification.from_pretrained(model_dir).eval()
    processor = StretchySnakeVideoProcessor.from_pretrained(model_dir)
    label2id = model.config.label2id
    clips = sorted(test_dir.rglob("*.mp4"))
    labels = torch.tensor([label2id[clip.parent.name] for clip in clips])
    accuracies = []
    for scale in scales:
        predictions = []
        for start in range(0, len(clips), batch_size):
            batch = [str(clip) for clip in clips[start : start + batch_size]]
            inputs = processor(batch, num_frames=scale.num_frames, size=scale.image_size, patch_size=scale.patch_size)
            predictions.append(model(**inputs).logits.argmax(-1))
        accuracies.append(float((torch.cat(predictions) == labels).float().mean()))
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="demo_output", help="dataset and model go here")
    parser.add_argument("--videos-per-class", type=int, default=100)
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    output_dir = Path(args.output_dir)

    start = time.perf_counter()
    data_dir = generate_dataset(output_dir / "data", args.videos_per_class, args.seed)
    generation_time = time.perf_counter() - start
    print(
        f"Generated {args.videos_per_class * len(CLASSES)} clips of {len(CLASSES)} classes in {generation_time:.0f} s"
    )

    start = time.perf_counter()
    train_flex.main(train_arguments(data_dir, output_dir / "model", args.max_steps, args.seed))
    training_time = time.perf_counter() - start

    start = time.perf_counter()
    accuracies = accuracy_at_scales(output_dir / "model", data_dir / "test", EVAL_SCALES)
    evaluation_time = time.perf_counter() - start

    support = set(
        FlexibleTrainingConfig("static_tokens", TRAIN_FRAMES, TRAIN_RESOLUTIONS, token_grid=TOKEN_GRID).scales
    )
    print(f"\nTest accuracy (chance {1 / len(CLASSES):.0%}), {len(list((data_dir / 'test').rglob('*.mp4')))} clips:\n")
    print("| frames | resolution | patch | token grid | seen in training | top-1 |")
    print("|---:|---:|---:|---:|:---:|---:|")
    for scale, accuracy in zip(EVAL_SCALES, accuracies, strict=True):
        seen = "yes" if scale in support else "no"
        grid = scale.image_size // scale.patch_size
        print(
            f"| {scale.num_frames} | {scale.image_size} | {scale.patch_size} | {grid}x{grid} | {seen} | {accuracy:.1%} |"
        )
    print(
        f"\nMean top-1 {np.mean(accuracies):.1%}; generation {generation_time:.0f} s, training {training_time:.0f} s, "
        f"evaluation {evaluation_time:.0f} s."
    )


if __name__ == "__main__":
    main()
