import math

import pytest
from transformers import AutoConfig, ResNetConfig

from stretchysnake_hf import StretchySnakeConfig


def test_defaults_are_videomamba_tiny_at_8x224():
    config = StretchySnakeConfig()
    assert (config.hidden_size, config.num_hidden_layers) == (192, 24)
    assert (config.image_size, config.patch_size, config.num_frames, config.tubelet_size) == (224, 16, 8, 1)
    assert (config.d_state, config.d_conv, config.expand) == (16, 4, 2)
    assert config.dt_rank == 12
    assert config.intermediate_size == 384
    assert config.model_type == "stretchysnake"


@pytest.mark.parametrize(("name", "hidden", "depth"), [("tiny", 192, 24), ("small", 384, 24), ("middle", 576, 32)])
def test_presets(name, hidden, depth):
    config = StretchySnakeConfig.from_preset(name, num_labels=7, image_size=112)
    assert (config.hidden_size, config.num_hidden_layers) == (hidden, depth)
    assert config.dt_rank == math.ceil(hidden / 16)
    assert config.num_labels == 7 and config.image_size == 112


def test_explicit_dt_rank_is_kept():
    assert StretchySnakeConfig(hidden_size=64, dt_rank=3).dt_rank == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 100, "patch_size": 16}, "patch_size 16 does not divide image_size 100"),
        ({"hidden_size": 0}, "hidden_size must be a positive integer; got 0"),
        ({"num_frames": -8}, "num_frames must be a positive integer; got -8"),
        ({"num_frames": 6, "tubelet_size": 4}, "tubelet_size 4 does not divide num_frames 6"),
        ({"scan_backend": "magic"}, "Unknown scan_backend 'magic'"),
        ({"drop_path_rate": 1.5}, "drop_path_rate must be in [0, 1); got 1.5"),
        ({"dt_min": 0.5, "dt_max": 0.1}, "dt_min=0.5, dt_max=0.1"),
        ({"id2label": {0: "run", 1: "jump", 2: "run"}}, "id2label names more than one class 'run'"),
    ],
)
def test_invalid_values_raise_naming_field_and_value(kwargs, message):
    with pytest.raises(ValueError) as error:
        StretchySnakeConfig(**kwargs)
    assert message in str(error.value)


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"Unknown preset 'huge'; choose one of \['middle', 'small', 'tiny'\]"):
        StretchySnakeConfig.from_preset("huge")


def test_round_trip_through_auto_config(tmp_path):
    config = StretchySnakeConfig.from_preset("small", num_labels=3, num_frames=16, scan_backend="reference")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, StretchySnakeConfig)
    expected = {**config.to_dict(), "_name_or_path": str(tmp_path)}
    assert loaded.to_dict() == expected


def test_from_pretrained_refuses_the_config_of_another_model_type(tmp_path):
    ResNetConfig(num_labels=3).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 'resnet' checkpoint, not a 'stretchysnake' one"):
        StretchySnakeConfig.from_pretrained(tmp_path)
