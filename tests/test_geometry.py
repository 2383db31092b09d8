"""One home per geometry rule: the formulas, checked against the model itself, and their users agreeing."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from stretchysnake_hf import StretchySnakeForVideoClassification, StretchySnakeModel
from stretchysnake_hf.evaluation import _plan_cells, spatial_settings
from stretchysnake_hf.flexible_training import FlexibleTrainingConfig, Scale, ScaleSampler, variant_rules
from stretchysnake_hf.geometry import (
    SCALE_DEPENDENT_PARAMETERS,
    clips_within_budget,
    sequence_length,
    static_tokens_patch_size,
)


@pytest.mark.parametrize("num_frames, size, patch_size, tubelet", [(4, 16, 8, 1), (6, 32, 4, 2), (8, 24, 12, 4)])
def test_sequence_length_is_the_length_the_model_processes(num_frames, size, patch_size, tubelet):
    model = StretchySnakeModel(tiny_config(tubelet_size=tubelet)).eval()
    with torch.no_grad():
        hidden = model(torch.randn(1, num_frames, 3, size, size), patch_size=patch_size).last_hidden_state
    assert hidden.shape[1] == sequence_length(num_frames, size, patch_size, tubelet)


def test_training_and_evaluation_cut_batches_to_the_same_budget():
    """Both count the cls token and the tubelet: a budget of 3 clips of 8 frames (tubelet 2) at 32 px, p 8."""
    clip = sequence_length(8, 32, 8, tubelet_size=2)  # 1 + 4 * 16
    flex = FlexibleTrainingConfig(
        "fixed", frames=(8,), resolutions=(32,), base_patch_size=8, tubelet_size=2, max_tokens_per_step=3 * clip
    )
    assert ScaleSampler(flex).batch_size_for(Scale(8, 32, 8), 8) == 3
    model = StretchySnakeForVideoClassification(tiny_config(tubelet_size=2, image_size=32, num_frames=8)).eval()
    (cell,) = _plan_cells({"m": model}, [8], [32], "static_patch", [8], None, 8, 3 * clip, None)
    assert cell.micro_batch == 3 and cell.result.num_tokens == clip
    assert clips_within_budget(8, clip, None) == 8 and clips_within_budget(8, clip, clip - 1) == 0


def test_static_tokens_rule_is_the_same_in_training_and_evaluation():
    resolutions = (96, 128, 224, 384)
    trained = FlexibleTrainingConfig("static_tokens", frames=(8,), resolutions=resolutions, token_grid=14).scales
    config = tiny_config(flexible_training={"variant": "static_tokens", "token_grid": 14})
    evaluated = spatial_settings(config, resolutions, "static_tokens")
    assert [(s.image_size, s.patch_size) for s in trained] == [(size, p) for _, size, p in evaluated]
    assert [static_tokens_patch_size(s, 14) for s in resolutions] == [7, 9, 16, 27]


def test_the_scale_dependent_parameters_are_exactly_those_whose_shape_follows_the_scale():
    shapes = [
        {
            name: tuple(t.shape)
            for name, t in StretchySnakeForVideoClassification(tiny_config(**scale)).state_dict().items()
        }
        for scale in ({}, {"num_frames": 8, "image_size": 32, "patch_size": 4})
    ]
    changed = {name for name in shapes[0] if shapes[0][name] != shapes[1][name]}
    assert changed and all(name.endswith(SCALE_DEPENDENT_PARAMETERS) for name in changed)
    assert {suffix for suffix in SCALE_DEPENDENT_PARAMETERS if any(n.endswith(suffix) for n in changed)} == set(
        SCALE_DEPENDENT_PARAMETERS
    )


def test_frame_counts_must_fit_the_tubelet():
    with pytest.raises(ValueError, match=r"multiple of tubelet_size 2"):
        FlexibleTrainingConfig("static_tokens", frames=(8, 9), tubelet_size=2)


def test_variant_table_is_read_off_the_variant_definitions():
    assert variant_rules("static_tokens") == (
        "token grid G = S/p fixed; patch size p sampled; resolution S = G·p",
        "T sampled",
    )
    assert variant_rules("static_patch")[0].startswith("p fixed; S sampled")
    assert variant_rules("flexi_patch")[0].startswith("S fixed; p sampled")
    assert variant_rules("fixed") == ("S and p fixed", "T fixed")
