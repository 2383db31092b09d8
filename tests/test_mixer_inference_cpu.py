"""The fused CPU inference path of the mixer against the autograd path and a float64 reference scan."""

from __future__ import annotations

import copy
import platform

import numba
import numpy as np
import pytest
import torch
from conftest import tiny_config

from stretchysnake_hf import StretchySnakeForVideoClassification
from stretchysnake_hf import mixer_inference_cpu as fused_ops
from stretchysnake_hf.modeling_stretchysnake import StretchySnakeMixer
from stretchysnake_hf.numba_math import (
    fast_exp,
    fast_sigmoid,
    fast_softplus,
    flush_denormals,
    non_negative,
    prefer_512_bit_vectors,
    restore_float_mode,
    silu_derivative,
)

_SMALLEST_NORMAL = np.finfo(np.float32).tiny  # 1.2e-38: below it, float32 values are denormal


def denormals(values: np.ndarray) -> int:
    return int(((values != 0) & (np.abs(values) < _SMALLEST_NORMAL)).sum())


def _elementwise(function):
    """A numba-compiled loop applying `function` (a numba_math function) to every element, as the kernels do."""

    @numba.njit
    def apply(values):
        out = np.empty_like(values)
        for i in range(values.size):
            out[i] = function(values[i])
        return out

    return apply


_fast_exp_all = _elementwise(fast_exp)
_fast_softplus_all = _elementwise(fast_softplus)


def test_fast_exp_is_float32_accurate_and_flushes_below_the_normal_range():
    values = np.linspace(-87.0, 88.0, 1_000_001, dtype=np.float32)
    exact = np.exp(values.astype(np.float64))
    relative = np.abs(_fast_exp_all(values) - exact) / exact
    assert relative.max() < 2.5e-7  # float32 rounding is 6e-8 relative: a few ulp
    tiny = _fast_exp_all(np.array([-87.5, -100.0, -1e30], dtype=np.float32))
    assert np.all((tiny >= 0) & (tiny < 2e-38))
    assert _fast_exp_all(np.array([0.0], dtype=np.float32))[0] == 1.0


def test_fast_exp_on_float64_is_the_library_exp():
    values = np.linspace(-700.0, 700.0, 10_001)
    np.testing.assert_allclose(_fast_exp_all(values), np.exp(values), rtol=1e-15, atol=0)


def test_fast_softplus_is_float32_accurate():
    values = np.linspace(-80.0, 100.0, 1_000_001, dtype=np.float32)
    exact = np.logaddexp(0.0, values.astype(np.float64))
    assert (np.abs(_fast_softplus_all(values) - exact) / exact).max() < 3e-7
    # below exp's normal range the result stands for 0, as fast_exp's does
    assert np.all(_fast_softplus_all(np.array([-90.0, -1e30], dtype=np.float32)) < 2e-38)
    doubles = np.linspace(-700.0, 700.0, 10_001)
    np.testing.assert_allclose(_fast_softplus_all(doubles), np.logaddexp(0.0, doubles), rtol=1e-15, atol=0)


def test_fast_sigmoid_is_float32_accurate():
    values = np.linspace(-80.0, 80.0, 1_000_001, dtype=np.float32)
    exact = 1.0 / (1.0 + np.exp(-values.astype(np.float64)))
    assert (np.abs(_elementwise(fast_sigmoid)(values) - exact) / exact).max() < 3e-7
    doubles = np.linspace(-700.0, 700.0, 10_001)
    np.testing.assert_allclose(_elementwise(fast_sigmoid)(doubles), 1.0 / (1.0 + np.exp(-doubles)), rtol=1e-15, atol=0)


@numba.njit
def _silu_derivative_at(x):
    return silu_derivative(x, fast_sigmoid(x))


def test_silu_derivative_is_the_gradient_of_silu_and_keeps_float32():
    doubles = torch.linspace(-40.0, 40.0, 100_001, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.silu(doubles).sum().backward()
    exact = doubles.grad.numpy()
    np.testing.assert_allclose(
        _elementwise(_silu_derivative_at)(doubles.detach().numpy()), exact, rtol=1e-12, atol=1e-15
    )
    singles = _elementwise(_silu_derivative_at)(doubles.detach().numpy().astype(np.float32))
    assert singles.dtype == np.float32
    np.testing.assert_allclose(singles, exact, rtol=0, atol=1e-6)


def test_non_negative_keeps_every_index_below_2_to_the_32():
    indices = np.array([0, 1, 63, 2**31 - 1, 2**31, 2**32 - 1], dtype=np.int64)
    converted = _elementwise(non_negative)(indices)
    assert converted.dtype == np.int64
    np.testing.assert_array_equal(converted, indices)


@numba.njit(parallel=True)
def _products(a, b, flush):
    """a * b elementwise, one parallel iteration per element (so every numba thread runs some), under
    `flush_denormals` with `flush`."""
    out = np.empty_like(a)
    for i in numba.prange(a.size):
        mode = flush_denormals() if flush else np.int32(0)
        out[i] = a[i] * b[i]
        if flush:
            restore_float_mode(mode)
    return out


def test_flush_denormals_zeroes_denormal_results_until_each_thread_restores_its_mode():
    a, b = np.full(64, 1e-30, np.float32), np.full(64, 1e-10, np.float32)  # the exact product, 1e-40, is denormal
    flushed, unflushed = _products(a, b, True), _products(a, b, False)
    assert denormals(unflushed) == 64, "the threads kept flushing after restore_float_mode"
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert np.all(flushed == 0)
    else:  # no MXCSR: flush_denormals does nothing
        np.testing.assert_array_equal(flushed, unflushed)
    assert denormals((torch.from_numpy(a) * torch.from_numpy(b)).numpy()) == 64  # torch in this thread: untouched


@numba.njit
def _doubled(values):
    prefer_512_bit_vectors()
    out = np.empty_like(values)
    for i in range(values.size):
        out[i] = 2 * values[i]
    return out


def test_prefer_512_bit_vectors_sets_the_vector_width_attribute_of_the_calling_function():
    values = np.arange(100, dtype=np.float32)
    np.testing.assert_array_equal(_doubled(values), 2 * values)
    llvm_ir = "\n".join(_doubled.inspect_llvm().values())
    assert '"prefer-vector-width"="512"' in llvm_ir


def test_scan_kernel_flushes_states_that_decay_below_the_normal_range():
    """One input at the first step, then the state decays by exp(-5) a step: from step 18 on, exactly, it is below
    float32's normal range (the last representable denormal is near step 20)."""
    batch, steps, channels, state_size = 1, 40, 3, 2
    u = np.zeros((batch, steps, channels), np.float32)
    u[:, 0] = 0.05
    x_dbl = np.ones((batch, steps, 1 + 2 * state_size), np.float32)  # (time step, B, C)
    dt_proj_weight_t = np.zeros((1, channels), np.float32)
    dt_bias = np.full(channels, 20.0, np.float32)  # dt = softplus(20) = 20 in float32, so dt u_0 = 1 and dt A = -5
    A = np.full((channels, state_size), -0.25, np.float32)
    state = np.zeros((batch, channels, state_size), np.float32)
    out = np.zeros_like(u)
    no_checkpoints = np.empty((0, batch, channels, state_size), np.float32)
    D = np.zeros(channels, np.float32)
    fused_ops._scan_chunk(u, x_dbl, dt_proj_weight_t, dt_bias, A, D, 0, False, False, state, out, no_checkpoints, 16)
    exact = state_size * np.exp(-5.0 * np.arange(steps))  # y_t = <h_t, C_t>, h_t = exp(-5 t)
    assert 0 < exact[18] < _SMALLEST_NORMAL  # the case runs through denormals
    normal = exact >= _SMALLEST_NORMAL
    np.testing.assert_allclose(out[0, normal, 0], exact[normal], rtol=1e-5)
    assert denormals(out) == 0 and denormals(state) == 0
    assert np.all(out[0, ~normal] == 0)


def make_mixer(hidden_size: int = 36, seed: int = 0) -> StretchySnakeMixer:
    """A mixer (intermediate size 72: not a multiple of the scan's channel blocks, 16 to 64) with weights scaled up from
    the initialisation so that every stage (conv, gate, both directions) moves the output."""
    torch.manual_seed(seed)
    model = StretchySnakeForVideoClassification(tiny_config(hidden_size=hidden_size)).eval()
    mixer = model.stretchysnake.layers[0].mixer
    with torch.no_grad():
        for name, parameter in mixer.named_parameters():
            if name.endswith("weight") or "conv1d" in name:
                parameter.mul_(3.0)
    return mixer


def float64_reference(mixer: StretchySnakeMixer, hidden_states: torch.Tensor) -> torch.Tensor:
    reference = copy.deepcopy(mixer).double()
    reference.scan_backend = "reference"
    with torch.no_grad():
        return reference.autograd_forward(hidden_states.double())


@pytest.mark.parametrize("batch_size, length", [(1, 150), (2, 64), (2, 129)])
def test_fused_mixer_matches_a_float64_sequential_reference_across_chunks(monkeypatch, batch_size, length):
    """Chunks of 64 tokens: partial last chunks, states carried across chunk boundaries in both directions."""
    monkeypatch.setattr(fused_ops, "_CHUNK_ELEMENTS", 1)
    mixer = make_mixer()
    hidden_states = torch.randn(batch_size, length, mixer.hidden_size, generator=torch.Generator().manual_seed(1))
    expected = float64_reference(mixer, hidden_states)
    with torch.no_grad():
        assert mixer.forward_path(hidden_states) == mixer.cpu_inference_forward
        out = mixer(hidden_states)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    scale = expected.abs().max().item()
    assert scale > 1.0
    assert (out.double() - expected).abs().max().item() <= 1e-5 * scale


@pytest.mark.parametrize("block", [16, 32, 64])
def test_fused_mixer_matches_the_reference_with_every_channel_block(monkeypatch, block):
    """72 channels: blocks of 32 and 64 leave a partial last block."""
    monkeypatch.setattr(fused_ops, "_CHANNEL_BLOCKS", (block,))
    mixer = make_mixer()
    hidden_states = torch.randn(2, 70, mixer.hidden_size, generator=torch.Generator().manual_seed(1))
    expected = float64_reference(mixer, hidden_states)
    with torch.no_grad():
        out = mixer(hidden_states)
    assert (out.double() - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()


def test_scan_block_is_the_widest_that_gives_every_thread_two_blocks():
    assert fused_ops._scan_block(1, 384, 2) == 64  # 6 blocks
    assert fused_ops._scan_block(1, 384, 4) == 32  # 12 blocks
    assert fused_ops._scan_block(8, 128, 16) == 32  # 32 blocks
    assert fused_ops._scan_block(1, 384, 16) == 16  # 24 blocks: too few at any width, so the smallest


def test_fused_mixer_equals_the_autograd_path_and_does_not_depend_on_the_chunk_size(monkeypatch):
    mixer = make_mixer(hidden_size=32, seed=2)
    hidden_states = torch.randn(2, 300, 32, generator=torch.Generator().manual_seed(3))
    autograd_out = mixer.autograd_forward(hidden_states).detach()  # grad mode on: the numba autograd scan
    outputs = []
    for chunk_elements in (1, 2**18):  # 64-token chunks, one 300-token chunk
        monkeypatch.setattr(fused_ops, "_CHUNK_ELEMENTS", chunk_elements)
        with torch.no_grad():
            outputs.append(mixer(hidden_states))
    scale = autograd_out.abs().max().item()
    for out in outputs:
        assert (out - autograd_out).abs().max().item() <= 1e-5 * scale
    assert (outputs[0] - outputs[1]).abs().max().item() <= 1e-6 * scale


@pytest.mark.parametrize("num_frames, size, patch_size", [(4, 16, 8), (6, 32, 8), (2, 16, 4)])
def test_model_logits_in_inference_mode_match_the_training_path(num_frames, size, patch_size):
    torch.manual_seed(4)
    model = StretchySnakeForVideoClassification(tiny_config()).eval()
    video = torch.randn(2, num_frames, 3, size, size)
    expected = model(video, patch_size=patch_size).logits.detach()  # grad mode on: the training path
    with torch.inference_mode():
        logits = model(video, patch_size=patch_size).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


def test_fused_mixer_holds_two_token_by_channel_tensors_and_chunk_sized_temporaries(monkeypatch):
    """Besides its output, the only allocations of a (tokens, channels) size are the conv input and the sum of the
    two directions; everything else is a chunk (64 tokens) at a time."""
    monkeypatch.setattr(fused_ops, "_CHUNK_ELEMENTS", 1)
    mixer = make_mixer(hidden_size=32)
    length, channels, hidden = 4096, mixer.intermediate_size, mixer.hidden_size
    hidden_states = torch.randn(1, length, hidden)
    with torch.no_grad(), torch.profiler.profile(profile_memory=True) as profile:
        mixer(hidden_states)
    allocations = [event.self_cpu_memory_usage for event in profile.events() if event.self_cpu_memory_usage > 0]
    large = sorted(size for size in allocations if size > 8 * 64 * channels * 4)
    assert large == [length * hidden * 4, length * channels * 4, length * channels * 4]
