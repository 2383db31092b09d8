import math

import torch

from stretchysnake_hf.selective_scan import selective_scan_reference


def test_reference_scan_against_hand_computed_recurrence():
    u = torch.tensor([[[1.0, -2.0, 0.5]]], dtype=torch.float64)
    delta = torch.tensor([[[0.5, 1.0, 0.2]]], dtype=torch.float64)
    A = torch.tensor([[-1.0, -0.5]], dtype=torch.float64)
    B = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]], dtype=torch.float64)
    C = torch.tensor([[[0.5, 1.0, 2.0], [1.0, 1.0, 1.0]]], dtype=torch.float64)
    D = torch.tensor([0.1], dtype=torch.float64)

    h = [0.0, 0.0]
    expected = []
    for t, (ut, dt) in enumerate(zip([1.0, -2.0, 0.5], [0.5, 1.0, 0.2], strict=True)):
        h = [math.exp(dt * a) * h[n] + dt * b[t] * ut for n, (a, b) in enumerate([(-1.0, B[0, 0]), (-0.5, B[0, 1])])]
        expected.append(h[0] * C[0, 0, t].item() + h[1] * C[0, 1, t].item() + 0.1 * ut)
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(selective_scan_reference(u, delta, A, B, C, D)[0, 0], expected, rtol=1e-12, atol=0)

    z = torch.tensor([[[0.3, -1.0, 2.0]]], dtype=torch.float64)
    gated = selective_scan_reference(u, delta, A, B, C, D, z=z)[0, 0]
    torch.testing.assert_close(gated, expected * z[0, 0] * torch.sigmoid(z[0, 0]), rtol=1e-12, atol=0)


def test_reference_scan_applies_bias_then_softplus_to_delta():
    torch.manual_seed(0)
    u, delta, z = torch.randn(3, 2, 4, 6).unbind(0)
    A = -torch.rand(4, 3)
    B, C = torch.randn(2, 2, 3, 6).unbind(0)
    bias = torch.randn(4)
    expected = selective_scan_reference(u, torch.nn.functional.softplus(delta + bias[:, None]), A, B, C, z=z)
    actual = selective_scan_reference(u, delta, A, B, C, z=z, delta_bias=bias, delta_softplus=True)
    torch.testing.assert_close(actual, expected)
    assert actual.dtype == torch.float32
    assert selective_scan_reference(u.bfloat16(), delta, A, B, C).dtype == torch.bfloat16
