"""Scale schedule, variants, step-tagging batch sampler and collator of flexible training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.testing_utils import CaptureLogger
from transformers.trainer_utils import EvalPrediction

from stretchysnake_hf import StretchySnakeConfig, StretchySnakeVideoProcessor, flexible_training
from stretchysnake_hf.flexible_training import (
    SEED_KEY,
    STEP_KEY,
    UNDECODED_LABEL,
    VARIANTS,
    VIEWS_KEY,
    FlexibleTrainingConfig,
    FlexibleVideoCollator,
    Scale,
    ScaleSampler,
    StepBatchSampler,
    StepTaggedDataset,
    _scoring_decoded_videos,
)
from stretchysnake_hf.geometry import sequence_length

CONFIGS = {
    "static_tokens": FlexibleTrainingConfig("static_tokens"),
    "static_patch": FlexibleTrainingConfig("static_patch"),
    "flexi_patch": FlexibleTrainingConfig("flexi_patch", resolutions=(224,)),
    "random": FlexibleTrainingConfig("random"),
    "temporal_only": FlexibleTrainingConfig("temporal_only", resolutions=(224,)),
    "fixed": FlexibleTrainingConfig("fixed", frames=(16,), resolutions=(224,)),
}


def schedule(config: FlexibleTrainingConfig, steps: int) -> list[Scale]:
    sampler = ScaleSampler(config)
    return [sampler.scale_for_step(step) for step in range(steps)]


def test_every_variant_has_a_config():
    assert set(CONFIGS) == set(VARIANTS)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_invariants_and_coverage(variant):
    config = CONFIGS[variant]
    scales = schedule(config, 2000)
    for num_frames, image_size, patch_size in scales:
        assert image_size % patch_size == 0
        assert num_frames in config.frames
    frames = {s.num_frames for s in scales}
    sizes = {s.image_size for s in scales}
    patches = {s.patch_size for s in scales}
    grids = {s.image_size // s.patch_size for s in scales}
    if variant == "static_tokens":
        assert grids == {14} and patches == {7, 9, 16, 27}  # p = round(S / 14) for S in 96, 128, 224, 384
    elif variant == "static_patch":
        assert patches == {16} and sizes == {96, 128, 224, 384} and len(grids) == 4
    elif variant == "flexi_patch":
        assert sizes == {224} and patches == {8, 14, 16, 28, 32}
    elif variant == "random":
        assert sizes == {96, 128, 224, 384} and len(patches) > 3
    elif variant == "temporal_only":
        assert sizes == {224} and patches == {16}
    if variant == "fixed":
        assert set(scales) == {Scale(16, 224, 16)}
    else:
        assert frames == {8, 16, 32, 64}
    assert set(scales) == set(config.scales)  # every scale of the support is drawn


def test_schedule_is_a_pure_function_of_seed_and_step():
    config = FlexibleTrainingConfig("random", seed=3)
    forward = schedule(config, 50)
    backward = [ScaleSampler(config).scale_for_step(step) for step in reversed(range(50))][::-1]
    assert forward == backward == schedule(FlexibleTrainingConfig("random", seed=3), 50)
    assert forward != schedule(FlexibleTrainingConfig("random", seed=4), 50)
    assert len(set(forward)) > 10
    with pytest.raises(ValueError, match="non-negative"):
        ScaleSampler(config).scale_for_step(-1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "sideways"}, "Unknown flexible-training variant"),
        ({"variant": "static_patch", "resolutions": (96, 100)}, "100 is not divisible by patch size 16"),
        ({"variant": "flexi_patch"}, "holds the resolution fixed"),
        ({"variant": "flexi_patch", "resolutions": (224,), "patch_sizes": (16, 15)}, "not divisible by patch size 15"),
        ({"variant": "fixed", "resolutions": (224,)}, "holds the frame count fixed"),
        ({"variant": "temporal_only", "resolutions": (224,), "patch_sizes": (8, 16)}, "holds the patch size fixed"),
        ({"variant": "random", "resolutions": (97,)}, "no patch size"),
        ({"variant": "static_tokens", "frames": ()}, "non-empty"),
        ({"variant": "static_tokens", "frames": (8, 0)}, "positive"),
        ({"variant": "static_tokens", "token_grid": 0}, "token_grid must be a positive integer; got 0"),
        ({"variant": "static_tokens", "max_tokens_per_step": 1000}, "cannot hold one clip"),
        ({"variant": "flexi_patch", "resolutions": (97,)}, "no patch size in .* divides resolution 97"),
        ({"variant": "static_tokens", "seed": -1}, "seed must be a non-negative integer; got -1"),
        ({"variant": "static_tokens", "token_grid": 2.5}, "token_grid must be a positive integer; got 2.5"),
        ({"variant": "static_tokens", "frames": (8, 8, 16)}, r"frames lists a value twice \(\(8, 8, 16\)\)"),
    ],
)
def test_invalid_combinations_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlexibleTrainingConfig(**kwargs)


def test_config_round_trips_through_a_model_config(tmp_path):
    flex = FlexibleTrainingConfig("static_tokens", frames=(4, 8), resolutions=(32, 64), token_grid=4, seed=7)
    config = StretchySnakeConfig(hidden_size=32, num_hidden_layers=2, image_size=32, patch_size=8)
    config.flexible_training = flex.to_dict()
    config.save_pretrained(tmp_path)
    loaded = StretchySnakeConfig.from_pretrained(tmp_path)
    assert FlexibleTrainingConfig.from_dict(loaded.flexible_training) == flex


def test_token_budget_cuts_every_micro_batch_of_a_step_alike():
    clip = sequence_length(64, 384, 16)  # 1 + 64 * 24**2: the cls token counts
    config = FlexibleTrainingConfig("static_patch", frames=(8, 64), max_tokens_per_step=2 * clip)
    sampler = ScaleSampler(config)
    assert sampler.batch_size_for(Scale(64, 384, 16), 8) == 2
    assert sampler.batch_size_for(Scale(8, 384, 16), 8) == 8
    assert sampler.batch_size_for(Scale(8, 96, 16), 8) == 8
    assert ScaleSampler(FlexibleTrainingConfig("static_patch")).batch_size_for(Scale(64, 384, 16), 8) == 8


def test_step_batch_sampler_follows_the_trainers_step_count():
    """K micro-batches per epoch and accumulation G: epoch e, batch k belongs to step e * ceil(K / G) + k // G."""
    ranks = [
        StepBatchSampler(23, batch_size=2, gradient_accumulation_steps=2, num_processes=2, process_index=r)
        for r in (0, 1)
    ]
    assert len(ranks[0]) == 5 and ranks[0].updates_per_epoch == 3
    for epoch in (0, 1):
        seen = []
        for sampler in ranks:
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert [batch[0][1] for batch in batches] == [3 * epoch + k // 2 for k in range(5)]
            for batch in batches:
                assert (
                    len(batch) == 2 and len({step for _, step, _ in batch}) == 1 and len({s for *_, s in batch}) == 1
                )
            seen += [index for batch in batches for index, _, _ in batch]
        assert len(seen) == len(set(seen)) == 20  # the processes split the data; 3 examples dropped
    ranks[0].set_epoch(0)
    first = [i for batch in ranks[0] for i, _, _ in batch]
    ranks[0].set_epoch(1)
    assert first != [i for batch in ranks[0] for i, _, _ in batch]
    with pytest.raises(ValueError, match="cannot fill one batch"):
        StepBatchSampler(3, batch_size=2, num_processes=2)


def test_seeds_do_not_share_epoch_orders():
    """Runs with neighbouring seeds are replicates: no epoch of one repeats an epoch of the other."""
    orders = {}
    for seed in range(3):
        sampler = StepBatchSampler(40, batch_size=4, seed=seed)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            orders[seed, epoch] = tuple(i for batch in sampler for i, _, _ in batch)
    assert len(set(orders.values())) == len(orders)


class RecordingProcessor:
    """Stands in for the video processor: records each call, returns zeros of the requested shape."""

    def __init__(self, skip=()):
        self.calls, self.skip = [], set(skip)

    def __call__(self, videos, num_frames, size, patch_size, training, seed, return_tensors, num_clips, num_crops):
        self.calls.append(
            {"videos": videos, "scale": (num_frames, size, patch_size), "training": training, "seed": seed}
        )
        kept = [v for i, v in enumerate(videos) if i not in self.skip]
        output = {"pixel_values": torch.zeros(len(kept), num_frames or 1, 3, size or 1, size or 1)}
        if patch_size is not None:
            output["patch_size"] = patch_size
        if self.skip:
            output["skipped_indices"] = sorted(self.skip)
        return output


def tagged(step, seed=5, count=4):
    return [{"video": f"v{i}.mp4", "label": i, STEP_KEY: step, SEED_KEY: seed} for i in range(count)]


def test_collator_trains_at_the_scale_of_the_batch_step():
    config = FlexibleTrainingConfig("static_tokens", frames=(2, 4), resolutions=(16, 32), token_grid=4)
    sampler, processor = ScaleSampler(config), RecordingProcessor()
    collator = FlexibleVideoCollator(processor, sampler, eval_scale=(4, 32, 8))
    for step in range(6):
        batch = collator(tagged(step))
        expected = sampler.scale_for_step(step)
        assert processor.calls[-1] == {
            "videos": ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"],
            "scale": tuple(expected),
            "training": True,
            "seed": 5,
        }
        assert batch["pixel_values"].shape == (4, expected.num_frames, 3, expected.image_size, expected.image_size)
        assert batch["patch_size"] == expected.patch_size and batch[STEP_KEY] == step
        assert batch["labels"].tolist() == [0, 1, 2, 3]
    batch = collator([{"video": "e.mp4", "label": 2}])
    assert processor.calls[-1]["scale"] == (4, 32, 8) and processor.calls[-1]["training"] is False
    assert STEP_KEY not in batch and batch["labels"].tolist() == [2]


def test_collator_cuts_to_the_token_budget_and_drops_skipped_videos():
    config = FlexibleTrainingConfig(
        "fixed", frames=(4,), resolutions=(32,), base_patch_size=8, max_tokens_per_step=130
    )
    processor = RecordingProcessor(skip={1})
    batch = FlexibleVideoCollator(processor, ScaleSampler(config))(tagged(0, count=5))
    assert processor.calls[-1]["videos"] == ["v0.mp4", "v1.mp4"]  # 65 tokens per clip: 2 clips fit
    assert batch["labels"].tolist() == [0] and batch["pixel_values"].shape[0] == 1


class NumberingProcessor:
    """Stands in for the video processor: every view of video "v{i}" is filled with i + 1; skips the videos in `skip`."""

    def __init__(self, skip):
        self.skip = set(skip)

    def __call__(self, videos, num_frames, size, patch_size, training, seed, return_tensors, num_clips, num_crops):
        kept = [int(v[1:]) for i, v in enumerate(videos) if i not in self.skip]
        views = [torch.full((num_frames, 3, size, size), i + 1.0) for i in kept for _ in range(num_clips * num_crops)]
        return {
            "pixel_values": torch.stack(views) if views else torch.empty(0, num_frames, 3, size, size),
            "skipped_indices": sorted(self.skip),
        }


@pytest.mark.parametrize("skip", [{1}, {0, 3}, {0, 1, 2, 3}])
def test_collator_keeps_the_place_of_skipped_evaluation_videos(skip):
    """An undecodable evaluation video becomes blank views labelled UNDECODED_LABEL in its own place: the batch keeps
    its size (every process gathers the same shapes) and every other video keeps its views and its label."""
    config = FlexibleTrainingConfig("fixed", frames=(2,), resolutions=(8,), base_patch_size=8)
    collator = FlexibleVideoCollator(
        NumberingProcessor(skip), ScaleSampler(config), eval_scale=(2, 8, 8), eval_num_clips=2, eval_num_crops=3
    )
    batch = collator([{"video": f"v{i}", "label": 10 + i} for i in range(4)])
    assert batch["labels"].tolist() == [UNDECODED_LABEL if i in skip else 10 + i for i in range(4)]
    assert batch["pixel_values"].shape == (4 * 6, 2, 3, 8, 8) and batch[VIEWS_KEY] == 6
    filled = batch["pixel_values"].flatten(1)
    assert (filled == filled[:, :1]).all()  # each view is one value
    assert filled[:, 0].view(4, 6).tolist() == [[0.0 if i in skip else i + 1.0] * 6 for i in range(4)]


def test_metrics_score_the_decoded_videos_only():
    seen = []
    compute = _scoring_decoded_videos(lambda prediction, **kwargs: seen.append((prediction, kwargs)) or {"n": 1})
    logits, labels = np.arange(8.0).reshape(4, 2), np.array([1, UNDECODED_LABEL, 0, UNDECODED_LABEL])
    views = np.zeros((12, 3))  # inputs: 3 views per video
    with CaptureLogger(flexible_training.logger) as captured:
        compute(EvalPrediction((logits, -logits), labels, views, np.array([0.5, 0.5, 0.7, 0.7])), compute_result=True)
    assert "2 of 4 evaluation videos could not be decoded" in captured.out
    (prediction, kwargs), *_ = seen
    assert kwargs == {"compute_result": True}
    np.testing.assert_array_equal(prediction.predictions[0], logits[[0, 2]])
    np.testing.assert_array_equal(prediction.predictions[1], -logits[[0, 2]])
    np.testing.assert_array_equal(prediction.label_ids, [1, 0])
    np.testing.assert_array_equal(prediction.losses, [0.5, 0.7])
    assert prediction.inputs.shape == (12, 3)
    everything = EvalPrediction(logits, np.array([1, 0, 0, 1]))
    compute(everything)
    assert seen[-1][0] is everything


@pytest.mark.parametrize("name", ["eval_num_clips", "eval_num_crops", "repeated_augmentation"])
def test_collator_refuses_view_counts_below_one(name):
    config = FlexibleTrainingConfig("fixed", frames=(2,), resolutions=(16,), base_patch_size=8)
    with pytest.raises(ValueError, match=f"{name} must be a positive integer; got 0"):
        FlexibleVideoCollator(RecordingProcessor(), ScaleSampler(config), **{name: 0})


def test_fixed_variant_reproduces_ordinary_fixed_scale_training():
    processor = StretchySnakeVideoProcessor(do_flip=False)
    videos = [np.random.default_rng(i).integers(0, 256, size=(12, 40, 48, 3), dtype=np.uint8) for i in range(3)]
    config = FlexibleTrainingConfig("fixed", frames=(4,), resolutions=(32,), base_patch_size=8)
    dataset = StepTaggedDataset([{"video": v, "label": i} for i, v in enumerate(videos)])
    examples = [dataset[(i, 0, 11)] for i in range(3)]
    batch = FlexibleVideoCollator(processor, ScaleSampler(config))(examples)
    direct = processor(videos, num_frames=4, size=32, patch_size=8, training=True, seed=11)
    torch.testing.assert_close(batch["pixel_values"], direct["pixel_values"], rtol=0, atol=0)
    assert batch["patch_size"] == 8 and batch["labels"].tolist() == [0, 1, 2]
