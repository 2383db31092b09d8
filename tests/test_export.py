"""The model compiles without graph breaks and exports (torch.export, ONNX) with the portable "chunked" scan."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime
import torch
import torch._dynamo.utils
from conftest import tiny_config

from stretchysnake_hf import StretchySnakeForVideoClassification


def chunked_model() -> StretchySnakeForVideoClassification:
    torch.manual_seed(0)
    return StretchySnakeForVideoClassification(tiny_config(scan_backend="chunked", num_hidden_layers=1)).eval()


def test_compiled_fullgraph_matches_eager_at_two_scales():
    model = chunked_model()
    compiled = torch.compile(model, fullgraph=True)  # a graph break would raise
    for video, patch_size in ((torch.randn(2, 4, 3, 16, 16), None), (torch.randn(1, 8, 3, 32, 32), 4)):
        with torch.no_grad():
            expected = model(video, patch_size=patch_size).logits
            actual = compiled(video, patch_size=patch_size).logits
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_compiling_a_resized_patch_kernel_warns_nothing_about_the_resize_caches():
    # Dynamo warns once per process, so another test may have used up the warning: forget that it was given.
    torch._dynamo.utils.warn_once_cache.clear()
    compiled = torch.compile(chunked_model(), fullgraph=True)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        compiled(torch.randn(1, 8, 3, 24, 24), patch_size=6)  # the 8 px kernel is resized to 6 px
    assert not [str(w.message) for w in caught if "lru_cache" in str(w.message)]


def test_torch_export_at_a_fixed_scale_matches_eager():
    model = chunked_model()
    video = torch.randn(2, 8, 3, 32, 32)
    program = torch.export.export(model, (video,), kwargs={"patch_size": 8})
    other = torch.randn(2, 8, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            program.module()(other, patch_size=8).logits, model(other, patch_size=8).logits, rtol=1e-4, atol=1e-4
        )


def test_onnx_export_runs_in_onnxruntime_like_eager(tmp_path):
    model = chunked_model()
    video = torch.randn(2, 4, 3, 16, 16)
    path = tmp_path / "stretchysnake.onnx"
    torch.onnx.export(model, (video,), path, dynamo=True, input_names=["pixel_values"], output_names=["logits"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = torch.randn(2, 4, 3, 16, 16)
    (logits,) = session.run(["logits"], {"pixel_values": other.numpy()})
    with torch.no_grad():
        expected = model(other).logits.numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
