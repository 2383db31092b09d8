"""The fused CPU RMSNorm: output and gradients against float64 torch ops, and when the model's norm uses it."""

from __future__ import annotations

import pytest
import torch

from stretchysnake_hf.modeling_stretchysnake import StretchySnakeRMSNorm, fused_cpu_kernels_apply
from stretchysnake_hf.rms_norm_cpu import rms_norm_cpu


def float64_rms_norm(hidden_states: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return hidden_states * torch.rsqrt(hidden_states.pow(2).mean(-1, keepdim=True) + eps) * weight


def output_and_gradients(norm, hidden_states: torch.Tensor, weight: torch.Tensor, grad_output: torch.Tensor):
    hidden_states = hidden_states.detach().clone().requires_grad_(True)
    weight = weight.detach().clone().requires_grad_(True)
    output = norm(hidden_states, weight)
    output.backward(grad_output)
    return output.detach(), hidden_states.grad, weight.grad


@pytest.mark.parametrize(
    "shape",
    [
        (2, 129, 64),  # 258 tokens: the last 64-token block partial
        (3, 5, 37),  # odd hidden size, fewer tokens than one block
        (1, 1, 8),
    ],
)
def test_output_and_gradients_match_float64(shape):
    generator = torch.Generator().manual_seed(0)
    hidden_states = torch.randn(shape, generator=generator) * 3.0
    weight = torch.randn(shape[-1], generator=generator)
    grad_output = torch.randn(shape, generator=generator)
    eps = 1e-5
    fused = output_and_gradients(lambda x, w: rms_norm_cpu(x, w, eps), hidden_states, weight, grad_output)
    expected = output_and_gradients(
        lambda x, w: float64_rms_norm(x, w, eps), hidden_states.double(), weight.double(), grad_output.double()
    )
    for name, actual, reference in zip(("output", "grad input", "grad weight"), fused, expected, strict=True):
        assert actual.dtype == torch.float32 and actual.shape == reference.shape, name
        error = (actual.double() - reference).abs().max().item()
        assert error <= 1e-6 * reference.abs().max().item(), f"{name}: error {error:.3g}"


def test_eps_counts_for_rows_near_zero():
    hidden_states = torch.full((1, 2, 4), 1e-3)
    hidden_states[0, 1] = 0.0
    weight = torch.ones(4)
    expected = float64_rms_norm(hidden_states.double(), weight.double(), 1e-5)
    torch.testing.assert_close(rms_norm_cpu(hidden_states, weight, 1e-5).double(), expected, rtol=1e-6, atol=0)


def test_non_contiguous_input_and_gradient():
    generator = torch.Generator().manual_seed(1)
    hidden_states = torch.randn(40, 3, 16, generator=generator).transpose(0, 1)  # (3, 40, 16), not contiguous
    grad_output = torch.randn(16, 40, 3, generator=generator).permute(2, 1, 0)
    weight = torch.randn(16, generator=generator)
    fused = output_and_gradients(lambda x, w: rms_norm_cpu(x, w, 1e-5), hidden_states, weight, grad_output)
    expected = output_and_gradients(
        lambda x, w: float64_rms_norm(x, w, 1e-5), hidden_states.double(), weight.double(), grad_output.double()
    )
    for actual, reference in zip(fused, expected, strict=True):
        torch.testing.assert_close(actual.double(), reference, rtol=1e-5, atol=1e-6)


def test_results_do_not_depend_on_the_thread_count():
    """Every token is one thread's, and grad_w's partial sums are per fixed 64-token block: bit for bit the same."""
    generator = torch.Generator().manual_seed(2)
    hidden_states, grad_output = (torch.randn(2, 300, 24, generator=generator) for _ in range(2))
    weight = torch.randn(24, generator=generator)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(
                output_and_gradients(lambda x, w: rms_norm_cpu(x, w, 1e-5), hidden_states, weight, grad_output)
            )
    finally:
        torch.set_num_threads(threads)
    for one_thread, two_threads in zip(*results, strict=True):
        assert torch.equal(one_thread, two_threads)


@pytest.mark.parametrize(
    "scan_backend, dtype, fused",
    [("numba", torch.float32, True), ("auto", torch.float32, True), ("chunked", torch.float32, False),
     ("numba", torch.float64, False)],
)  # fmt: skip
def test_model_norm_uses_the_kernels_where_the_fused_mixer_runs(scan_backend, dtype, fused):
    norm = StretchySnakeRMSNorm(16, 1e-5, scan_backend).to(dtype)
    with torch.no_grad():
        norm.weight.normal_()
    hidden_states = torch.randn(2, 7, 16, dtype=dtype, requires_grad=True)
    output = norm(hidden_states)
    assert ("RMSNormCpuFn" in output.grad_fn.name()) is fused
    expected = float64_rms_norm(hidden_states.double(), norm.weight.double(), 1e-5)
    torch.testing.assert_close(output.double(), expected, rtol=1e-6, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "RMSNormCpuFn" not in norm(hidden_states).grad_fn.name()


def test_the_kernels_are_not_used_while_something_traces_the_call():
    """torch.export and torch.compile trace with fake tensors, which have no data for a numba kernel to read."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    hidden_states, weight = torch.randn(2, 7, 16), torch.ones(16)
    assert fused_cpu_kernels_apply("numba", hidden_states, weight)
    with FakeTensorMode() as mode:
        fake_states, fake_weight = mode.from_tensor(hidden_states), mode.from_tensor(weight)
        assert not fused_cpu_kernels_apply("numba", fake_states, fake_weight)
