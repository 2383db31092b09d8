import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from transformers import AutoModel, AutoModelForVideoClassification
from videomamba_reference import original_state_dict, videomamba_logits

import stretchysnake_hf.modeling_stretchysnake as modeling
from stretchysnake_hf import StretchySnakeConfig, StretchySnakeForVideoClassification, StretchySnakeModel
from stretchysnake_hf.resizing import pi_resize_patch_kernel


def _model(**overrides) -> StretchySnakeForVideoClassification:
    torch.manual_seed(0)
    model = StretchySnakeForVideoClassification(tiny_config(**overrides))
    with torch.no_grad():  # non-trivial values where VideoMamba initialises zeros
        model.stretchysnake.embeddings.cls_token.normal_()
        model.stretchysnake.embeddings.temporal_position_embeddings.normal_()
    return model


def _expected_parameter_count(hidden: int, depth: int, labels: int, frames: int, image: int) -> int:
    """VideoMamba's parameter count from the shapes listed in the checkpoint notes."""
    inner, state, rank = 2 * hidden, 16, math.ceil(hidden / 16)
    per_direction = inner * 4 + inner + inner * (rank + 2 * state) + inner * rank + inner + inner * state + inner
    per_layer = hidden * 2 * inner + 2 * per_direction + hidden * inner + hidden
    embeddings = hidden + ((image // 16) ** 2 + 1) * hidden + frames * hidden + hidden * 3 * 16 * 16 + hidden
    return embeddings + depth * per_layer + hidden + labels * hidden + labels


def test_tiny_kinetics_classifier_has_videomamba_ti_parameter_count():
    config = StretchySnakeConfig.from_preset("tiny", num_labels=400, image_size=224, num_frames=8)
    model = StretchySnakeForVideoClassification(config)
    assert sum(p.numel() for p in model.parameters()) == 7_033_744
    assert len(model.state_dict()) == 416  # as many tensors as the original checkpoint


@pytest.mark.parametrize(("preset", "hidden", "depth"), [("small", 384, 24), ("middle", 576, 32)])
def test_larger_presets_parameter_counts(preset, hidden, depth):
    config = StretchySnakeConfig.from_preset(preset, num_labels=400)
    with torch.device("meta"):
        model = StretchySnakeForVideoClassification(config)
    expected = _expected_parameter_count(hidden, depth, 400, 8, 224)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_matches_independent_videomamba_at_base_scale():
    model = _model().double().eval()
    video = torch.randn(2, 4, 3, 16, 16, dtype=torch.float64)
    expected = videomamba_logits(original_state_dict(model.state_dict()), video.transpose(1, 2), depth=2)
    torch.testing.assert_close(model(video).logits, expected, rtol=1e-10, atol=1e-10)


def test_any_scale_matches_videomamba_with_explicitly_resized_tensors():
    """6 frames of 24x40 px at patch 4 (a 6x10 grid) = the original model built with tables resized by hand."""
    model = _model().double().eval()
    video = torch.randn(1, 6, 3, 24, 40, dtype=torch.float64)
    sd = original_state_dict(model.state_dict())
    grid = sd["pos_embed"][:, 1:].reshape(1, 2, 2, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(6, 10), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    sd["pos_embed"] = torch.cat([sd["pos_embed"][:, :1], grid.reshape(1, 60, -1)], dim=1)
    temporal = F.interpolate(sd["temporal_pos_embedding"].transpose(1, 2), size=6, mode="linear")
    sd["temporal_pos_embedding"] = temporal.transpose(1, 2)
    sd["patch_embed.proj.weight"] = pi_resize_patch_kernel(sd["patch_embed.proj.weight"], (1, 4, 4))
    expected = videomamba_logits(sd, video.transpose(1, 2), depth=2)
    torch.testing.assert_close(model(video, patch_size=4).logits, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("shape", "patch_size", "seq_len"),
    [((1, 4, 3, 16, 16), None, 17), ((2, 2, 3, 32, 48), 8, 49), ((1, 8, 3, 16, 24), 4, 193), ((1, 1, 3, 8, 8), 8, 2)],
)
def test_any_scale_output_shapes(shape, patch_size, seq_len):
    model = StretchySnakeModel(tiny_config()).eval()
    outputs = model(torch.randn(shape), patch_size=patch_size, output_hidden_states=True)
    assert outputs.last_hidden_state.shape == (shape[0], seq_len, 32)
    assert outputs.pooler_output.shape == (shape[0], 32)
    assert len(outputs.hidden_states) == 3


def test_gradients_reach_base_tables_and_kernel_through_resizing():
    model = _model().double().train()
    video = torch.randn(2, 6, 3, 24, 24, dtype=torch.float64)
    loss = model(video, patch_size=4, labels=torch.tensor([0, 2])).loss
    loss.backward()
    embeddings = model.stretchysnake.embeddings
    table = embeddings.position_embeddings
    assert table.grad.shape == (1, 5, 32) and table.grad.abs().min() > 0
    assert embeddings.temporal_position_embeddings.grad.abs().min() > 0
    assert embeddings.patch_embeddings.projection.weight.grad.shape == (32, 3, 1, 8, 8)

    # the analytic gradient of one stored table entry equals a finite difference through the resize
    eps = 1e-6
    with torch.no_grad():
        table[0, 3, 5] += eps
        plus = model(video, patch_size=4, labels=torch.tensor([0, 2])).loss
        table[0, 3, 5] -= 2 * eps
        minus = model(video, patch_size=4, labels=torch.tensor([0, 2])).loss
    torch.testing.assert_close((plus - minus) / (2 * eps), table.grad[0, 3, 5], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    ("shape", "patch_size", "message"),
    [
        ((1, 4, 3, 20, 16), None, "Frame size 20x16 is not divisible by the patch size 8"),
        ((1, 4, 3, 16, 16), 5, "Frame size 16x16 is not divisible by the patch size 5"),
        ((1, 4, 3, 16), None, "got 4 dims (1, 4, 3, 16)"),
        ((1, 4, 1, 16, 16), None, "pixel_values has 1 channels"),
        ((0, 4, 3, 16, 16), None, "pixel_values is empty: shape (0, 4, 3, 16, 16)"),
    ],
)
def test_bad_pixel_values_raise(shape, patch_size, message):
    model = StretchySnakeForVideoClassification(tiny_config())
    with pytest.raises(ValueError) as error:
        model(torch.randn(shape), patch_size=patch_size)
    assert message in str(error.value)


def test_frames_not_divisible_by_tubelet_raise():
    model = StretchySnakeForVideoClassification(tiny_config(tubelet_size=2))
    with pytest.raises(ValueError, match="num_frames 5 is not divisible by the tubelet size 2"):
        model(torch.randn(1, 5, 3, 16, 16))


def test_non_finite_and_integer_pixel_values_raise():
    model = StretchySnakeForVideoClassification(tiny_config())
    video = torch.randn(1, 4, 3, 16, 16)
    video[0, 1, 2, 3, 4] = float("nan")
    video[0, 2, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="pixel_values contains 2 NaN or infinite values"):
        model(video)
    video[0, 1, 2, 3, 4] = -float("inf")  # inf + -inf: a NaN sum
    with pytest.raises(ValueError, match="pixel_values contains 2 NaN or infinite values"):
        model(video)
    model(torch.full((1, 4, 3, 16, 16), 3e38))  # finite values whose sum overflows pass
    with pytest.raises(ValueError, match="floating-point tensor; got torch.uint8"):
        model(torch.zeros(1, 4, 3, 16, 16, dtype=torch.uint8))


def test_labels_give_cross_entropy_and_are_range_checked():
    model = _model().eval()
    video = torch.randn(3, 4, 3, 16, 16)
    labels = torch.tensor([2, 0, 1])
    outputs = model(video, labels=labels)
    torch.testing.assert_close(outputs.loss, F.cross_entropy(outputs.logits, labels))
    ignored = model(video, labels=torch.tensor([2, -100, 1]))
    torch.testing.assert_close(ignored.loss, F.cross_entropy(outputs.logits[[0, 2]], labels[[0, 2]]))
    with pytest.raises(ValueError, match="Label 3 is out of range for a classifier with num_labels=3"):
        model(video, labels=torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match="Label -1 is out of range"):
        model(video, labels=torch.tensor([0, -1, 1]))


def test_tuple_outputs():
    model = _model().eval()
    video = torch.randn(1, 4, 3, 16, 16)
    loss, logits, hidden_states = model(video, labels=torch.tensor([1]), output_hidden_states=True, return_dict=False)
    torch.testing.assert_close(logits, model(video).logits)
    assert len(hidden_states) == 3 and loss.dim() == 0


class _CountingResize:
    def __init__(self, monkeypatch):
        self.calls = 0
        original = modeling.pi_resize_patch_kernel

        def counting(weight, new_size):
            self.calls += 1
            return original(weight, new_size)

        monkeypatch.setattr(modeling, "pi_resize_patch_kernel", counting)


def test_eval_cache_reuses_resized_kernel_until_parameters_change(monkeypatch):
    counter = _CountingResize(monkeypatch)
    model = _model().eval()
    video = torch.randn(1, 4, 3, 24, 24)
    with torch.no_grad():
        first = model(video, patch_size=6).logits
        second = model(video, patch_size=6).logits
    assert counter.calls == 1
    torch.testing.assert_close(first, second)

    other = _model()
    with torch.no_grad():
        other.stretchysnake.embeddings.patch_embeddings.projection.weight.mul_(3.0)
        other.stretchysnake.embeddings.position_embeddings.add_(1.0)
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        reloaded = model(video, patch_size=6).logits
        fresh = other.eval()(video, patch_size=6).logits
    assert counter.calls == 3  # recomputed for `model` after load_state_dict, and once for `other`
    torch.testing.assert_close(reloaded, fresh)


def test_eval_cache_is_dropped_after_an_optimizer_step(monkeypatch):
    counter = _CountingResize(monkeypatch)
    model = _model()
    video = torch.randn(2, 4, 3, 24, 24)
    model.eval()
    with torch.no_grad():
        before = model(video, patch_size=6).logits
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(video, patch_size=6, labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model(video, patch_size=6).logits
        uncached = model.stretchysnake.embeddings.patch_embeddings.kernel_for(6)
    assert counter.calls == 3  # eval, train (never cached), eval after the step
    assert not torch.allclose(before, after)
    weight = model.stretchysnake.embeddings.patch_embeddings.projection.weight
    torch.testing.assert_close(uncached, pi_resize_patch_kernel(weight, (1, 6, 6)))


def test_auto_classes_and_save_load_round_trip(tmp_path):
    model = _model().eval()
    assert type(AutoModel.from_config(model.config)) is StretchySnakeModel
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForVideoClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is StretchySnakeForVideoClassification
    video = torch.randn(2, 6, 3, 24, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(video, patch_size=8).logits, model(video, patch_size=8).logits, rtol=0, atol=0
        )
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_gradient_checkpointing_gives_the_same_gradients():
    video = torch.randn(2, 4, 3, 16, 16)
    labels = torch.tensor([1, 2])
    grads = []
    for checkpointing in (False, True):
        model = _model(drop_path_rate=0.2).train()
        if checkpointing:
            model.activation_checkpointing_enable()  # transformers 5.24 deprecates gradient_checkpointing_enable
        torch.manual_seed(1)  # drop path draws the same masks; checkpointing replays the RNG state
        model(video, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7, msg=name)


def test_drop_path_is_stochastic_in_training_and_identity_in_eval():
    model = _model(drop_path_rate=0.5)
    video = torch.randn(4, 4, 3, 16, 16)
    model.train()
    torch.manual_seed(0)
    a = model(video).logits
    b = model(video).logits
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model(video).logits, model(video).logits)


def test_bfloat16_model_keeps_a_float32_residual_stream():
    model = _model().to(torch.bfloat16).eval()
    outputs = model(torch.randn(1, 4, 3, 16, 16), output_hidden_states=True)
    assert outputs.logits.dtype == torch.bfloat16
    assert all(h.dtype == torch.float32 for h in outputs.hidden_states)


def test_initialisation_follows_mamba():
    config = tiny_config(hidden_size=64, dt_rank=4, d_state=8)
    mixer = StretchySnakeForVideoClassification(config).stretchysnake.layers[1].mixer
    expected_A_log = torch.log(torch.arange(1, 9, dtype=torch.float32)).expand(128, 8)
    torch.testing.assert_close(mixer.A_b_log.detach(), expected_A_log)
    torch.testing.assert_close(mixer.D.detach(), torch.ones(128))
    dt = F.softplus(mixer.dt_proj.bias.detach())
    assert dt.min() >= config.dt_init_floor and dt.max() <= config.dt_max * 1.0001
    assert mixer.dt_proj.weight.abs().max() <= 4**-0.5
    assert mixer.out_proj.weight.abs().max() <= 1 / math.sqrt(128) / math.sqrt(2) + 1e-6
