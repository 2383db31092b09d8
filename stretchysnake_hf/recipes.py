# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Named fine-tuning recipes for `examples/train_flex.py --recipe NAME`: the flags each one sets.

"videomamba" is VideoMamba's video fine-tuning (`videomamba/video_sm/run_class_finetuning.py` with its Kinetics-400
script for the middle model from masked pretraining, `exp/k400/videomamba_middle_mask/run_f8x224.sh`): AdamW (0.9,
0.999), weight decay 0.05, no gradient clipping (its `--clip_grad` is unset), layer-wise lr decay 0.8 by VideoMamba's
own layer ids (`optimization`'s "videomamba" rule: with its block rule commented out, only the patch kernel, cls token
and spatial position table train at 0.8 ** (depth + 1) of the rate, the rest at the full rate), 5 warm-up epochs of
45 then cosine to 1e-6, Mixup 0.8 / CutMix 1.0 per batch (probability 1, switch 0.5), label smoothing 0.1,
RandAugment `rand-m7-n4-mstd0.5-inc1`, random erasing 0.25 (pixel), 2 repeated augmentations, bicubic training
interpolation. Not set: the learning rate and length (the user's; VideoMamba multiplies its `--lr` and `--min_lr` by
global batch x repeats / 256), drop path (the model config's `drop_path_rate`; VideoMamba used 0.1/0.35/0.4-0.8 for
tiny/small/middle), and the EMA (off in VideoMamba's scripts; `--ema_decay 0.9999` adds it). Differences: warm-up
starts from 0 rather than 1e-6, and the warm-up is the fraction 5/45 of the run (`--warmup_steps` below 1 is a
ratio).
"""

from __future__ import annotations

RECIPES: dict[str, dict[str, str]] = {
    "videomamba": {
        "weight_decay": "0.05",
        "adam_beta1": "0.9",
        "adam_beta2": "0.999",
        "max_grad_norm": "0",
        "layer_decay": "0.8",
        "layer_decay_rule": "videomamba",
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": '{"min_lr": 1e-06}',
        "warmup_steps": str(5 / 45),
        "mixup_alpha": "0.8",
        "cutmix_alpha": "1.0",
        "mixup_prob": "1.0",
        "mixup_switch_prob": "0.5",
        "label_smoothing": "0.1",
        "rand_augment": "rand-m7-n4-mstd0.5-inc1",
        "random_erasing": "0.25",
        "random_erasing_mode": "pixel",
        "repeated_augmentation": "2",
        "train_interpolation": "bicubic",
    }
}


def recipe_arguments(name: str) -> list[str]:
    """The command-line flags of recipe `name`, e.g. `["--weight_decay", "0.05", ...]`."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; choose one of {sorted(RECIPES)}.")
    return [item for key, value in RECIPES[name].items() for item in (f"--{key}", value)]
