# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Fine-tune (or train from scratch) StretchySnake for video classification with flexible training.

Runs as `python examples/train_flex.py ...` or `accelerate launch examples/train_flex.py ...` (any accelerate
config: CPU, one or several GPUs, several nodes, FSDP). Each optimizer step trains at the scale the flexible
schedule picks for it (the same on every process, replayed on resume); evaluation runs at one fixed scale.

Data: class-per-folder trees (`--train_dir/--validation_dir`), a `datasets` dataset (`--dataset_name`), or a benchmark
as distributed, with its official fold, splits and label order (`--dataset_format ucf101 --data_root DIR --fold 1`;
formats: `stretchysnake_hf.video_datasets`).

Fine-tuning recipe: `--recipe videomamba` sets VideoMamba's (`stretchysnake_hf.recipes`): layer-wise lr decay,
mixup/cutmix with label smoothing, video-consistent RandAugment and random erasing, repeated augmentation, cosine
schedule; each piece also has its own flag (`--layer_decay`, `--mixup_alpha`, ...), and flags given explicitly win.
`--ema_decay` keeps an EMA of the weights, evaluated alongside and saved under `ema/`.

Example, on the generated action dataset (`python -m stretchysnake_hf.synthetic --output-dir data`):

    python examples/train_flex.py --preset tiny --config_overrides hidden_size=64,num_hidden_layers=4 \
        --train_dir data/train --validation_dir data/validation --do_flip false \
        --variant static_tokens --frames 4 8 16 --resolutions 32 64 --token_grid 4 \
        --eval_num_frames 8 --eval_image_size 64 --eval_patch_size 16 \
        --output_dir out --max_steps 300 --per_device_train_batch_size 8 --learning_rate 1e-3 \
        --remove_unused_columns false --eval_strategy steps --eval_steps 100 --logging_steps 10
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import transformers
from accelerate import PartialState
from transformers import AutoModelForVideoClassification, EvalPrediction, HfArgumentParser, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from stretchysnake_hf import StretchySnakeConfig, StretchySnakeForVideoClassification, StretchySnakeVideoProcessor
from stretchysnake_hf.data import folder_dataset
from stretchysnake_hf.evaluation import evaluate_scales, top_k_accuracy
from stretchysnake_hf.evaluation_report import accuracy_grid_markdown, save_results
from stretchysnake_hf.flexible_training import (
    EMA_FOLDER,
    FlexibleTrainer,
    FlexibleTrainingConfig,
    FlexibleVideoCollator,
    Scale,
    ScaleSampler,
)
from stretchysnake_hf.mixing import MixupCutmix
from stretchysnake_hf.model_card import render_model_card
from stretchysnake_hf.optimization import LAYER_DECAY_RULES
from stretchysnake_hf.recipes import RECIPES, recipe_arguments
from stretchysnake_hf.video_datasets import (
    FORMATS,
    drop_unlabelled,
    load_evaluation_split,
    load_video_dataset,
    parse_dataset_options,
    processor_videos,
)

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint folder or Hub id to fine-tune (loaded at any scale)."}
    )
    preset: str | None = field(
        default=None, metadata={"help": "Train from scratch at a preset size: tiny, small or middle."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config fields to override, e.g. 'hidden_size=64,num_hidden_layers=4,image_size=64'."},
    )
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Re-initialize a checkpoint's classifier when the label count differs."}
    )


@dataclass
class DataArguments:
    train_dir: str | None = field(default=None, metadata={"help": "Class-per-folder training videos."})
    validation_dir: str | None = field(default=None, metadata={"help": "Class-per-folder validation videos."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` name or local folder (instead of the *_dir arguments)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of `dataset_name`."})
    dataset_format: str | None = field(
        default=None,
        metadata={"help": f"A benchmark in its own format under --data_root: {', '.join(FORMATS)}."},
    )
    data_root: str | None = field(default=None, metadata={"help": "Folder of the --dataset_format benchmark."})
    fold: int = field(default=1, metadata={"help": "Official fold of --dataset_format (UCF-101/HMDB-51 1-3, ...)."})
    dataset_options: list[str] | None = field(
        default=None,
        metadata={"help": "KEY=VALUE options of --dataset_format, e.g. split_scheme=vis4mer, strict=true."},
    )
    train_split: str = field(default="train", metadata={"help": "Training split of `dataset_name`/`dataset_format`."})
    validation_split: str | None = field(
        default=None,
        metadata={
            "help": "Validation split (default: the format's official test/validation split; 'validation' for "
            "--dataset_name)."
        },
    )
    video_column: str = field(
        default="video", metadata={"help": "Column with the videos: paths, bytes, or a (not decoded) Video feature."}
    )
    label_column: str = field(default="label", metadata={"help": "Column with class names or indices."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep this many training videos, drawn at random (the same for every --seed)."}
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Keep this many validation videos, drawn at random (the same for every --seed)."},
    )
    sampling: str = field(default="uniform", metadata={"help": "Temporal sampling: 'uniform' or 'dense'."})
    do_flip: bool = field(
        default=True, metadata={"help": "Horizontal flip in training; false for direction-sensitive classes."}
    )
    crop_scale_min: float = field(default=0.08, metadata={"help": "Smallest area fraction of the random crop."})
    skip_bad_videos: bool = field(
        default=False, metadata={"help": "Skip videos that fail to decode (with a warning) instead of failing."}
    )
    eval_num_frames: int | None = field(default=None, metadata={"help": "Evaluation frames (default: model's)."})
    eval_image_size: int | None = field(default=None, metadata={"help": "Evaluation resolution (default: model's)."})
    eval_patch_size: int | None = field(default=None, metadata={"help": "Evaluation patch size (default: model's)."})
    eval_num_clips: int = field(
        default=1, metadata={"help": "Clips per validation video (test protocols: 4; COIN 10); softmax averaged."}
    )
    eval_num_crops: int = field(
        default=1, metadata={"help": "Square crops per clip at validation (test protocols: 3)."}
    )
    scale_grid_frames: list[int] | None = field(
        default=None, metadata={"help": "Frame counts of a grid evaluated on the validation set after training."}
    )
    scale_grid_resolutions: list[int] | None = field(
        default=None, metadata={"help": "Resolutions of that grid (static_tokens rule); heatmap in the model card."}
    )

    def __post_init__(self) -> None:
        if bool(self.scale_grid_frames) != bool(self.scale_grid_resolutions):
            given, missing = ("frames", "resolutions") if self.scale_grid_frames else ("resolutions", "frames")
            raise ValueError(f"--scale_grid_{given} needs --scale_grid_{missing}: the grid has both axes.")


@dataclass
class FlexibleArguments:
    variant: str = field(
        default="static_tokens",
        metadata={"help": "static_tokens, static_patch, flexi_patch, random, temporal_only or fixed."},
    )
    frames: list[int] = field(default_factory=lambda: [8, 16, 32, 64], metadata={"help": "Frame counts."})
    resolutions: list[int] = field(default_factory=lambda: [96, 128, 224, 384], metadata={"help": "Resolutions."})
    patch_sizes: list[int] | None = field(default=None, metadata={"help": "Patch sizes (default: per variant)."})
    token_grid: int = field(default=14, metadata={"help": "Token grid side kept by static_tokens."})
    base_patch_size: int = field(default=16, metadata={"help": "Patch size of the variants that keep it fixed."})
    flex_seed: int | None = field(default=None, metadata={"help": "Seed of the scale schedule (default: --seed)."})
    max_tokens_per_step: int | None = field(
        default=None, metadata={"help": "Cut micro-batches to (1 + frames / tubelet x grid^2) x batch <= this budget."}
    )
    scale_log_file: str | None = field(
        default=None, metadata={"help": "Write each micro-batch's scale as JSON lines to FILE.rank<r>."}
    )
    share_cpu: bool = field(
        default=True,
        metadata={
            "help": "On CPU, train and run the scale grid on the cores other processes leave idle (false: keep every "
            "thread)."
        },
    )


@dataclass
class RecipeArguments:
    recipe: str | None = field(
        default=None,
        metadata={
            "help": f"Set every flag below (and weight decay, betas, schedule, warm-up) to a recipe's values: "
            f"{', '.join(RECIPES)}. Flags given explicitly win."
        },
    )
    layer_decay: float | None = field(
        default=None,
        metadata={
            "help": "Layer-wise lr decay: layer l of depth+2 trains at lr * F ** (depth + 1 - l) (VideoMamba 0.8)."
        },
    )
    layer_decay_rule: str = field(
        default="depth",
        metadata={
            "help": "Layer ids for --layer_decay: 'depth' (block i is layer i + 1) or 'videomamba' (as VideoMamba's "
            "published models were fine-tuned: only the patch kernel, cls token and spatial position table decayed).",
            "choices": list(LAYER_DECAY_RULES),
        },
    )
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup Beta parameter; 0 disables (VideoMamba 0.8)."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix Beta parameter; 0 disables (VideoMamba 1.0)."})
    mixup_prob: float = field(default=1.0, metadata={"help": "Probability that a batch is mixed at all."})
    mixup_switch_prob: float = field(
        default=0.5, metadata={"help": "Probability of CutMix rather than Mixup when both are on."}
    )
    label_smoothing: float = field(
        default=0.0, metadata={"help": "Label smoothing of the (soft) targets (VideoMamba 0.1)."}
    )
    rand_augment: str | None = field(
        default=None,
        metadata={"help": "RandAugment in timm's notation, e.g. 'm7-n4-mstd0.5-inc1' (VideoMamba); 'none': off."},
    )
    random_erasing: float = field(default=0.0, metadata={"help": "Random erasing probability (VideoMamba 0.25)."})
    random_erasing_mode: str = field(default="pixel", metadata={"help": "Erased box fill: pixel, rand or const."})
    train_interpolation: str | None = field(
        default=None, metadata={"help": "Interpolation of training crops: bilinear or bicubic (VideoMamba)."}
    )
    repeated_augmentation: int = field(
        default=1, metadata={"help": "Copies of each video per batch, independently augmented (VideoMamba 2)."}
    )
    ema_decay: float | None = field(
        default=None, metadata={"help": "Keep an EMA of the weights (e.g. 0.9999), evaluated and saved under ema/."}
    )

    def __post_init__(self) -> None:
        if self.train_interpolation not in (None, "bilinear", "bicubic"):
            raise ValueError(f"--train_interpolation must be bilinear or bicubic; got {self.train_interpolation!r}.")
        self.mixing(num_labels=1)  # refuses values out of range now, not at the first batch (or never, when off)
        if self.rand_augment is not None and self.rand_augment.lower() in ("", "none", "off"):
            self.rand_augment = None  # lets `--rand_augment none` switch off a recipe's RandAugment

    def mixing(self, num_labels: int) -> MixupCutmix | None:
        """The collator's batch mixing and smoothing, or None when every one of them is off (the values are checked
        either way)."""
        mixing = MixupCutmix(
            num_labels,
            mixup_alpha=self.mixup_alpha,
            cutmix_alpha=self.cutmix_alpha,
            prob=self.mixup_prob,
            switch_prob=self.mixup_switch_prob,
            label_smoothing=self.label_smoothing,
        )
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0 and self.label_smoothing == 0:
            return None
        return mixing

    def summary(self) -> str:
        """The recipe's settings in words, for the model card."""
        return ", ".join(f"{f.name} {getattr(self, f.name)}" for f in dataclasses.fields(self))


def with_recipe(argv: list[str]) -> list[str]:
    """`argv` with the flags of its `--recipe` (if any) in front, so that flags given explicitly win."""
    for index, argument in enumerate(argv):
        name, _, value = argument.partition("=")
        if name == "--recipe":
            name = value or (argv[index + 1] if index + 1 < len(argv) else "")
            if name not in RECIPES:
                raise ValueError(f"Unknown --recipe {name!r}; choose one of {sorted(RECIPES)}.")
            return recipe_arguments(name) + argv
    return argv


def parse_overrides(text: str | None) -> dict[str, Any]:
    """'a=1,b=x' -> {'a': 1, 'b': 'x'} (values read as Python literals when they are)."""
    overrides = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value.strip()
    return overrides


def hub_dataset(args: DataArguments) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """Load `dataset_name` with `datasets`, keep videos undecoded (our processor decodes them), labels as indices."""
    loaded = datasets.load_dataset(args.dataset_name, args.dataset_config_name)
    validation_split = args.validation_split or "validation"
    splits = [args.train_split] + ([validation_split] if validation_split in loaded else [])
    loaded = datasets.DatasetDict({split: loaded[split] for split in splits})
    if isinstance(loaded[args.train_split].features[args.video_column], datasets.Video):
        loaded = loaded.cast_column(args.video_column, datasets.Video(decode=False))
    label_feature = loaded[args.train_split].features[args.label_column]
    if not isinstance(label_feature, datasets.ClassLabel):
        loaded = loaded.class_encode_column(args.label_column)
    loaded = loaded.rename_columns({args.video_column: "video", args.label_column: "label"})
    loaded = loaded.select_columns(["video", "label"])
    loaded.set_transform(_video_sources)
    return loaded[args.train_split], loaded.get(validation_split)


def benchmark_dataset(args: DataArguments) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """`--dataset_format` at `--fold`: the training split, and `--validation_split` or else the format's official
    evaluation split (left out, with a warning, if it is not there), labelled videos only, labels in training order."""
    if args.data_root is None:
        raise ValueError("--dataset_format needs --data_root, the folder the benchmark was unpacked into.")
    options = parse_dataset_options(args.dataset_options)
    list_file = options.get("list_file")
    if list_file is not None and "{split}" not in str(list_file):
        raise ValueError(
            f"--dataset_options list_file={list_file} would give training and validation the same videos: put "
            "{split} in it (e.g. list_file=lists/{split}.txt) so that each split reads its own list."
        )
    train = drop_unlabelled(
        load_video_dataset(args.dataset_format, args.data_root, args.train_split, args.fold, **options)
    )
    names = train.features["label"].names
    try:
        validation = load_evaluation_split(
            args.dataset_format, args.data_root, names, args.validation_split, args.fold, **options
        )
    except FileNotFoundError as err:
        if args.validation_split is not None:
            raise
        logger.warning("No validation set: %s", err)
        return train, None
    return train, validation


def _video_sources(batch: dict[str, list]) -> dict[str, list]:
    """Undecoded `Video` cells are {"path", "bytes"} dicts: hand the processor the bytes, or else the path."""
    batch["video"] = [v["bytes"] or v["path"] if isinstance(v, dict) else v for v in batch["video"]]
    return batch


def load_data(args: DataArguments) -> tuple[datasets.Dataset, datasets.Dataset | None, list[str]]:
    if args.dataset_name is not None:
        train, validation = hub_dataset(args)
    elif args.dataset_format is not None:
        train, validation = benchmark_dataset(args)
    elif args.train_dir is not None:
        train = folder_dataset(args.train_dir)
        class_names = train.features["label"].names
        validation = folder_dataset(args.validation_dir, class_names) if args.validation_dir else None
    else:
        raise ValueError(
            "Give --train_dir (class-per-folder videos), --dataset_format with --data_root, or --dataset_name."
        )
    # A random subset (class-sorted lists would keep only the first classes), fixed so that seeds compare alike
    if args.max_train_samples is not None:
        train = train.shuffle(seed=0).select(range(min(args.max_train_samples, len(train))))
    if validation is not None and args.max_eval_samples is not None:
        validation = validation.shuffle(seed=0).select(range(min(args.max_eval_samples, len(validation))))
    return train, validation, list(train.features["label"].names)


def load_model(args: ModelArguments, class_names: list[str]) -> StretchySnakeForVideoClassification:
    label_kwargs = {
        "num_labels": len(class_names),
        "id2label": dict(enumerate(class_names)),
        "label2id": {name: i for i, name in enumerate(class_names)},
    }
    overrides = parse_overrides(args.config_overrides)
    if args.model_name_or_path is not None:
        return AutoModelForVideoClassification.from_pretrained(
            args.model_name_or_path,
            ignore_mismatched_sizes=args.ignore_mismatched_sizes,
            **label_kwargs,
            **overrides,
        )
    if args.preset is None:
        raise ValueError("Give --model_name_or_path (fine-tune) or --preset (train from scratch).")
    return StretchySnakeForVideoClassification(
        StretchySnakeConfig.from_preset(args.preset, **label_kwargs, **overrides)
    )


def load_processor(
    model_args: ModelArguments, args: DataArguments, recipe: RecipeArguments
) -> StretchySnakeVideoProcessor:
    settings = {
        "sampling": args.sampling,
        "do_flip": args.do_flip,
        "crop_scale": (args.crop_scale_min, 1.0),
        "on_error": "skip" if args.skip_bad_videos else "raise",
        "rand_augment": recipe.rand_augment,
        "random_erasing": recipe.random_erasing,
        "random_erasing_mode": recipe.random_erasing_mode,
        "train_interpolation": recipe.train_interpolation,
    }
    path = model_args.model_name_or_path
    if path is not None and (Path(path) / "preprocessor_config.json").is_file():
        return StretchySnakeVideoProcessor.from_pretrained(path, **settings)
    return StretchySnakeVideoProcessor(**settings)


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Top-1 and top-5 accuracy with numpy (offline; no `evaluate.load`)."""
    logits, labels = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
    return {
        "top1_accuracy": top_k_accuracy(logits, labels, 1),
        "top5_accuracy": top_k_accuracy(logits, labels, min(5, logits.shape[-1])),
    }


def write_model_card(
    card_dir: str,
    model: StretchySnakeForVideoClassification,
    flex: FlexibleTrainingConfig,
    eval_scale: Scale,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe: RecipeArguments,
    metrics: dict[str, float],
    scale_results: list,
    ema: bool = False,
) -> None:
    """README.md (the library's model card) saying how the checkpoint was trained and evaluated, and how to load it;
    with `ema`, the card of the EMA weights (in the `ema/` folder)."""
    data = data_args.dataset_name or data_args.train_dir
    if data_args.dataset_name is None and data_args.dataset_format is not None:
        data = f"{data_args.dataset_format} fold {data_args.fold} ({data_args.data_root})"
    length = (
        f"{training_args.max_steps} steps"
        if training_args.max_steps > 0
        else f"{training_args.num_train_epochs} epochs"
    )
    schedule = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
    warmup_unit = " of the run" if 0 < training_args.warmup_steps < 1 else " steps"
    max_grad_norm = training_args.max_grad_norm or 0
    clipping = f"gradients clipped to norm {max_grad_norm}" if max_grad_norm > 0 else "no gradient clipping"
    training = f"""These weights: variant `{flex.variant}`, {len(flex.scales)} scales, frames {list(flex.frames)},
resolutions {list(flex.resolutions)}, patch sizes {list(flex.patch_sizes) if flex.patch_sizes else "per variant"},
token grid {flex.token_grid}, token budget {flex.max_tokens_per_step}, schedule seed {flex.seed} (the full config is
in `config.json` under `flexible_training`); {length}, learning rate {training_args.learning_rate}, per-device batch
{training_args.per_device_train_batch_size}, gradient accumulation {training_args.gradient_accumulation_steps}.

Fine-tuning recipe{f" `{recipe.recipe}`" if recipe.recipe else ""}: weight decay {training_args.weight_decay},
Adam betas ({training_args.adam_beta1}, {training_args.adam_beta2}), {clipping}, schedule `{schedule}`
{training_args.lr_scheduler_kwargs or ""}, warm-up {training_args.warmup_steps:g}{warmup_unit}; {recipe.summary()}."""
    if ema:
        training += (
            f"\n\nThese are the exponential moving average (decay {recipe.ema_decay}) of the weights one folder up."
        )
    lines = [f"| {key} | {value:.4f} |" for key, value in sorted(metrics.items()) if "accuracy" in key]
    views = ""
    if data_args.eval_num_clips * data_args.eval_num_crops > 1:
        views = f", {data_args.eval_num_clips} clips x {data_args.eval_num_crops} crops per video"
    results = (
        f"At {eval_scale.num_frames} frames, {eval_scale.image_size} px, patch {eval_scale.patch_size}{views}:\n\n"
        "| metric | value |\n|---|---|\n" + "\n".join(lines or ["| (no evaluation) | |"])
    )
    if scale_results and not ema:
        results += "\n\nTop-1 (%) over scales (`*`: not trained on; details in `scales.md`):\n\n"
        results += accuracy_grid_markdown(scale_results)
    card = render_model_card(
        model_id=card_dir,
        title=Path(card_dir).name,
        summary=f"A StretchySnake video classifier trained with `examples/train_flex.py` on `{data}`.",
        training=training,
        results=results,
        heatmap="scales.png" if scale_results and not ema else None,
        config=model.config,
        datasets=[data_args.dataset_name] if data_args.dataset_name else (),
        license=None if model_args.model_name_or_path else "apache-2.0",
    )
    Path(card_dir, "README.md").write_text(card)


class CardTrainer(FlexibleTrainer):
    """Writes this script's model card wherever the Trainer writes its own (`save_model`'s caller, `push_to_hub`)
    and into every checkpoint folder."""

    def __init__(self, *args: Any, write_card: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_card = write_card

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        if self.is_world_process_zero():
            self.write_cards(self.args.output_dir)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if self.is_world_process_zero():
            self.write_cards(
                os.path.join(self._get_output_dir(trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            )

    def write_cards(self, folder: str) -> None:
        """The card of the model saved in `folder`, and of its EMA in `folder/ema` when there is one."""
        self.write_card(folder)
        if self.ema is not None:
            self.write_card(os.path.join(folder, EMA_FOLDER), ema=True)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = HfArgumentParser((ModelArguments, DataArguments, FlexibleArguments, RecipeArguments, TrainingArguments))
    argv = with_recipe(sys.argv[1:] if argv is None else list(argv))
    model_args, data_args, flex_args, recipe, training_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())

    train_dataset, eval_dataset, class_names = load_data(data_args)
    transformers.set_seed(training_args.seed)  # the Trainer seeds only after the model exists: seed its initialization
    model = load_model(model_args, class_names)
    flex = FlexibleTrainingConfig(
        variant=flex_args.variant,
        frames=tuple(flex_args.frames),
        resolutions=tuple(flex_args.resolutions),
        patch_sizes=tuple(flex_args.patch_sizes) if flex_args.patch_sizes else None,
        token_grid=flex_args.token_grid,
        base_patch_size=flex_args.base_patch_size,
        seed=flex_args.flex_seed if flex_args.flex_seed is not None else training_args.seed,
        max_tokens_per_step=flex_args.max_tokens_per_step,
        tubelet_size=model.config.tubelet_size,  # token budgets count the model's tubelets
    )
    model.config.flexible_training = flex.to_dict()
    processor = load_processor(model_args, data_args, recipe)
    mixing = recipe.mixing(len(class_names))
    if mixing is not None and training_args.label_smoothing_factor:
        raise ValueError(
            f"--label_smoothing_factor {training_args.label_smoothing_factor} would smooth the mixed targets twice: "
            "give the smoothing as --label_smoothing."
        )
    eval_scale = Scale(
        data_args.eval_num_frames or model.config.num_frames,
        data_args.eval_image_size or model.config.image_size,
        data_args.eval_patch_size or model.config.patch_size,
    )
    metrics: dict[str, float] = {}
    scale_results: list = []
    logger.info("Flexible training %s over %d scales; evaluation at %s", flex.variant, len(flex.scales), eval_scale)

    trainer = CardTrainer(
        write_card=partial(
            write_model_card,
            model=model,
            flex=flex,
            eval_scale=eval_scale,
            model_args=model_args,
            data_args=data_args,
            training_args=training_args,
            recipe=recipe,
            metrics=metrics,
            scale_results=scale_results,
        ),
        model=model,
        args=training_args,
        data_collator=FlexibleVideoCollator(
            processor,
            ScaleSampler(flex),
            eval_scale=eval_scale,
            eval_num_clips=data_args.eval_num_clips,
            eval_num_crops=data_args.eval_num_crops,
            repeated_augmentation=recipe.repeated_augmentation,
            mixing=mixing,
        ),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        compute_metrics=compute_metrics,
        scale_log_file=flex_args.scale_log_file,
        layer_decay=recipe.layer_decay,
        layer_decay_rule=recipe.layer_decay_rule,
        ema_decay=recipe.ema_decay,
        share_cpu=flex_args.share_cpu,
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    metrics.update(result.metrics)
    trainer.save_model()
    trainer.save_state()
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
        if data_args.scale_grid_frames and data_args.scale_grid_resolutions:
            grid_processor = copy.deepcopy(processor)  # the saved processor keeps one view per video
            grid_processor.num_clips, grid_processor.num_crops = data_args.eval_num_clips, data_args.eval_num_crops
            scale_results += evaluate_scales(
                model,
                grid_processor,
                processor_videos(eval_dataset),
                eval_dataset["label"],
                data_args.scale_grid_frames,
                data_args.scale_grid_resolutions,
                batch_size=training_args.per_device_eval_batch_size,
                show_progress=not training_args.disable_tqdm,
                share_cpu=flex_args.share_cpu,
            )
            if trainer.is_world_process_zero():
                save_results(scale_results, training_args.output_dir, Path(training_args.output_dir).name)
    trainer.log_metrics("all", metrics)
    if trainer.is_world_process_zero():
        trainer.save_metrics("all", metrics)
        trainer.create_model_card()
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="StretchySnake flexible training")
    state = PartialState()
    state.wait_for_everyone()
    # The DDP wrapper goes while the group still exists: its reducer frees what it holds with the GIL held, so as the
    # group's last owner it would join gloo's worker threads while one of them waits for the GIL to free the tensors of
    # a finished collective (a hang, or an abort at interpreter exit). destroy_process_group frees the group with the
    # GIL released.
    trainer.model_wrapped = trainer.model
    state.destroy_process_group()
    return metrics


if __name__ == "__main__":
    main()
