"""Resizing of patch kernels and position tables, checked against independent constructions (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.testing_utils import CaptureLogger

from stretchysnake_hf import resizing
from stretchysnake_hf.resizing import (
    pi_resize_patch_kernel,
    rebase_tensor,
    resize_spatial_pos_embed,
    resize_temporal_pos_embed,
)


def resize_operator_2d(old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """B of shape (new_h * new_w, old_h * old_w): vec(resize(x)) = B vec(x), from a 2-D resize of the identity basis."""
    shrinking = new[0] < old[0] or new[1] < old[1]
    basis = torch.eye(old[0] * old[1], dtype=torch.float64).reshape(-1, 1, *old)
    resized = F.interpolate(basis, size=new, mode="bilinear", align_corners=False, antialias=shrinking)
    return resized.reshape(old[0] * old[1], -1).T


def resize_patches_3d(patches: torch.Tensor, new_size: tuple[int, int, int]) -> torch.Tensor:
    """Resize (n, c, t, h, w) patches: linear in time, then bilinear in space (each an independent F.interpolate)."""
    n, c, t, h, w = patches.shape
    new_t, new_h, new_w = new_size
    patches = F.interpolate(patches, size=(new_t, h, w), mode="trilinear", align_corners=False)
    patches = F.interpolate(patches.reshape(n, c * new_t, h, w), size=(new_h, new_w), mode="bilinear")
    return patches.reshape(n, c, new_t, new_h, new_w)


def keys_cubic_resize_1d(values: list[float], new_length: int) -> list[float]:
    """PyTorch's bicubic (Keys, a = -0.75, half-pixel centres, border replicated) written out for one axis."""

    def weight(distance: float) -> float:
        a, d = -0.75, abs(distance)
        if d <= 1:
            return (a + 2) * d**3 - (a + 3) * d**2 + 1
        if d < 2:
            return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
        return 0.0

    scale = len(values) / new_length
    out = []
    for i in range(new_length):
        source = (i + 0.5) * scale - 0.5
        left = int(torch.floor(torch.tensor(source)))
        taps = range(left - 1, left + 3)
        out.append(sum(weight(source - j) * values[min(max(j, 0), len(values) - 1)] for j in taps))
    return out


def test_pi_resize_identity_returns_the_kernel():
    weight = torch.randn(4, 3, 1, 8, 8)
    assert pi_resize_patch_kernel(weight, (1, 8, 8)) is weight


@pytest.mark.parametrize(("old", "new"), [((8, 8), (12, 12)), ((8, 8), (5, 5)), ((4, 6), (6, 9)), ((6, 6), (3, 2))])
def test_kernel_resize_matrix_is_the_2d_interpolation_of_the_identity(old, new):
    # resizing.py builds B as a Kronecker product of 1-D matrices; it must equal the 2-D resize it stands for.
    weight = torch.randn(2, 3, *old, dtype=torch.float64)
    expected = (weight.reshape(2, 3, -1) @ torch.linalg.pinv(resize_operator_2d(old, new))).reshape(2, 3, *new)
    torch.testing.assert_close(pi_resize_patch_kernel(weight, new), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("old", "new"), [(4, 8), (4, 7), (8, 16)])
def test_pi_resize_upsampling_preserves_every_token_2d(old, new):
    torch.manual_seed(0)
    weight = torch.randn(5, 3, old, old, dtype=torch.float64)
    patches = torch.randn(10, 3, old, old, dtype=torch.float64)
    new_weight = pi_resize_patch_kernel(weight, (new, new))
    resized = F.interpolate(patches, size=(new, new), mode="bilinear", align_corners=False)
    tokens = torch.einsum("nchw,ochw->no", patches, weight)
    torch.testing.assert_close(torch.einsum("nchw,ochw->no", resized, new_weight), tokens, rtol=1e-5, atol=1e-5)


def test_pi_resize_upsampling_preserves_every_token_3d_tubelet():
    torch.manual_seed(1)
    weight = torch.randn(4, 3, 2, 4, 4, dtype=torch.float64)
    patches = torch.randn(6, 3, 2, 4, 4, dtype=torch.float64)
    new_weight = pi_resize_patch_kernel(weight, (3, 6, 6))
    tokens = torch.einsum("ncthw,octhw->no", patches, weight)
    new_tokens = torch.einsum("ncthw,octhw->no", resize_patches_3d(patches, (3, 6, 6)), new_weight)
    torch.testing.assert_close(new_tokens, tokens, rtol=1e-5, atol=1e-5)


def test_pi_resize_downsampling_is_the_least_squares_solution():
    torch.manual_seed(2)
    weight = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    operator = resize_operator_2d((8, 8), (5, 5))  # [25, 64]
    # argmin_v ||B^T v - w||: the kernel whose tokens on resized patches best match the old tokens
    solution = torch.linalg.lstsq(operator.T, weight.reshape(12, 64).T, driver="gelsd").solution.T.reshape(4, 3, 5, 5)
    new_weight = pi_resize_patch_kernel(weight, (5, 5))
    torch.testing.assert_close(new_weight, solution, rtol=1e-8, atol=1e-8)
    residual = operator.T @ new_weight.reshape(12, 25).T - weight.reshape(12, 64).T
    assert residual.norm() > 1e-3  # lossy, as downsampling a random kernel must be
    torch.testing.assert_close(operator @ residual, torch.zeros(25, 12, dtype=torch.float64), rtol=0, atol=1e-10)


def test_pi_resize_keeps_dtype_and_rejects_bad_ranks():
    weight = torch.randn(4, 3, 1, 8, 8, dtype=torch.bfloat16)
    assert pi_resize_patch_kernel(weight, (1, 4, 4)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="4-D or 5-D kernel"):
        pi_resize_patch_kernel(weight, (4, 4))
    with pytest.raises(ValueError, match="4-D or 5-D kernel"):
        pi_resize_patch_kernel(torch.randn(4, 8, 8), (4, 4))


def test_spatial_table_identity_returns_the_table():
    table = torch.randn(1, 1 + 6, 8)
    assert resize_spatial_pos_embed(table, (2, 3), old_grid=(2, 3)) is table
    square = torch.randn(1, 1 + 16, 8)
    assert resize_spatial_pos_embed(square, (4, 4)) is square


def test_spatial_table_matches_hand_written_bicubic_and_keeps_cls():
    # grid value = 10 * row + column, so the resize separates: rows and columns can be checked with 1-D cubics
    rows, cols = torch.meshgrid(torch.arange(2.0), torch.arange(3.0), indexing="ij")
    grid = (10 * rows + cols).reshape(1, 6, 1).expand(1, 6, 2).double()
    cls_slot = torch.tensor([[[7.0, -7.0]]], dtype=torch.float64)
    table = torch.cat([cls_slot, grid], dim=1)
    resized = resize_spatial_pos_embed(table, (4, 5), old_grid=(2, 3))
    assert resized.shape == (1, 1 + 20, 2)
    torch.testing.assert_close(resized[:, :1], cls_slot, rtol=0, atol=0)
    new_rows = torch.tensor(keys_cubic_resize_1d([0.0, 10.0], 4), dtype=torch.float64)
    new_cols = torch.tensor(keys_cubic_resize_1d([0.0, 1.0, 2.0], 5), dtype=torch.float64)
    expected = (new_rows[:, None] + new_cols[None, :]).reshape(20)
    torch.testing.assert_close(resized[0, 1:, 0], expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(resized[0, 1:, 1], expected, rtol=1e-6, atol=1e-6)


def test_spatial_table_follows_videomamba_finetuning_resize():
    # VideoMamba's fine-tuning scripts: split cls, (1, D, g, g) bicubic with align_corners=False, prepend cls.
    torch.manual_seed(3)
    table = torch.randn(1, 1 + 14 * 14, 16)
    grid = table[:, 1:].reshape(1, 14, 14, 16).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 64, 16)
    torch.testing.assert_close(resize_spatial_pos_embed(table, (8, 8)), torch.cat([table[:, :1], grid], dim=1))


def test_spatial_table_errors_name_the_numbers():
    with pytest.raises(ValueError, match="square grid from 6"):
        resize_spatial_pos_embed(torch.randn(1, 7, 4), (3, 3))
    with pytest.raises(ValueError, match=r"old_grid \(2, 2\) does not match"):
        resize_spatial_pos_embed(torch.randn(1, 7, 4), (3, 3), old_grid=(2, 2))
    with pytest.raises(ValueError, match="must be"):
        resize_spatial_pos_embed(torch.randn(7, 4), (3, 3))


def test_temporal_table_identity_returns_the_table():
    table = torch.randn(1, 8, 4)
    assert resize_temporal_pos_embed(table, 8) is table


@pytest.mark.parametrize("new_length", [8, 2, 3])
def test_temporal_table_is_linear_with_half_pixel_centres(new_length):
    # a ramp 0, 1, 2, 3 resampled at (i + 0.5) * 4 / new_length - 0.5, clamped to the ends
    table = torch.arange(4.0, dtype=torch.float64).reshape(1, 4, 1) * torch.tensor([1.0, -2.0], dtype=torch.float64)
    positions = [min(max((i + 0.5) * 4 / new_length - 0.5, 0.0), 3.0) for i in range(new_length)]
    expected = torch.tensor(positions, dtype=torch.float64).reshape(1, -1, 1) * torch.tensor([1.0, -2.0])
    torch.testing.assert_close(resize_temporal_pos_embed(table, new_length), expected.double())


def test_rebase_tensor_dispatches_on_the_name_and_logs(transformers_info_logs):
    torch.manual_seed(4)
    spatial, temporal, kernel = torch.randn(1, 1 + 4, 8), torch.randn(1, 4, 8), torch.randn(8, 3, 1, 8, 8)
    with CaptureLogger(resizing.logger) as captured:
        rebased = {
            name: rebase_tensor(f"stretchysnake.embeddings.{name}", tensor, shape)
            for name, tensor, shape in [
                ("position_embeddings", spatial, (1, 1 + 16, 8)),
                ("temporal_position_embeddings", temporal, (1, 8, 8)),
                ("patch_embeddings.projection.weight", kernel, (8, 3, 1, 4, 4)),
            ]
        }
    torch.testing.assert_close(rebased["position_embeddings"], resize_spatial_pos_embed(spatial, (4, 4)))
    torch.testing.assert_close(rebased["temporal_position_embeddings"], resize_temporal_pos_embed(temporal, 8))
    torch.testing.assert_close(
        rebased["patch_embeddings.projection.weight"], pi_resize_patch_kernel(kernel, (1, 4, 4))
    )
    assert "position_embeddings from (1, 5, 8) to (1, 17, 8)" in captured.out
    assert "temporal_position_embeddings from (1, 4, 8) to (1, 8, 8)" in captured.out
    assert "projection.weight from (8, 3, 1, 8, 8) to (8, 3, 1, 4, 4)" in captured.out


def test_rebase_tensor_leaves_other_tensors_and_channel_dims_alone():
    weight = torch.randn(8, 4)
    assert rebase_tensor("classifier.weight", weight, (5, 4)) is weight
    table = torch.randn(1, 1 + 4, 8)
    assert rebase_tensor("embeddings.position_embeddings", table, (1, 1 + 4, 16)) is table
    # the grid follows the target, the hidden size does not: the loader reports the remaining mismatch
    assert rebase_tensor("embeddings.position_embeddings", table, (1, 1 + 9, 16)).shape == (1, 1 + 9, 8)
