"""The selective-scan backends against the sequential reference: values, gradients, stability, memory, selection."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from torch import nn

from stretchysnake_hf import StretchySnakeForVideoClassification
from stretchysnake_hf import selective_scan as scan_ops
from stretchysnake_hf.selective_scan import causal_conv1d, resolve_backend, selective_scan

CPU_BACKENDS = ["numba", "chunked"]
INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
TOLERANCES = {torch.float32: 1e-4, torch.float64: 1e-9}
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def make_inputs(
    batch: int,
    channels: int,
    state_size: int,
    length: int,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    delta_scale: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Random scan inputs in mamba-ssm's layout; delta is pre-softplus, A spans slow to fast decays."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype)

    return {
        "u": randn(batch, channels, length),
        "delta": delta_scale * randn(batch, channels, length) - 1.0,
        "A": -(torch.rand(channels, state_size, generator=generator, dtype=dtype) * 8 + 0.01),
        "B": randn(batch, state_size, length),
        "C": randn(batch, state_size, length),
        "D": randn(channels),
        "z": randn(batch, channels, length),
        "delta_bias": 0.5 * randn(channels),
    }


def scan_with_grads(
    backend: str, inputs: dict[str, torch.Tensor | None], delta_softplus: bool = True, seed: int = 1
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scan's output and the gradients of <output, random weights> with respect to every given input."""
    leaves = {name: t.detach().clone().requires_grad_() for name, t in inputs.items() if t is not None}
    out = selective_scan(**leaves, delta_softplus=delta_softplus, backend=backend)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(out.device)
    grads = torch.autograd.grad(out, list(leaves.values()), weights)
    return out, dict(zip(leaves, grads, strict=True))


def assert_relative_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, name: str) -> None:
    """max |actual - expected| <= rtol * max |expected|: relative to the tensor's scale, not elementwise."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, name
    assert torch.isfinite(actual).all(), f"{name}: non-finite values"
    error = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert error <= rtol * scale, f"{name}: max error {error:.3g} > {rtol:g} x max |expected| {scale:.3g}"


def assert_backends_agree(backend: str, reference: str, inputs: dict, rtol: float, delta_softplus: bool = True):
    out, grads = scan_with_grads(backend, inputs, delta_softplus)
    expected_out, expected_grads = scan_with_grads(reference, inputs, delta_softplus)
    assert_relative_close(out, expected_out, rtol, "output")
    assert grads.keys() == expected_grads.keys()
    for name in grads:
        assert_relative_close(grads[name], expected_grads[name], rtol, f"grad of {name}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("batch", "channels", "state_size", "length"), [(2, 3, 4, 1), (1, 5, 16, 64), (2, 6, 8, 201)])
def test_backend_matches_reference(backend, dtype, batch, channels, state_size, length, monkeypatch):
    monkeypatch.setattr(scan_ops, "_CHUNK_ELEMENTS", 1)  # the shortest chunks, 64 steps: 201 steps cross 3 boundaries
    inputs = make_inputs(batch, channels, state_size, length, dtype)
    assert_backends_agree(backend, "reference", inputs, TOLERANCES[dtype])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backend_matches_reference_without_optional_inputs(backend):
    """No D, z or delta_bias and no softplus: delta is then used as the time step itself, so keep it positive."""
    inputs = make_inputs(2, 4, 8, 100, torch.float64)
    inputs.update(D=None, z=None, delta_bias=None, delta=torch.nn.functional.softplus(inputs["delta"]))
    assert_backends_agree(backend, "reference", inputs, 1e-9, delta_softplus=False)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backend_matches_reference_on_a_long_input(backend):
    assert_backends_agree(backend, "reference", make_inputs(1, 4, 16, 2000, seed=3), 1e-4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_half_precision_inputs_compute_in_float32(backend):
    inputs = {name: t.bfloat16() for name, t in make_inputs(2, 4, 8, 70).items()}
    out = selective_scan(**inputs, delta_softplus=True, backend=backend)
    expected = selective_scan(**inputs, delta_softplus=True, backend="reference")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected, rtol=1e-2, atol=1e-2)


def test_numba_and_chunked_agree_and_stay_finite_at_64_frames_of_384_px():
    """36,865 tokens (64 frames x 24 x 24 + cls) with time steps from ~1e-13 to ~40: decays from 1 down to exp(-320)."""
    inputs = make_inputs(1, 4, 16, 36_865, seed=4, delta_scale=12.0)
    out, grads = scan_with_grads("numba", inputs)
    expected_out, expected_grads = scan_with_grads("chunked", inputs)
    assert_relative_close(out, expected_out, 1e-4, "output")
    for name in grads:
        assert_relative_close(grads[name], expected_grads[name], 1e-4, f"grad of {name}")


def test_numba_scan_flushes_states_and_gradients_below_float32s_normal_range():
    """Input at the first step only, output gradient at the last step only: the state decays forward and its gradient
    backward by exp(-5) a step, through float32's denormal range (x86 takes a microcode assist per operation on a
    denormal), which the kernels flush to zero; above it they match the float64 reference."""
    batch, channels, state_size, length = 1, 3, 2, 40
    u = torch.zeros(batch, channels, length)
    u[..., 0] = 1.0
    inputs = {
        "u": u,
        "delta": torch.ones(batch, channels, length),
        "A": torch.full((channels, state_size), -5.0),
        "B": torch.ones(batch, state_size, length),
        "C": torch.ones(batch, state_size, length),
    }
    smallest_normal = torch.finfo(torch.float32).tiny

    def output_and_grad_u(backend: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        leaves = {name: t.to(dtype).requires_grad_() for name, t in inputs.items()}
        out = selective_scan(**leaves, backend=backend)
        (grad_u,) = torch.autograd.grad(out[..., -1].sum(), leaves["u"])
        return out.detach(), grad_u

    for result, expected in zip(
        output_and_grad_u("numba", torch.float32), output_and_grad_u("reference", torch.float64), strict=True
    ):
        assert ((expected > 0) & (expected < smallest_normal)).any()  # the case runs through denormals
        normal = expected.abs() >= smallest_normal
        torch.testing.assert_close(result[normal].double(), expected[normal], rtol=1e-5, atol=0)
        assert (result[~normal] == 0).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_memory_never_holds_a_length_x_channels_x_state_tensor(backend):
    """Neither the tensors saved for backward nor any allocation of the forward and backward passes reach
    length x channels x d_state elements (a quarter of it, in fact)."""
    batch, channels, state_size, length = 1, 8, 16, 4096
    full = length * channels * state_size
    inputs = {name: t.requires_grad_() for name, t in make_inputs(batch, channels, state_size, length).items()}
    saved = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel())
        return tensor

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profile:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            out = selective_scan(**inputs, delta_softplus=True, backend=backend)
        out.sum().backward()
    assert saved and max(saved) <= full // 4
    largest_allocation = max(event.self_cpu_memory_usage for event in profile.events())
    assert 0 < largest_allocation <= full * 4 // 4  # float32: 4 bytes per element


def test_tiny_model_logits_and_gradients_with_auto_match_the_reference_scan(monkeypatch):
    """65 tokens per direction (4 frames of 4 x 4 patches + cls), in chunks of 64 steps."""
    monkeypatch.setattr(scan_ops, "_CHUNK_ELEMENTS", 1)
    torch.manual_seed(0)
    models = {}
    for name in ("reference", "auto"):
        models[name] = StretchySnakeForVideoClassification(tiny_config(image_size=32, scan_backend=name)).train()
    models["auto"].load_state_dict(models["reference"].state_dict())
    video, labels = torch.randn(2, 4, 3, 32, 32), torch.tensor([0, 2])
    results = {}
    for name, model in models.items():
        outputs = model(video, labels=labels)
        outputs.loss.backward()
        results[name] = outputs.logits, {n: p.grad for n, p in model.named_parameters()}
    assert_relative_close(results["auto"][0], results["reference"][0], 1e-4, "logits")
    for name, grad in results["reference"][1].items():
        assert_relative_close(results["auto"][1][name], grad, 1e-4, f"grad of {name}")


def autocast_training_step(model: nn.Module, video: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype | None):
    """Logits and parameter gradients of one training step, under `dtype` autocast when given."""
    model.zero_grad()
    with torch.autocast(video.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        outputs = model(video, labels=labels)
    outputs.loss.backward()
    return outputs.logits.float(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_bf16_step_tracks_float32(model: nn.Module, video: torch.Tensor, labels: torch.Tensor) -> None:
    """A bf16-autocast step gives the float32 step's logits to bf16 precision and gradients pointing the same way:
    the whole gradient, and each tensor's whose norm is not lost in bf16 rounding (above 1e-4 of the largest; at
    initialisation the A_log and dt_proj gradients are ~1e-9 and bf16 noise)."""
    logits, grads = autocast_training_step(model, video, labels, None)
    bf16_logits, bf16_grads = autocast_training_step(model, video, labels, torch.bfloat16)
    assert_relative_close(bf16_logits, logits, 3e-2, "bf16 logits")

    def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
        return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()

    assert (
        cosine(torch.cat([g.flatten() for g in bf16_grads.values()]), torch.cat([g.flatten() for g in grads.values()]))
        > 0.999
    )
    largest = max(grad.norm() for grad in grads.values())
    for name, grad in grads.items():
        assert bf16_grads[name].dtype == torch.float32 and torch.isfinite(bf16_grads[name]).all(), name
        if grad.norm() > 1e-4 * largest:
            assert cosine(bf16_grads[name], grad) > 0.99, f"grad of {name}: {cosine(bf16_grads[name], grad):.4f}"


@pytest.mark.parametrize("backend", ["reference", *CPU_BACKENDS])
def test_bf16_autocast_training_step_tracks_the_float32_step(backend):
    torch.manual_seed(0)
    model = StretchySnakeForVideoClassification(tiny_config(image_size=32, scan_backend=backend)).train()
    assert_bf16_step_tracks_float32(model, torch.randn(2, 4, 3, 32, 32), torch.tensor([0, 2]))


def test_numba_takes_its_process_share_of_the_cores(monkeypatch):
    """Under a launcher with LOCAL_WORLD_SIZE processes per machine, each scan runs on cores // processes threads (the
    cores this process may run on), and never on more than torch's intra-op threads (one thread count for both)."""
    numba = pytest.importorskip("numba")
    from stretchysnake_hf import scan_numba

    default, torch_threads = numba.get_num_threads(), torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 4, 5}, raising=False)  # 4 CPUs of a larger machine
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(scan_ops, "cpu_quota", lambda: None)  # whatever limit the machine running the test has
    try:
        torch.set_num_threads(4)
        for local_processes, expected in (("2", 2), ("4", 1), ("8", 1)):
            monkeypatch.setenv("LOCAL_WORLD_SIZE", local_processes)
            scan_numba._cores_per_process.cache_clear()
            expected = min(expected, numba.config.NUMBA_NUM_THREADS)
            assert scan_numba.numba_threads_per_process() == expected
            assert_backends_agree("numba", "reference", make_inputs(1, 4, 8, 100, torch.float64), 1e-9)
            assert numba.get_num_threads() == expected
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        scan_numba._cores_per_process.cache_clear()
        torch.set_num_threads(1)
        assert scan_numba.numba_threads_per_process() == 1
    finally:
        scan_numba._cores_per_process.cache_clear()
        numba.set_num_threads(default)
        torch.set_num_threads(torch_threads)


def test_a_users_torch_thread_count_survives_the_fused_paths():
    """Starting numba's threads sets the OpenMP thread count torch reads; in a fresh process (numba starts its threads
    once per process), torch.set_num_threads(1) must hold through a training step and an inference forward."""
    pytest.importorskip("numba")
    code = (
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from conftest import tiny_config\n"
        "from stretchysnake_hf import StretchySnakeForVideoClassification\n"
        "model = StretchySnakeForVideoClassification(tiny_config(scan_backend='numba')).train()\n"
        "video = torch.randn(1, 4, 3, 16, 16)\n"
        "model(video).logits.sum().backward()\n"
        "with torch.no_grad():\n"
        "    model.eval()(video)\n"
        "print(torch.get_num_threads())\n"
    )
    environment = dict(os.environ, PYTHONPATH=str(Path(__file__).parent), NUMBA_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "1"


def test_auto_picks_numba_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "numba"


def test_unknown_backend_raises_value_error():
    with pytest.raises(ValueError, match="Unknown scan backend 'triton'"):
        resolve_backend("triton", torch.device("cpu"))
    with pytest.raises(ValueError, match="Unknown scan backend"):
        selective_scan(*make_inputs(1, 2, 2, 3).values(), backend="fast")


def test_missing_packages_raise_import_error_naming_the_install_when_asked_for(monkeypatch):
    monkeypatch.setattr(scan_ops, "_mamba_ssm_kernels", lambda: None)
    monkeypatch.setattr(scan_ops, "numba_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install 'stretchysnake-hf\[cuda\]'"):
        resolve_backend("cuda", torch.device("cpu"))
    with pytest.raises(ImportError, match="pip install numba"):
        resolve_backend("numba", torch.device("cpu"))


def test_backends_on_the_wrong_device_raise_value_error(monkeypatch):
    monkeypatch.setattr(scan_ops, "_mamba_ssm_kernels", lambda: (object(), object()))
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        resolve_backend("cuda", torch.device("cpu"))
    with pytest.raises(ValueError, match="runs on CPU tensors"):
        resolve_backend("numba", torch.device("cuda"))


def test_auto_falls_back_to_chunked_and_says_how_to_install(monkeypatch, caplog):
    monkeypatch.setattr(scan_ops, "_mamba_ssm_kernels", lambda: None)
    monkeypatch.setattr(scan_ops, "numba_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger=scan_ops.logger.name):
        assert resolve_backend("auto", torch.device("cpu")) == "chunked"
    assert resolve_backend("auto", torch.device("cuda")) == "chunked"
    assert "pip install numba" in caplog.text
    inputs = make_inputs(1, 3, 4, 20)
    torch.testing.assert_close(
        selective_scan(**inputs, delta_softplus=True, backend="auto"),
        selective_scan(**inputs, delta_softplus=True, backend="reference"),
        rtol=1e-5,
        atol=1e-6,
    )


def test_causal_conv1d_matches_a_padded_torch_conv():
    conv = nn.Conv1d(6, 6, kernel_size=4, groups=6, padding=3)
    x = torch.randn(2, 6, 11)
    expected = nn.functional.silu(conv(x)[..., :11])
    torch.testing.assert_close(causal_conv1d(x, conv.weight[:, 0], conv.bias, activation="silu"), expected)
    torch.testing.assert_close(causal_conv1d(x, conv.weight[:, 0], conv.bias), conv(x)[..., :11])


@requires_cuda
@pytest.mark.parametrize("backend", ["chunked", "cuda"])
def test_cuda_backends_match_reference(backend):
    if backend == "cuda" and scan_ops._mamba_ssm_kernels() is None:
        pytest.skip("mamba-ssm is not installed")
    inputs = {name: t.cuda() for name, t in make_inputs(2, 8, 16, 300, seed=5).items()}
    assert_backends_agree(backend, "reference", inputs, 1e-4)


@requires_cuda
def test_cuda_auto_and_causal_conv1d_match_cpu():
    inputs = make_inputs(2, 8, 16, 300, seed=6)
    out = selective_scan(**{name: t.cuda() for name, t in inputs.items()}, delta_softplus=True)
    assert_relative_close(out.cpu(), selective_scan(**inputs, delta_softplus=True, backend="reference"), 1e-4, "out")
    x, weight, bias = torch.randn(2, 8, 50), torch.randn(8, 4), torch.randn(8)
    expected = causal_conv1d(x, weight, bias, activation="silu")
    actual = causal_conv1d(x.cuda(), weight.cuda(), bias.cuda(), activation="silu")
    assert_relative_close(actual.cpu(), expected, 1e-5, "causal conv")


@requires_cuda
def test_cuda_model_matches_cpu_reference():
    """The tiny model on CUDA ("auto": mamba-ssm's fused kernels when installed) against the CPU reference scan."""
    torch.manual_seed(0)
    model = StretchySnakeForVideoClassification(tiny_config(image_size=32, scan_backend="reference")).train()
    video, labels = torch.randn(2, 4, 3, 32, 32), torch.tensor([0, 2])
    model(video, labels=labels).loss.backward()
    expected = model(video).logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.config.scan_backend = "auto"
    for layer in model.stretchysnake.layers:
        layer.mixer.scan_backend = "auto"
    model.cuda()
    model(video.cuda(), labels=labels.cuda()).loss.backward()
    assert_relative_close(model(video.cuda()).logits.detach().cpu(), expected[0], 1e-4, "logits")
    for name, parameter in model.named_parameters():
        assert_relative_close(parameter.grad.cpu(), expected[1][name], 1e-4, f"grad of {name}")


@requires_cuda
def test_cuda_bf16_autocast_training_step_tracks_the_float32_step():
    torch.manual_seed(0)
    model = StretchySnakeForVideoClassification(tiny_config(image_size=32)).train().cuda()
    assert_bf16_step_tracks_float32(model, torch.randn(2, 4, 3, 32, 32).cuda(), torch.tensor([0, 2]).cuda())
