"""An independent, deliberately plain VideoMamba forward written from the architecture notes, for tests.

It takes tensors under the ORIGINAL VideoMamba checkpoint names (`cls_token`, `pos_embed`, `temporal_pos_embedding`,
`patch_embed.proj.*`, `layers.{i}.mixer.*`, `layers.{i}.norm.weight`, `norm_f.weight`, `head.*`) and a video in the
original layout (batch, channels, frames, height, width). It follows the original's steps literally: a cls token
prepended to every frame, the spatial table added per frame, frame 0's cls kept, the temporal table added to the
patches only, then pre-norm blocks whose mixer runs a per-time-step loop forwards and on the flipped sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ORIGINAL_TO_PACKAGE = {
    "cls_token": "stretchysnake.embeddings.cls_token",
    "pos_embed": "stretchysnake.embeddings.position_embeddings",
    "temporal_pos_embedding": "stretchysnake.embeddings.temporal_position_embeddings",
    "patch_embed.proj.weight": "stretchysnake.embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "stretchysnake.embeddings.patch_embeddings.projection.bias",
    "norm_f.weight": "stretchysnake.norm_f.weight",
    "head.weight": "classifier.weight",
    "head.bias": "classifier.bias",
}


def original_state_dict(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The package's classifier state dict renamed to VideoMamba's keys by an explicit table."""
    renamed = {}
    for key, value in model_state.items():
        if key in ORIGINAL_TO_PACKAGE.values():
            original = next(k for k, v in ORIGINAL_TO_PACKAGE.items() if v == key)
        else:
            assert key.startswith("stretchysnake.layers."), key
            original = key[len("stretchysnake.") :]
        renamed[original] = value
    return renamed


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def _mamba_direction(x_and_gate, conv_w, conv_b, x_proj_w, dt_proj_w, dt_proj_b, A_log, D, d_state):
    """One causal Mamba over (L, 2E) for a single sample, with a loop over time for everything."""
    length, two_e = x_and_gate.shape
    inner = two_e // 2
    x, z = x_and_gate[:, :inner], x_and_gate[:, inner:]
    kernel = conv_w.shape[-1]
    padded = torch.cat([x.new_zeros(kernel - 1, inner), x], dim=0)
    conv = torch.stack([(padded[t : t + kernel] * conv_w[:, 0, :].T).sum(0) + conv_b for t in range(length)])
    x = conv * torch.sigmoid(conv)
    rank = dt_proj_w.shape[1]
    A = -torch.exp(A_log)
    state = x.new_zeros(inner, d_state)
    ys = []
    for t in range(length):
        proj = x_proj_w @ x[t]
        dt = F.softplus(dt_proj_w @ proj[:rank] + dt_proj_b)
        B, C = proj[rank : rank + d_state], proj[rank + d_state :]
        state = torch.exp(dt[:, None] * A) * state + dt[:, None] * B[None, :] * x[t][:, None]
        ys.append(state @ C + D * x[t])
    y = torch.stack(ys)
    return y * (z * torch.sigmoid(z))


def videomamba_logits(sd: dict[str, torch.Tensor], video: torch.Tensor, depth: int, eps: float = 1e-5):
    """Logits of the original VideoMamba for `video` (B, C, T, H, W) at the scale the tensors were built for."""
    patch = sd["patch_embed.proj.weight"]
    tubelet, p = patch.shape[2], patch.shape[3]
    tokens = F.conv3d(video, patch, sd["patch_embed.proj.bias"], stride=(tubelet, p, p))  # B D T' H' W'
    batch, dim, frames = tokens.shape[:3]
    tokens = tokens.permute(0, 2, 3, 4, 1).reshape(batch * frames, -1, dim)  # (B T') N D
    cls = sd["cls_token"].expand(batch * frames, -1, -1)
    tokens = torch.cat([cls, tokens], dim=1) + sd["pos_embed"]
    cls_first = tokens[:batch, :1]  # the original keeps the cls of the first rows
    patches = tokens[:, 1:].reshape(batch, frames, -1, dim) + sd["temporal_pos_embedding"][:, :, None, :]
    hidden = torch.cat([cls_first, patches.reshape(batch, -1, dim)], dim=1)

    d_state = sd["layers.0.mixer.A_log"].shape[1]
    for i in range(depth):
        m = f"layers.{i}.mixer."
        normed = _rms_norm(hidden, sd[f"layers.{i}.norm.weight"], eps)
        outs = []
        for b in range(batch):
            xz = normed[b] @ sd[m + "in_proj.weight"].T
            fwd = _mamba_direction(
                xz, sd[m + "conv1d.weight"], sd[m + "conv1d.bias"], sd[m + "x_proj.weight"],
                sd[m + "dt_proj.weight"], sd[m + "dt_proj.bias"], sd[m + "A_log"], sd[m + "D"], d_state,
            )  # fmt: skip
            bwd = _mamba_direction(
                xz.flip(0), sd[m + "conv1d_b.weight"], sd[m + "conv1d_b.bias"], sd[m + "x_proj_b.weight"],
                sd[m + "dt_proj_b.weight"], sd[m + "dt_proj_b.bias"], sd[m + "A_b_log"], sd[m + "D_b"], d_state,
            ).flip(0)  # fmt: skip
            outs.append((fwd + bwd) @ sd[m + "out_proj.weight"].T)
        hidden = hidden + torch.stack(outs)
    cls_out = _rms_norm(hidden, sd["norm_f.weight"], eps)[:, 0]
    return cls_out @ sd["head.weight"].T + sd["head.bias"]
