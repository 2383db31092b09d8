"""VideoMamba's fine-tuning recipe: layer-wise lr decay, mixup/cutmix with smoothing, video-consistent RandAugment and
random erasing, repeated augmentation, EMA, and the collator and trainer pieces that apply them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from safetensors.torch import load_file
from transformers import HfArgumentParser, TrainingArguments
from transformers.testing_utils import CaptureLogger

from stretchysnake_hf import (
    StretchySnakeConfig,
    StretchySnakeForVideoClassification,
    StretchySnakeVideoProcessor,
    flexible_training,
)
from stretchysnake_hf.convert_videomamba import ORIGINAL_TO_PACKAGE
from stretchysnake_hf.flexible_training import (
    SEED_KEY,
    SOFT_LABELS_KEY,
    STEP_KEY,
    FlexibleTrainer,
    FlexibleTrainingConfig,
    FlexibleVideoCollator,
    ScaleSampler,
)
from stretchysnake_hf.mixing import MixupCutmix, smooth_one_hot, soft_target_cross_entropy
from stretchysnake_hf.optimization import ModelEma, has_weight_decay, layer_decay_parameter_groups, layer_id
from stretchysnake_hf.recipes import recipe_arguments
from stretchysnake_hf.video_augmentation import (
    INCREASING_OPERATIONS,
    OPERATIONS,
    RandAugmentSpec,
    apply_operation,
    parse_rand_augment,
    rand_augment,
    random_erase,
)


def tiny_model(depth: int = 4) -> StretchySnakeForVideoClassification:
    config = StretchySnakeConfig.from_preset(
        "tiny", hidden_size=16, num_hidden_layers=depth, image_size=16, patch_size=8, num_frames=2, num_labels=3
    )
    return StretchySnakeForVideoClassification(config)


# ---------------------------------------------------------------- layer-wise lr decay and weight decay


def test_layer_decay_groups_give_each_named_parameter_its_lr_and_weight_decay():
    model = tiny_model(depth=4)
    groups = layer_decay_parameter_groups(model, learning_rate=1e-3, weight_decay=0.05, layer_decay=0.5)
    settings = {name: (group["lr"], group["weight_decay"]) for group in groups for name in group["names"]}
    assert set(settings) == {name for name, _ in model.named_parameters()}
    # depth 4: embeddings are layer 0 (0.5 ** 5), block i is layer i + 1 (0.5 ** (4 - i)), head/final norm layer 5
    expected = {
        "stretchysnake.embeddings.cls_token": (1e-3 / 32, 0.0),
        "stretchysnake.embeddings.position_embeddings": (1e-3 / 32, 0.0),
        "stretchysnake.embeddings.temporal_position_embeddings": (1e-3 / 32, 0.0),
        "stretchysnake.embeddings.patch_embeddings.projection.weight": (1e-3 / 32, 0.05),
        "stretchysnake.embeddings.patch_embeddings.projection.bias": (1e-3 / 32, 0.0),
        "stretchysnake.layers.0.norm.weight": (1e-3 / 16, 0.0),
        "stretchysnake.layers.0.mixer.in_proj.weight": (1e-3 / 16, 0.05),
        "stretchysnake.layers.1.mixer.A_log": (1e-3 / 8, 0.05),  # 2-D: VideoMamba's factory decays it
        "stretchysnake.layers.1.mixer.D_b": (1e-3 / 8, 0.0),  # 1-D
        "stretchysnake.layers.2.mixer.conv1d_b.weight": (1e-3 / 4, 0.05),
        "stretchysnake.layers.3.mixer.dt_proj.bias": (1e-3 / 2, 0.0),
        "stretchysnake.layers.3.mixer.x_proj_b.weight": (1e-3 / 2, 0.05),
        "stretchysnake.norm_f.weight": (1e-3, 0.0),
        "classifier.weight": (1e-3, 0.05),
        "classifier.bias": (1e-3, 0.0),
    }
    for name, (lr, decay) in expected.items():
        assert settings[name] == pytest.approx((lr, decay)), name
    assert len(groups) == 12  # 6 layer ids x (decayed, not decayed)
    assert groups[0]["lr"] == 1e-3 and groups[-1]["lr"] == pytest.approx(1e-3 / 32)  # the logged lr is the base one


def test_layer_ids_see_through_wrappers_and_reject_unknown_names():
    assert layer_id("module.stretchysnake.layers.7.mixer.D", depth=24) == 8
    assert layer_id("_orig_mod.stretchysnake.layers.0._checkpoint_wrapped_module.norm.weight", depth=24) == 1
    assert layer_id("stretchysnake.norm_f.weight", depth=24) == 25
    with pytest.raises(ValueError, match="No layer-decay rule for parameter 'adapter.weight'"):
        layer_id("adapter.weight", depth=24)


def videomamba_layer_id(original_name: str, depth: int) -> int:
    """VideoMamba's `get_num_layer_for_vit` as it stands (its `layers` rule commented out), for its own names."""
    num_max_layer = depth + 2
    if original_name in ("cls_token", "mask_token", "pos_embed") or original_name.startswith("patch_embed"):
        return 0
    if original_name in ("class_embedding", "positional_embedding", "temporal_positional_embedding"):
        return 0
    return num_max_layer - 1


def test_videomamba_rule_gives_the_ids_of_videomamba_optimizer_factory():
    depth = 4
    model = tiny_model(depth)
    package_to_original = {package: original for original, package in ORIGINAL_TO_PACKAGE.items()}
    for name, _ in model.named_parameters():
        original = package_to_original.get(name, name.removeprefix("stretchysnake."))
        assert layer_id(name, depth, rule="videomamba") == videomamba_layer_id(original, depth), name
    groups = layer_decay_parameter_groups(model, 1e-3, 0.05, 0.5, rule="videomamba")
    rates = {name: group["lr"] for group in groups for name in group["names"]}
    decayed = {name for name, lr in rates.items() if lr < 1e-3}
    assert decayed == {
        "stretchysnake.embeddings.cls_token",
        "stretchysnake.embeddings.position_embeddings",
        "stretchysnake.embeddings.patch_embeddings.projection.weight",
        "stretchysnake.embeddings.patch_embeddings.projection.bias",
    }
    for name in decayed:
        assert rates[name] == pytest.approx(1e-3 * 0.5**5), name
    assert (
        rates["stretchysnake.embeddings.temporal_position_embeddings"] == rates["stretchysnake.layers.0.norm.weight"]
    )
    with pytest.raises(ValueError, match="Unknown layer-decay rule 'beit'; choose one of"):
        layer_decay_parameter_groups(model, 1e-3, 0.05, 0.5, rule="beit")


def test_frozen_parameters_are_left_out_and_bad_decay_is_refused():
    model = tiny_model(depth=2)
    model.stretchysnake.embeddings.requires_grad_(False)
    names = {n for g in layer_decay_parameter_groups(model, 1.0, 0.1, 0.9) for n in g["names"]}
    assert not any("embeddings" in name for name in names)
    with pytest.raises(ValueError, match="layer_decay must be in"):
        layer_decay_parameter_groups(model, 1.0, 0.1, 1.5)


# ---------------------------------------------------------------- mixup / cutmix and soft targets


def test_smoothed_targets_sum_to_one():
    targets = smooth_one_hot(torch.tensor([2, 0]), num_classes=4, smoothing=0.1)
    torch.testing.assert_close(targets[0], torch.tensor([0.025, 0.025, 0.925, 0.025]))
    torch.testing.assert_close(targets.sum(1), torch.ones(2))


class FixedDraw(MixupCutmix):
    """A MixupCutmix whose batch draw is given (the box is still drawn from the generator)."""

    def __init__(self, lam: float, use_cutmix: bool, **kwargs):
        super().__init__(**kwargs)
        object.__setattr__(self, "fixed", (lam, use_cutmix))

    def draw(self, rng):
        return self.fixed


def test_mixup_soft_labels_are_lambda_and_one_minus_lambda_plus_smoothing():
    video = torch.randn(4, 3, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    mixing = FixedDraw(0.7, False, num_classes=5, mixup_alpha=0.8, label_smoothing=0.1)
    mixed, targets = mixing(video, labels, np.random.default_rng(0))
    torch.testing.assert_close(mixed, 0.7 * video + 0.3 * video.flip(0))
    off = 0.1 / 5
    expected = torch.full((4, 5), off)
    for i, (own, other) in enumerate(zip(labels.tolist(), labels.flip(0).tolist(), strict=True)):
        expected[i, own] += 0.7 * (1 - 0.1)
        expected[i, other] += 0.3 * (1 - 0.1)
    torch.testing.assert_close(targets, expected)
    torch.testing.assert_close(targets.sum(1), torch.ones(4))


def test_cutmix_box_is_the_same_on_every_frame_and_its_area_sets_lambda():
    video = torch.arange(2 * 4 * 3 * 32 * 32, dtype=torch.float32).view(2, 4, 3, 32, 32)
    mixing = FixedDraw(0.6, True, num_classes=3, cutmix_alpha=1.0)
    mixed, targets = mixing(video, torch.tensor([0, 1]), np.random.default_rng(3))
    pasted = mixed != video  # (batch, frames, channels, H, W)
    box = pasted[0, 0, 0]
    assert box.any()
    assert all(torch.equal(pasted[b, t, c], box) for b in range(2) for t in range(4) for c in range(3))
    torch.testing.assert_close(mixed[0][:, :, box], video[1][:, :, box])  # the box comes from the reversed batch
    rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
    area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert box.sum() == area  # one rectangle
    lam = 1 - area.item() / (32 * 32)
    torch.testing.assert_close(targets, torch.tensor([[lam, 1 - lam, 0.0], [1 - lam, lam, 0.0]]))


def test_mixing_draws_follow_the_probabilities():
    rng = np.random.default_rng(0)
    both = MixupCutmix(3, mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5)
    kinds = [both.draw(rng)[1] for _ in range(2000)]
    assert 0.45 < np.mean(kinds) < 0.55
    never = MixupCutmix(3, mixup_alpha=0.8, prob=0.0)
    assert all(never.draw(rng) == (1.0, False) for _ in range(100))
    lams = [MixupCutmix(3, mixup_alpha=0.8).draw(rng)[0] for _ in range(4000)]
    assert np.mean(lams) == pytest.approx(0.5, abs=0.03) and np.var(lams) == pytest.approx(1 / 10.4, abs=0.01)


def test_soft_target_cross_entropy_matches_hard_cross_entropy_on_one_hot_targets():
    logits, labels = torch.randn(6, 4), torch.tensor([0, 3, 1, 1, 2, 0])
    expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2)
    actual = soft_target_cross_entropy(logits, smooth_one_hot(labels, 4, 0.2))
    torch.testing.assert_close(actual, expected)


# ---------------------------------------------------------------- RandAugment and random erasing


def test_rand_augment_spec_reads_timms_notation():
    assert parse_rand_augment("m7-n4-mstd0.5-inc1") == RandAugmentSpec(7, 4, 0.5, True)
    assert parse_rand_augment("rand-m9-n2") == RandAugmentSpec(9, 2, 0.0, False)
    assert parse_rand_augment("rand-m7-n4-mstd0.5-inc1").operations == INCREASING_OPERATIONS
    with pytest.raises(ValueError, match="cannot read 'w0'"):
        parse_rand_augment("rand-m9-w0")
    with pytest.raises(ValueError, match="0 <= m <= 10"):
        parse_rand_augment("m12-n2")


def pil_reference(image: np.ndarray, name: str, argument: float) -> np.ndarray:
    pil = Image.fromarray(image)
    ops = {
        "Invert": lambda: ImageOps.invert(pil),
        "AutoContrast": lambda: ImageOps.autocontrast(pil),
        "Equalize": lambda: ImageOps.equalize(pil),
        "Posterize": lambda: ImageOps.posterize(pil, int(argument)),
        "Solarize": lambda: ImageOps.solarize(pil, argument),
        "Brightness": lambda: ImageEnhance.Brightness(pil).enhance(argument),
        "Color": lambda: ImageEnhance.Color(pil).enhance(argument),
        "Contrast": lambda: ImageEnhance.Contrast(pil).enhance(argument),
        "Sharpness": lambda: ImageEnhance.Sharpness(pil).enhance(argument),
    }
    return np.asarray(ops[name]())


@pytest.mark.parametrize(
    "name, level, argument",
    [
        ("Invert", 5, None),
        ("AutoContrast", 5, None),
        ("Equalize", 5, None),
        ("Posterize", 7, 2),  # int(7 / 10 * 4) bits kept
        ("Solarize", 3, 76),  # int(3 / 10 * 256)
        ("Brightness", 7, 1.36),  # 7 / 10 * 1.8 + 0.1
        ("Color", 2, 0.46),
        ("Contrast", 8, 1.54),
        ("Sharpness", 9, 1.72),
    ],
)
def test_colour_operations_match_pil(name, level, argument):
    """Our float operations against PIL's on the same uint8 frame (PIL rounds to uint8: tolerance of a few levels)."""
    rng = np.random.default_rng(0)
    image = (rng.random((24, 20, 3)) * 160 + 40).astype(np.uint8)
    clip = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    ours = apply_operation(clip, name, level)[0].permute(1, 2, 0).numpy() * 255
    reference = pil_reference(image, name, argument).astype(np.float64)
    tolerance = 4.5 if name in ("Equalize", "Contrast") else 1.5  # PIL rounds its histogram means and LUTs
    assert np.abs(ours - reference).max() <= tolerance, (name, np.abs(ours - reference).max())


def test_geometric_operations_turn_and_shift_like_pil():
    clip = torch.rand(2, 3, 17, 17)
    # a quarter turn counter-clockwise (level 10 of 30 degrees is 30; level 30/10*... use the angle directly)
    turned = apply_operation(clip, "Rotate", 10.0 * 90 / 30, sign=1.0, mode="bilinear")
    torch.testing.assert_close(turned, torch.rot90(clip, 1, dims=(2, 3)), atol=1e-4, rtol=0)
    # PIL's translate by +pct samples x + pct * width: the content moves left; uncovered pixels are grey 128
    shifted = apply_operation(clip, "TranslateXRel", 10.0 * (4 / 17) / 0.45, sign=1.0, mode="bilinear")
    torch.testing.assert_close(shifted[..., :-4], clip[..., 4:], atol=1e-4, rtol=0)
    torch.testing.assert_close(shifted[..., -3:], torch.full_like(shifted[..., -3:], 128 / 255))


def test_every_operation_keeps_shape_and_range():
    clip = torch.rand(3, 3, 20, 24)
    for name in set(OPERATIONS + INCREASING_OPERATIONS):
        for sign in (-1.0, 1.0):
            out = apply_operation(clip, name, 9.0, sign)
            assert out.shape == clip.shape and out.min() >= 0 and out.max() <= 1, name


def test_rand_augment_is_the_same_on_every_frame_and_differs_between_clips():
    frame = torch.rand(3, 32, 32)
    clip = frame.expand(6, 3, 32, 32).clone()
    spec = parse_rand_augment("m9-n4-mstd0.5-inc1")
    generator = torch.Generator().manual_seed(0)
    outputs = [rand_augment(clip, spec, generator) for _ in range(8)]
    for out in outputs:
        torch.testing.assert_close(out, out[:1].expand_as(out))  # frames stay identical
    assert sum(not torch.allclose(a, b) for a, b in zip(outputs, outputs[1:], strict=False)) >= 6
    again = [rand_augment(clip, spec, torch.Generator().manual_seed(0)) for _ in range(1)]
    torch.testing.assert_close(again[0], outputs[0])  # seeded: reproducible


def test_random_erasing_erases_one_box_on_every_frame():
    clip = torch.zeros(5, 3, 40, 40)
    generator = torch.Generator().manual_seed(0)
    boxes = []
    for _ in range(6):
        erased = random_erase(clip, 1.0, "pixel", generator)
        mask = (erased != 0).any(1)  # (frames, H, W)
        assert all(torch.equal(mask[t], mask[0]) for t in range(5))
        area = mask[0].sum().item() / (40 * 40)
        assert 0.015 < area < 1 / 3 + 0.02
        assert not torch.equal(erased[0], erased[1])  # pixel noise is drawn per frame
        boxes.append(mask[0])
    assert len({tuple(b.nonzero()[0].tolist()) for b in boxes}) > 1
    assert torch.equal(random_erase(clip, 0.0, "pixel", generator), clip)
    const = random_erase(torch.ones(2, 3, 40, 40), 1.0, "const", generator)
    assert (const == 0).any() and torch.equal(const[0], const[1])
    with pytest.raises(ValueError, match="random erasing mode"):
        random_erase(clip, 1.0, "noise", generator)


def test_processor_applies_the_augmentations_per_clip_and_repeats_videos():
    frame = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    video = np.repeat(frame[None], 8, axis=0)  # every frame the same: any difference between frames is a bug
    processor = StretchySnakeVideoProcessor(
        rand_augment="m9-n4-mstd0.5-inc1", random_erasing=1.0, random_erasing_mode="const", do_flip=True
    )
    out = processor([video, video], num_frames=4, size=32, training=True, seed=5, repeated_augmentation=3)
    pixels = out["pixel_values"]
    assert pixels.shape == (6, 4, 3, 32, 32)
    for clip in pixels:
        torch.testing.assert_close(clip, clip[:1].expand_as(clip))
    assert all(not torch.equal(pixels[i], pixels[j]) for i in range(6) for j in range(i))  # copies differ
    again = processor([video, video], num_frames=4, size=32, training=True, seed=5, repeated_augmentation=3)
    torch.testing.assert_close(again["pixel_values"], pixels)
    evaluation = processor(video, num_frames=4, size=32, repeated_augmentation=3)["pixel_values"]
    assert evaluation.shape == (1, 4, 3, 32, 32)  # evaluation: no augmentation, no copies
    with pytest.raises(ValueError, match="cannot read"):
        StretchySnakeVideoProcessor(rand_augment="m9-x4")
    with pytest.raises(ValueError, match="random_erasing must be a probability"):
        StretchySnakeVideoProcessor(random_erasing=1.5)


# ---------------------------------------------------------------- collator: copies, budget, mixing


def test_collator_repeats_mixes_and_seeds_from_the_batch():
    config = FlexibleTrainingConfig("fixed", frames=(2,), resolutions=(16,), base_patch_size=8)
    videos = [np.full((6, 20, 20, 3), 40 * i, dtype=np.uint8) for i in range(4)]
    examples = [{"video": v, "label": i, STEP_KEY: 0, SEED_KEY: 11} for i, v in enumerate(videos)]
    collator = FlexibleVideoCollator(
        StretchySnakeVideoProcessor(),
        ScaleSampler(config),
        repeated_augmentation=2,
        mixing=MixupCutmix(4, mixup_alpha=0.8, label_smoothing=0.1),
    )
    batch = collator(examples)
    assert batch["pixel_values"].shape == (8, 2, 3, 16, 16) and "labels" not in batch
    soft = batch[SOFT_LABELS_KEY]
    torch.testing.assert_close(soft.sum(1), torch.ones(8))
    # copies are contiguous: rows 2k and 2k+1 hold video k; mixed with the reversed batch (7 - i)
    lam = (soft[0, 0] - 0.1 / 4) / 0.9
    torch.testing.assert_close(soft[1, 0], soft[0, 0])
    torch.testing.assert_close(soft[0, 3], (1 - lam) * 0.9 + 0.1 / 4)
    again = collator(examples)
    torch.testing.assert_close(again["pixel_values"], batch["pixel_values"])
    torch.testing.assert_close(again[SOFT_LABELS_KEY], soft)


def test_collator_budget_counts_every_copy():
    config = FlexibleTrainingConfig(
        "fixed", frames=(2,), resolutions=(16,), base_patch_size=8, max_tokens_per_step=5 * 9
    )  # 9 tokens per clip: 5 clips fit
    videos = [{"video": np.zeros((4, 16, 16, 3), np.uint8), "label": 0, STEP_KEY: 0, SEED_KEY: 1}] * 4
    collator = FlexibleVideoCollator(StretchySnakeVideoProcessor(), ScaleSampler(config), repeated_augmentation=2)
    batch = collator(videos)
    assert batch["pixel_values"].shape[0] == 4 and batch["labels"].tolist() == [0, 0, 0, 0]  # 2 videos x 2 copies
    small = FlexibleTrainingConfig("fixed", frames=(2,), resolutions=(16,), base_patch_size=8, max_tokens_per_step=9)
    with pytest.raises(ValueError, match="cannot hold the 2 copies"):
        FlexibleVideoCollator(StretchySnakeVideoProcessor(), ScaleSampler(small), repeated_augmentation=2)


# ---------------------------------------------------------------- EMA


def test_ema_after_three_steps_follows_the_formula():
    model = torch.nn.Linear(3, 2)
    model.register_buffer("count", torch.tensor(0))
    start = model.weight.detach().clone()
    ema = ModelEma(model, decay=0.9)
    values = []
    for step in range(1, 4):
        with torch.no_grad():
            model.weight.add_(step)
            model.count += 1
        values.append(model.weight.detach().clone())
        ema.update(model)
    expected = start
    for value in values:
        expected = 0.9 * expected + 0.1 * value
    # by hand: start + 0.1 * (0.81 * 1 + 0.9 * 3 + 6) = start + 0.951
    torch.testing.assert_close(expected, start + 0.951)
    torch.testing.assert_close(ema.module.weight, expected)
    assert ema.module.count.item() == 3 and not ema.module.weight.requires_grad
    with ema.swapped_into(model):
        torch.testing.assert_close(model.weight, expected)
    torch.testing.assert_close(model.weight, values[-1])
    with pytest.raises(ValueError, match="EMA decay"):
        ModelEma(model, 1.0)


def test_recipe_flags():
    flags = recipe_arguments("videomamba")
    values = dict(zip(flags[::2], flags[1::2], strict=True))
    assert values["--layer_decay"] == "0.8" and values["--rand_augment"] == "rand-m7-n4-mstd0.5-inc1"
    assert values["--layer_decay_rule"] == "videomamba"
    assert (
        values["--mixup_alpha"] == "0.8" and values["--cutmix_alpha"] == "1.0" and values["--random_erasing"] == "0.25"
    )
    with pytest.raises(ValueError, match="Unknown recipe 'deit'"):
        recipe_arguments("deit")


# ---------------------------------------------------------------- the trainer: accumulation, weight decay, best model


class TensorProcessor:
    """Stands in for the video processor: each example's video is already a (frames, 3, size, size) tensor at the
    one scale of the "fixed" variant, so a clip is the same whatever batch it lands in."""

    def __call__(self, videos, num_frames, size, patch_size, training, seed, return_tensors, num_clips, num_crops):
        return {"pixel_values": torch.stack(videos), "patch_size": patch_size}

    def save_pretrained(self, folder):
        pass


class UndecodableProcessor(TensorProcessor):
    """Stands in for a processor with `on_error="skip"` that can decode none of the videos."""

    def __call__(self, videos, num_frames, size, patch_size, training, seed, return_tensors, num_clips, num_crops):
        empty = torch.empty(0, *videos[0].shape)
        return {"pixel_values": empty, "patch_size": patch_size, "skipped_indices": list(range(len(videos)))}


def tiny_trainer(
    tmp_path, batch_size=4, accumulation=1, mixing=None, ema_decay=None, processor=None, **arguments
) -> FlexibleTrainer:
    torch.manual_seed(0)
    model = tiny_model(depth=2)
    videos = torch.randn(4, 2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    dataset = [{"video": video, "label": i % 3} for i, video in enumerate(videos)]
    config = FlexibleTrainingConfig("fixed", frames=(2,), resolutions=(16,), base_patch_size=8)
    arguments = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": batch_size,
        "gradient_accumulation_steps": accumulation,
        "max_steps": 1,
        "optim": "sgd",
        "learning_rate": 0.5,
        "lr_scheduler_type": "constant",
        "max_grad_norm": 0.0,
        "weight_decay": 0.0,
        "remove_unused_columns": False,
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": True,
        "save_strategy": "no",
        **arguments,
    }
    collator = FlexibleVideoCollator(
        processor or TensorProcessor(), ScaleSampler(config), eval_scale=(2, 16, 8), mixing=mixing
    )
    return FlexibleTrainer(
        model=model,
        args=TrainingArguments(**arguments),
        data_collator=collator,
        train_dataset=dataset,
        eval_dataset=dataset[:2],
        ema_decay=ema_decay,
        share_cpu=False,
    )


@pytest.mark.parametrize("mixing", [None, MixupCutmix(3, label_smoothing=0.1)], ids=["hard_labels", "soft_labels"])
def test_accumulated_micro_batches_train_like_one_batch(tmp_path, mixing):
    """The 4 clips as one batch, or as 2 micro-batches of 2 accumulated: the same loss and the same SGD step."""
    results = []
    for batch_size, accumulation in ((4, 1), (2, 2)):
        trainer = tiny_trainer(tmp_path / f"{batch_size}x{accumulation}", batch_size, accumulation, mixing)
        start = {name: value.detach().clone() for name, value in trainer.model.named_parameters()}
        loss = trainer.train().training_loss
        steps = {name: value.detach() - start[name] for name, value in trainer.model.named_parameters()}
        results.append((loss, steps))
    (loss, steps), (accumulated_loss, accumulated_steps) = results
    assert accumulated_loss == pytest.approx(loss, rel=1e-5)
    assert steps["classifier.weight"].abs().max() > 1e-3
    for name, step in steps.items():
        torch.testing.assert_close(accumulated_steps[name], step, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("mixing", [None, MixupCutmix(3, label_smoothing=0.1)], ids=["hard_labels", "soft_labels"])
def test_a_micro_batch_with_no_decodable_video_trains_with_zero_loss(tmp_path, mixing):
    """Every video of the step fails to decode: the step runs on one blank clip, with zero loss and zero gradients, so
    plain SGD leaves the weights as they were (the model used to refuse the empty batch, ending the run)."""
    trainer = tiny_trainer(tmp_path, mixing=mixing, processor=UndecodableProcessor())
    start = {name: value.detach().clone() for name, value in trainer.model.named_parameters()}
    with CaptureLogger(flexible_training.logger) as captured:
        assert trainer.train().training_loss == 0.0
    assert "No video of a micro-batch of step 0 could be decoded" in captured.out
    for name, value in trainer.model.named_parameters():
        assert torch.equal(value.detach(), start[name]), name


def test_recipe_does_not_clip_gradients(tmp_path):
    """VideoMamba's --clip_grad is unset: the recipe steps exactly as without clipping, where the Trainer's default
    (1.0) shortens this step (a classifier 10x its initial scale gives a gradient norm above 1)."""
    arguments, _ = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(
        recipe_arguments("videomamba") + ["--output_dir", str(tmp_path)], return_remaining_strings=True
    )
    steps = []
    for max_grad_norm in (arguments.max_grad_norm, 1e9, 1.0):
        trainer = tiny_trainer(tmp_path / str(max_grad_norm), max_grad_norm=max_grad_norm)
        with torch.no_grad():
            trainer.model.classifier.weight.mul_(10)
        start = [value.detach().clone() for value in trainer.model.parameters()]
        trainer.train()
        moved = zip(trainer.model.parameters(), start, strict=True)
        steps.append(torch.cat([(value.detach() - first).flatten() for value, first in moved]))
    recipe, unclipped, clipped = steps
    torch.testing.assert_close(recipe, unclipped, rtol=0, atol=0)
    assert clipped.norm() < 0.9 * unclipped.norm()


def test_layer_decay_refuses_an_optimizer_that_would_bypass_it(tmp_path):
    trainer = tiny_trainer(tmp_path)
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="layer_decay=0.8 builds the optimizer's parameter groups, and `optimizers`"):
        FlexibleTrainer(
            model=trainer.model,
            args=trainer.args,
            data_collator=trainer.data_collator,
            train_dataset=trainer.train_dataset,
            optimizers=(optimizer, None),
            layer_decay=0.8,
            share_cpu=False,
        )


def test_weight_decay_follows_videomamba_without_layer_decay(tmp_path):
    trainer = tiny_trainer(tmp_path, weight_decay=0.05)
    decay_of = {
        id(p): group["weight_decay"] for group in trainer.create_optimizer().param_groups for p in group["params"]
    }
    decay = {name: decay_of[id(parameter)] for name, parameter in trainer.model.named_parameters()}
    assert decay == {
        name: 0.05 if has_weight_decay(name, parameter) else 0.0
        for name, parameter in trainer.model.named_parameters()
    }
    exempt = {name.removeprefix("stretchysnake.") for name, value in decay.items() if value == 0.0}
    for name in ("embeddings.cls_token", "embeddings.position_embeddings", "layers.0.mixer.D", "norm_f.weight"):
        assert name in exempt
    assert decay["stretchysnake.layers.1.mixer.in_proj.weight"] == decay["stretchysnake.layers.1.mixer.A_log"] == 0.05


def test_ema_is_evaluated_once_on_each_of_a_dict_of_datasets(tmp_path, monkeypatch):
    trainer = tiny_trainer(tmp_path, batch_size=2, ema_decay=0.5)
    trainer.train()
    prefixes = []
    evaluation_loop = trainer.evaluation_loop

    def counting_loop(*args, metric_key_prefix="eval", **kwargs):
        prefixes.append(metric_key_prefix)
        return evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)

    monkeypatch.setattr(trainer, "evaluation_loop", counting_loop)
    videos = trainer.eval_dataset
    metrics = trainer.evaluate({"first": videos[:1], "second": videos[1:]})
    assert sorted(prefixes) == ["eval_first", "eval_first_ema", "eval_second", "eval_second_ema"]
    assert {key for key in metrics if key.endswith("_loss")} == {f"{prefix}_loss" for prefix in prefixes}
    with trainer.ema.swapped_into(trainer.model):
        ema_loss = trainer.evaluate(videos[1:], metric_key_prefix="check")["check_loss"]
    assert metrics["eval_second_ema_loss"] == pytest.approx(ema_loss)
    assert metrics["eval_second_loss"] != pytest.approx(ema_loss)


def test_loading_the_best_model_at_the_end_brings_its_ema(tmp_path):
    trainer = tiny_trainer(
        tmp_path,
        batch_size=2,
        ema_decay=0.5,
        max_steps=3,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="steps",
        save_steps=1,
        load_best_model_at_end=True,
        metric_for_best_model="score",
    )
    scores = {1: 3.0, 2: 1.0, 3: 2.0}  # the model after step 1 scores best
    trainer.compute_metrics = lambda prediction: {"score": scores[trainer.state.global_step]}
    trainer.train()
    best = tmp_path / "checkpoint-1"
    assert trainer.state.best_model_checkpoint == str(best)
    saved_ema, last_ema = (
        load_file(tmp_path / name / "ema" / "model.safetensors") for name in ("checkpoint-1", "checkpoint-3")
    )
    assert any(not torch.equal(saved_ema[name], last_ema[name]) for name in saved_ema)
    for name, value in trainer.ema.module.state_dict().items():
        torch.testing.assert_close(value, saved_ema[name], rtol=0, atol=0, msg=name)


def test_resuming_must_skip_the_batches_already_trained_on(tmp_path):
    with pytest.raises(ValueError, match="ignore_data_skip=False"):
        tiny_trainer(tmp_path, ignore_data_skip=True)
