"""The fused CPU training path of the mixer: gradients against a float64 sequential reference and the autograd path."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import tiny_config

from stretchysnake_hf import StretchySnakeForVideoClassification
from stretchysnake_hf import mixer_inference_cpu as inference_ops
from stretchysnake_hf import mixer_training_cpu as training_ops
from stretchysnake_hf.modeling_stretchysnake import StretchySnakeMixer


def make_mixer(hidden_size: int = 36, expand: int = 2, seed: int = 0) -> StretchySnakeMixer:
    """A mixer with weights scaled up from the initialisation so that every stage (conv, gate, both directions) moves
    the output and the gradients."""
    torch.manual_seed(seed)
    config = tiny_config(hidden_size=hidden_size, expand=expand)
    mixer = StretchySnakeForVideoClassification(config).train().stretchysnake.layers[0].mixer
    with torch.no_grad():
        for name, parameter in mixer.named_parameters():
            if name.endswith("weight") or "conv1d" in name:
                parameter.mul_(3.0)
    return mixer


def output_and_gradients(
    mixer: StretchySnakeMixer, hidden_states: torch.Tensor, grad_output: torch.Tensor, forward=None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The mixer's output and the gradients of <output, grad_output> for its input and every parameter."""
    mixer.zero_grad(set_to_none=True)
    hidden_states = hidden_states.clone().requires_grad_(True)
    output = (forward or mixer)(hidden_states)
    output.backward(grad_output)
    gradients = {"input": hidden_states.grad} | {name: p.grad for name, p in mixer.named_parameters()}
    return output.detach(), gradients


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, tolerance: float, name: str) -> None:
    """Largest error at most `tolerance` times the largest magnitude of `expected`."""
    scale = expected.abs().max().item()
    error = (actual.double() - expected.double()).abs().max().item()
    assert error <= tolerance * scale, f"{name}: error {error:.3g} > {tolerance} x {scale:.3g}"


@pytest.mark.parametrize(
    "batch_size, length, hidden_size, expand",
    [
        (1, 150, 36, 2),  # 72 channels: not a multiple of the kernels' 16-channel blocks; 3 chunks, the last partial
        (2, 129, 36, 2),
        (3, 70, 37, 1),  # 37 channels: odd
    ],
)
def test_fused_gradients_match_a_float64_sequential_reference_across_chunks(
    monkeypatch, batch_size, length, hidden_size, expand
):
    """Chunks of 64 tokens: states and gradients of states carried across chunk boundaries in both directions, conv
    gradients reaching into the neighbouring chunk."""
    monkeypatch.setattr(inference_ops, "_CHUNK_ELEMENTS", 1)
    mixer = make_mixer(hidden_size, expand)
    generator = torch.Generator().manual_seed(1)
    hidden_states = torch.randn(batch_size, length, hidden_size, generator=generator)
    grad_output = torch.randn(batch_size, length, hidden_size, generator=generator)
    reference = copy.deepcopy(mixer).double()
    reference.scan_backend = "reference"
    expected_output, expected = output_and_gradients(reference, hidden_states.double(), grad_output.double())

    assert mixer.forward_path(hidden_states) == mixer.cpu_training_forward
    output, gradients = output_and_gradients(mixer, hidden_states, grad_output)
    assert output.dtype == torch.float32
    assert_close_relative(output, expected_output, 1e-5, "output")
    assert gradients.keys() == expected.keys()
    for name, gradient in gradients.items():
        assert gradient.dtype == torch.float32 and gradient.shape == expected[name].shape
        assert expected[name].abs().max() > 0, name
        assert_close_relative(gradient, expected[name], 1e-5, name)


def test_fused_backward_flushes_a_state_gradient_that_decays_below_float32s_normal_range():
    """The loss sees the last token only, as a classifier on the last layer's CLS token does. The gradient reaches the
    earlier tokens through the forward direction's states, times exp(dt A) = exp(-5) a step, so it goes through
    float32's denormal range (a microcode assist per operation on x86: that layer's backward scan ran 25x slower).
    The kernels flush it: the input's gradient is exactly zero at the tokens where the float64 one is deep in the
    denormal range (near its top, in_proj's backward, a torch matmul that does not flush, can still make denormals
    out of normal values), and matches it where it is normal with room for float32's precision."""
    mixer = make_mixer()
    with torch.no_grad():
        for A_log in (mixer.A_log, mixer.A_b_log):
            A_log.fill_(math.log(5.0))
        for dt_proj in (mixer.dt_proj, mixer.dt_proj_b):
            dt_proj.weight.zero_()
            dt_proj.bias.fill_(math.log(math.e - 1.0))  # dt = softplus(bias) = 1
    generator = torch.Generator().manual_seed(1)
    hidden_states = torch.randn(1, 40, mixer.hidden_size, generator=generator)
    grad_output = torch.zeros_like(hidden_states)
    grad_output[:, -1] = torch.randn(mixer.hidden_size, generator=generator)
    reference = copy.deepcopy(mixer).double()
    reference.scan_backend = "reference"
    expected = output_and_gradients(reference, hidden_states.double(), grad_output.double())[1]["input"][0]

    assert mixer.forward_path(hidden_states) == mixer.cpu_training_forward
    fused = output_and_gradients(mixer, hidden_states, grad_output)[1]["input"][0]
    token_scale = expected.abs().amax(-1)  # (tokens,)
    smallest_normal = torch.finfo(torch.float32).tiny
    smallest_denormal = 2.0**-149  # float32
    deep = (token_scale > smallest_denormal * 2**4) & (token_scale < smallest_normal * 2**-6)
    assert deep.sum() >= 2  # the case runs through denormals (here tokens 17 and 18 of 40)
    assert (fused[deep] == 0).all()
    for token in torch.nonzero(token_scale >= smallest_normal * 2**24).flatten().tolist():
        assert_close_relative(fused[token], expected[token], 1e-5, f"token {token}")


def test_fused_gradients_equal_the_autograd_path_and_do_not_depend_on_the_chunk_size(monkeypatch):
    mixer = make_mixer(hidden_size=32, seed=2)
    generator = torch.Generator().manual_seed(3)
    hidden_states, grad_output = torch.randn(2, 2, 300, 32, generator=generator).unbind(0)
    _, expected = output_and_gradients(mixer, hidden_states, grad_output, forward=mixer.autograd_forward)
    results = []
    for chunk_elements in (1, 2**18):  # 64-token chunks, one 300-token chunk
        monkeypatch.setattr(inference_ops, "_CHUNK_ELEMENTS", chunk_elements)
        results.append(output_and_gradients(mixer, hidden_states, grad_output)[1])
    for gradients in results:
        for name, gradient in gradients.items():
            assert_close_relative(gradient, expected[name], 1e-5, name)
    for name in expected:
        assert_close_relative(results[0][name], results[1][name], 1e-5, name)


def _count_calls(monkeypatch, module, name: str) -> list[int]:
    calls = []
    fused = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return fused(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize(
    "scan_backend, dtype, grad, autocast, path",
    [
        ("auto", torch.float32, True, False, "training"),
        ("numba", torch.float32, True, False, "training"),
        ("auto", torch.float32, False, False, "inference"),
        ("numba", torch.float32, False, False, "inference"),
        ("auto", torch.float32, True, True, None),  # bf16 autocast
        ("auto", torch.float32, False, True, None),
        ("auto", torch.float64, True, False, None),
        ("auto", torch.float64, False, False, None),
        ("reference", torch.float32, True, False, None),
        ("reference", torch.float32, False, False, None),
        ("chunked", torch.float32, True, False, None),
        ("chunked", torch.float32, False, False, None),
    ],
)
def test_fused_paths_run_only_for_float32_cpu_with_the_numba_backend(
    monkeypatch, scan_backend, dtype, grad, autocast, path
):
    """The fused training path with gradients, the fused inference path without, neither otherwise; in train and in
    eval mode alike (grad mode decides, not the module's mode)."""
    calls = {
        "training": _count_calls(monkeypatch, training_ops, "bidirectional_mamba_training_cpu"),
        "inference": _count_calls(monkeypatch, inference_ops, "bidirectional_mamba_inference_cpu"),
    }
    model = StretchySnakeForVideoClassification(tiny_config(scan_backend=scan_backend)).to(dtype)
    video = torch.randn(1, 4, 3, 16, 16, dtype=dtype)
    for mode in (True, False):
        model.train(mode)
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model(video)
    for name, counted in calls.items():
        assert len(counted) == (2 * model.config.num_hidden_layers if name == path else 0), name


def test_fused_training_is_one_autograd_node_reading_the_parameters_themselves():
    """A = -exp(A_log), the conv's taps and dt_proj's transpose are made inside the node, so each input of its
    backward is a parameter's own AccumulateGrad: no exp, neg or select nodes in between."""
    mixer = make_mixer()
    hidden_states = torch.randn(2, 20, mixer.hidden_size, requires_grad=True)
    node = mixer.cpu_training_forward(hidden_states).grad_fn
    assert type(node).__name__ == "BidirectionalMambaTrainingFnBackward"
    inputs = [next_node for next_node, _ in node.next_functions]
    assert all(type(next_node).__name__ == "AccumulateGrad" for next_node in inputs), inputs
    assert inputs[0].variable is hidden_states
    read = [next_node.variable for next_node in inputs[1:]]
    assert len(read) == len(list(mixer.parameters()))
    assert {id(tensor) for tensor in read} == {id(parameter) for parameter in mixer.parameters()}


def _parameter_gradients(model: StretchySnakeForVideoClassification, video: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(video, labels=torch.tensor([0, 2])).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_model_gradients_match_the_autograd_path_with_and_without_gradient_checkpointing(use_reentrant):
    torch.manual_seed(5)
    model = StretchySnakeForVideoClassification(tiny_config()).train()
    video = torch.randn(2, 4, 3, 16, 16)
    fused = _parameter_gradients(model, video)
    reference = copy.deepcopy(model)
    reference.config.scan_backend = "chunked"
    for layer in reference.stretchysnake.layers:
        layer.mixer.scan_backend = "chunked"
    expected = _parameter_gradients(reference, video)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    checkpointed = _parameter_gradients(model, video)
    assert fused.keys() == expected.keys() == checkpointed.keys()
    assert len(expected) == len(list(model.parameters()))
    for name in expected:
        assert_close_relative(fused[name], expected[name], 1e-4, name)
        assert_close_relative(checkpointed[name], fused[name], 1e-6, name)


def test_fused_training_saves_three_token_by_channel_tensors_besides_its_input():
    """What autograd keeps for the backward of one mixer: the input, x, z and the directions' sum (each
    (tokens, channels)), each direction's x_proj output (tokens, dt_rank + 2 d_state) and state every
    `CHECKPOINT_STEPS` tokens, and the weights; the autograd path keeps about twenty (tokens, channels) tensors."""
    mixer = make_mixer(hidden_size=32)
    length, channels, hidden = 1024, mixer.intermediate_size, mixer.hidden_size
    hidden_states = torch.randn(1, length, hidden, requires_grad=True)
    saved = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    def saved_bytes(forward) -> int:
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            forward(hidden_states)
        return sum(saved.values())

    weights = sum(p.numel() * 4 for p in mixer.parameters())
    fused = saved_bytes(mixer.cpu_training_forward)
    states = 2 * (length // inference_ops.CHECKPOINT_STEPS) * channels * mixer.ssm_state_size
    projections = 2 * length * mixer.x_proj.out_features
    assert fused - weights <= (length * hidden + 3 * length * channels + projections + states) * 4 * 1.1
    assert saved_bytes(mixer.autograd_forward) > 3 * fused
