# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""PyTorch StretchySnake: a VideoMamba backbone that runs at any frame count, resolution and patch size."""

import contextlib
import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ConversionOps, PreTrainedModel, WeightConverter
from transformers import initialization as init
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, auto_docstring, logging
from transformers.utils.generic import can_return_tuple
from transformers.utils.import_utils import is_tracing
from transformers.utils.output_capturing import capture_outputs

from .configuration_stretchysnake import StretchySnakeConfig
from .geometry import SCALE_DEPENDENT_PARAMETERS, grid_side
from .resizing import pi_resize_patch_kernel, rebase_tensor, resize_spatial_pos_embed, resize_temporal_pos_embed
from .selective_scan import causal_conv1d, cuda_kernels_available, mamba_inner_cuda, resolve_backend, selective_scan

logger = logging.get_logger(__name__)


def check_pixel_values(pixel_values: torch.Tensor, num_channels: int) -> None:
    """Raise a `ValueError` naming the problem if `pixel_values` is not a (batch, frames, C, H, W) float video, or,
    for CPU tensors outside compilation, if it holds NaN or infinite values. The shape checks cost nothing and
    compile; the value check would synchronise an accelerator on every forward, so it is skipped there."""
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"pixel_values must be a torch.Tensor; got {type(pixel_values).__name__}.")
    if pixel_values.dim() != 5:
        raise ValueError(
            "pixel_values must have shape (batch_size, num_frames, num_channels, height, width); "
            f"got {pixel_values.dim()} dims {tuple(pixel_values.shape)}."
        )
    batch_size, num_frames, channels, height, width = pixel_values.shape
    if channels != num_channels:
        raise ValueError(
            f"pixel_values has {channels} channels (dim 2 of {tuple(pixel_values.shape)}) but the model expects "
            f"{num_channels}; the layout is (batch_size, num_frames, num_channels, height, width)."
        )
    if min(batch_size, num_frames, height, width) == 0:
        raise ValueError(f"pixel_values is empty: shape {tuple(pixel_values.shape)}.")
    if not pixel_values.is_floating_point():
        raise ValueError(f"pixel_values must be a floating-point tensor; got {pixel_values.dtype}.")
    # Counting NaNs reads the values back: free on CPU, a device synchronisation elsewhere, and a graph break under
    # torch.compile / torch.export. So it runs in eager mode on CPU tensors only. A NaN or infinity makes the sum
    # non-finite, and one summing pass costs a twentieth of isfinite's three; a sum that overflows from finite values
    # is counted properly and passes.
    if pixel_values.device.type == "cpu" and not is_tracing():
        total = pixel_values.sum(dtype=torch.promote_types(pixel_values.dtype, torch.float32))
        if not torch.isfinite(total) and (non_finite := (~torch.isfinite(pixel_values)).sum().item()):
            raise ValueError(f"pixel_values contains {non_finite} NaN or infinite values.")


class StretchySnakeResizeCache(nn.Module):
    """Memo of resized kernels and tables for inference, keyed by target scale.

    An entry is reused only while its source parameter is the same tensor at the same version: an optimizer step or
    `.to()` changes the version or the storage, and the entry is recomputed. A write through `parameter.data` changes
    neither, so after one call `clear()`, or switch the model's mode (`train()`/`eval()`). The memo is a submodule
    without parameters so that a mode switch and `load_state_dict` reach it; both empty it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[tuple, tuple[tuple, torch.Tensor]] = {}
        self.register_load_state_dict_post_hook(lambda module, incompatible_keys: module.clear())

    def forward(self, key: tuple, source: torch.Tensor, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return compute()
        stamp = (source.data_ptr(), source._version, source.dtype, source.device)
        entry = self._entries.get(key)
        if entry is None or entry[0] != stamp:
            entry = (stamp, compute())
            self._entries[key] = entry
        return entry[1]

    def train(self, mode: bool = True) -> "StretchySnakeResizeCache":
        self.clear()
        return super().train(mode)

    def clear(self) -> None:
        self._entries.clear()


class StretchySnakePatchEmbeddings(nn.Module):
    """Conv3d patch embedding (stride equal to the kernel) whose kernel is PI-resized on the fly to the requested
    patch size.

    Input `(batch_size, num_channels, num_frames, height, width)`; output
    `(batch_size, num_frames // tubelet_size, height // patch_size, width // patch_size, hidden_size)`.
    """

    def __init__(self, config: StretchySnakeConfig) -> None:
        super().__init__()
        self.tubelet_size = config.tubelet_size
        self.patch_size = config.patch_size
        kernel = (config.tubelet_size, config.patch_size, config.patch_size)
        self.projection = nn.Conv3d(config.num_channels, config.hidden_size, kernel_size=kernel, stride=kernel)
        self.resize_cache = StretchySnakeResizeCache()

    def kernel_for(self, patch_size: int) -> torch.Tensor:
        """The projection kernel at `(tubelet_size, patch_size, patch_size)`, PI-resized from the stored one."""
        weight = self.projection.weight
        new_size = (self.tubelet_size, patch_size, patch_size)
        if self.training:
            return pi_resize_patch_kernel(weight, new_size)
        return self.resize_cache(new_size, weight, lambda: pi_resize_patch_kernel(weight, new_size))

    def forward(self, pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
        # The conv's stride is its kernel, so it is one matmul over the flattened tubelets: on CPU its backward took
        # half the time of conv3d's (mkldnn's weight gradient), and its output needs no permute.
        kernel = self.kernel_for(patch_size)
        batch_size, num_channels, num_frames, height, width = pixel_values.shape
        tubelets = pixel_values.to(kernel.dtype).reshape(
            batch_size, num_channels, num_frames // self.tubelet_size, self.tubelet_size,
            height // patch_size, patch_size, width // patch_size, patch_size,
        )  # fmt: skip
        tubelets = tubelets.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4)  # (..., grid_w, channels * tubelet * p * p)
        return F.linear(tubelets, kernel.flatten(1), self.projection.bias)  # [batch, tubelets, grid_h, grid_w, hidden]


class StretchySnakeEmbeddings(nn.Module):
    """Patch embedding + cls token + spatial and temporal position tables, at any scale.

    Input `pixel_values` `(batch_size, num_frames, num_channels, height, width)`. Output
    `(batch_size, seq_len, hidden_size)` with `seq_len = 1 + (num_frames // tubelet) * (height // p) * (width // p)`,
    the cls token first, then the patches of frame 0 row-major, then frame 1, ... (VideoMamba's spatial-first order).

    The stored tables have the config's base shapes: `position_embeddings` `(1, 1 + grid * grid, hidden_size)` (slot 0
    belongs to the cls token, the grid is added to every frame) and `temporal_position_embeddings`
    `(1, num_frames // tubelet, hidden_size)` (added to every patch of a frame, not to the cls token). Other scales
    get them resized (bicubic in space, linear in time), differentiably.
    """

    def __init__(self, config: StretchySnakeConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.tubelet_size = config.tubelet_size
        self.num_channels = config.num_channels
        base_grid = grid_side(config.image_size, config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + base_grid * base_grid, config.hidden_size))
        self.temporal_position_embeddings = nn.Parameter(
            torch.zeros(1, config.num_frames // config.tubelet_size, config.hidden_size)
        )
        self.patch_embeddings = StretchySnakePatchEmbeddings(config)
        self.resize_cache = StretchySnakeResizeCache()

    def _position_tables(self, num_tubelets: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        spatial, temporal = self.position_embeddings, self.temporal_position_embeddings
        if self.training:
            return resize_spatial_pos_embed(spatial, grid), resize_temporal_pos_embed(temporal, num_tubelets)
        return (
            self.resize_cache(("spatial", grid), spatial, lambda: resize_spatial_pos_embed(spatial, grid)),
            self.resize_cache(
                ("temporal", num_tubelets), temporal, lambda: resize_temporal_pos_embed(temporal, num_tubelets)
            ),
        )

    def forward(self, pixel_values: torch.Tensor, patch_size: int | torch.Tensor | None = None) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels)
        patch_size = self.patch_size if patch_size is None else int(patch_size)
        batch_size, num_frames, _, height, width = pixel_values.shape
        if patch_size <= 0 or height % patch_size or width % patch_size:
            raise ValueError(
                f"Frame size {height}x{width} is not divisible by the patch size {patch_size}; use a size that is a "
                f"multiple of {patch_size} or another patch_size."
            )
        if num_frames % self.tubelet_size:
            raise ValueError(f"num_frames {num_frames} is not divisible by the tubelet size {self.tubelet_size}.")

        patches = self.patch_embeddings(pixel_values.transpose(1, 2), patch_size)
        _, num_tubelets, grid_h, grid_w, hidden_size = patches.shape
        spatial, temporal = self._position_tables(num_tubelets, (grid_h, grid_w))

        patches = patches + spatial[:, 1:].reshape(1, 1, grid_h, grid_w, hidden_size)
        patches = patches + temporal.reshape(1, num_tubelets, 1, 1, hidden_size)
        patches = patches.reshape(batch_size, num_tubelets * grid_h * grid_w, hidden_size)
        cls_tokens = (self.cls_token + spatial[:, :1]).expand(batch_size, -1, -1)  # [batch_size, 1, hidden_size]
        return torch.cat([cls_tokens, patches], dim=1)  # [batch_size, seq_len, hidden_size]


def fused_cpu_kernels_apply(scan_backend: str, hidden_states: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a layer computes this call with its fused numba CPU kernels: `hidden_states` and `weight` are float32
    CPU tensors, `scan_backend` resolves to "numba" (installed), CPU autocast is off, and nothing traces the call
    (torch.compile and export, torch.jit.trace, torch.fx: none of them sees inside a numba kernel)."""
    return (
        hidden_states.device.type == "cpu"
        and hidden_states.dtype == weight.dtype == torch.float32
        and not is_tracing(hidden_states)
        and not torch.is_autocast_enabled("cpu")
        and resolve_backend(scan_backend, hidden_states.device) == "numba"
    )


class StretchySnakeRMSNorm(nn.Module):
    """RMSNorm computed in (at least) float32, cast back to the input dtype: `x * rsqrt(mean(x^2) + eps) * weight`.

    Where `fused_cpu_kernels_apply` (with `scan_backend`), one numba kernel each way (`rms_norm_cpu`, imported on
    first use); otherwise torch ops.
    """

    def __init__(self, hidden_size: int, eps: float, scan_backend: str = "auto") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps
        self.scan_backend = scan_backend

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if fused_cpu_kernels_apply(self.scan_backend, hidden_states, self.weight):
            from .rms_norm_cpu import rms_norm_cpu

            return rms_norm_cpu(hidden_states, self.weight, self.eps)
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.promote_types(input_dtype, torch.float32))
        hidden_states = hidden_states * torch.rsqrt(hidden_states.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * hidden_states.to(input_dtype)


class StretchySnakeDropPath(nn.Module):
    """Stochastic depth: drops a whole sample's residual branch with probability `drop_prob` while training."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return hidden_states
        keep_prob = 1.0 - self.drop_prob
        mask_shape = (hidden_states.shape[0],) + (1,) * (hidden_states.dim() - 1)
        mask = hidden_states.new_empty(mask_shape).bernoulli_(keep_prob)
        return hidden_states * mask / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class StretchySnakeMixer(nn.Module):
    """Bidirectional Mamba mixer (VideoMamba's "bimamba v2").

    `in_proj` and `out_proj` are shared; each direction has its own causal conv, `x_proj`, `dt_proj`, `A_log` and `D`
    (the backward ones end in `_b`). The backward direction is a causal Mamba over the flipped sequence (input and
    gate); its output is flipped back and summed with the forward one. Input and output
    `(batch_size, seq_len, hidden_size)`.

    `config.scan_backend` picks the selective scan (see `selective_scan.resolve_backend`), and `forward_path` the
    implementation of a call: `cuda_kernels_forward` (mamba-ssm's fused kernel per direction), `cpu_inference_forward`
    (fused numba kernels, no autograd), `cpu_training_forward` (fused numba kernels, one autograd node with a
    hand-written backward) or `autograd_forward` (the steps one by one, differentiable, any backend).
    """

    def __init__(self, config: StretchySnakeConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.hidden_size = config.hidden_size
        self.intermediate_size = config.intermediate_size
        self.ssm_state_size = config.d_state
        self.conv_kernel_size = config.d_conv
        self.time_step_rank = config.dt_rank
        self.scan_backend = config.scan_backend

        self.in_proj = nn.Linear(self.hidden_size, 2 * self.intermediate_size, bias=False)
        self.conv1d, self.x_proj, self.dt_proj = self._direction_layers()
        self.A_log = nn.Parameter(torch.empty(self.intermediate_size, self.ssm_state_size))
        self.D = nn.Parameter(torch.empty(self.intermediate_size))
        self.conv1d_b, self.x_proj_b, self.dt_proj_b = self._direction_layers()
        self.A_b_log = nn.Parameter(torch.empty(self.intermediate_size, self.ssm_state_size))
        self.D_b = nn.Parameter(torch.empty(self.intermediate_size))
        self.out_proj = nn.Linear(self.intermediate_size, self.hidden_size, bias=False)

    def _direction_layers(self) -> tuple[nn.Conv1d, nn.Linear, nn.Linear]:
        conv1d = nn.Conv1d(
            self.intermediate_size,
            self.intermediate_size,
            kernel_size=self.conv_kernel_size,
            groups=self.intermediate_size,
            padding=self.conv_kernel_size - 1,
        )
        x_proj = nn.Linear(self.intermediate_size, self.time_step_rank + 2 * self.ssm_state_size, bias=False)
        dt_proj = nn.Linear(self.time_step_rank, self.intermediate_size, bias=True)
        return conv1d, x_proj, dt_proj

    # fmt: off
    def _scan_direction(
        self, xz: torch.Tensor, conv1d: nn.Conv1d, x_proj: nn.Linear, dt_proj: nn.Linear, A_log: nn.Parameter,
        D: nn.Parameter,
    ) -> torch.Tensor:
        """One causal Mamba pass over `xz` `(batch_size, 2 * intermediate_size, seq_len)`, without out_proj."""
        hidden_states, gate = xz.chunk(2, dim=1)                                      # [batch, intermediate, seq_len]
        # 2. causal depthwise convolution (causal-conv1d's kernel on CUDA when installed)
        hidden_states = causal_conv1d(hidden_states, conv1d.weight[:, 0], conv1d.bias, activation="silu")
        # 3.a input-dependent selection of time step, B and C
        ssm_parameters = x_proj(hidden_states.transpose(1, 2))                        # [batch, seq_len, rank + 2N]
        time_step, B, C = torch.split(
            ssm_parameters, [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=-1
        )
        # 3.b discretization happens inside the scan (softplus(dt + bias), exp(dt * A), dt * B * x)
        time_step = F.linear(time_step, dt_proj.weight).transpose(1, 2)               # [batch, intermediate, seq_len]
        A = -torch.exp(A_log.float())                                                 # [intermediate, N]
        # 3.c selective scan, gated by silu(z)
        return selective_scan(
            hidden_states, time_step, A, B.transpose(1, 2), C.transpose(1, 2),        # B, C: [batch, N, seq_len]
            D=D.float(), z=gate, delta_bias=dt_proj.bias.float(), delta_softplus=True,
            backend=self.scan_backend,
        )                                                                             # [batch, intermediate, seq_len]

    def autograd_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The mixer step by step with differentiable ops; the scan runs on `config.scan_backend`."""
        # 1. shared input projection
        xz = self.in_proj(hidden_states).transpose(1, 2)                              # [batch, 2 * intermediate, seq_len]
        forward_out = self._scan_direction(xz, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        backward_out = self._scan_direction(
            xz.flip(-1), self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b
        ).flip(-1)
        # 4. shared output projection of the summed directions
        return self.out_proj((forward_out + backward_out).transpose(1, 2))             # [batch, seq_len, hidden]
    # fmt: on

    def cuda_kernels_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Each direction through mamba-ssm's fused `mamba_inner_fn`, which applies out_proj itself: out_proj has no
        bias, so projecting each direction and summing equals projecting the sum."""
        # 1. shared input projection
        xz = self.in_proj(hidden_states).transpose(1, 2)  # [batch, 2 * intermediate, seq_len]
        # 2.-4. conv, selection, scan, gate and out_proj, fused
        forward_out = self._fused_direction(xz, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        backward_out = self._fused_direction(
            xz.flip(-1), self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b
        ).flip(1)
        return forward_out + backward_out  # [batch, seq_len, hidden]

    def _fused_direction(
        self, xz: torch.Tensor, conv1d: nn.Conv1d, x_proj: nn.Linear, dt_proj: nn.Linear, A_log: nn.Parameter,
        D: nn.Parameter,
    ) -> torch.Tensor:  # fmt: skip
        return mamba_inner_cuda(
            xz, conv1d.weight, conv1d.bias, x_proj.weight, dt_proj.weight, self.out_proj.weight,
            A=-torch.exp(A_log.float()), D=D.float(), delta_bias=dt_proj.bias.float(),
        )  # fmt: skip

    def cpu_inference_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`autograd_forward` without autograd, fused on CPU (see `mixer_inference_cpu`, which needs numba and is
        imported here, on first use); float32 only."""
        from .mixer_inference_cpu import bidirectional_mamba_inference_cpu

        return bidirectional_mamba_inference_cpu(
            hidden_states,
            self.in_proj.weight,
            self._direction_parameters(self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D),
            self._direction_parameters(self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b),
            self.out_proj.weight,
        )

    @staticmethod
    def _direction_parameters(
        conv1d: nn.Conv1d, x_proj: nn.Linear, dt_proj: nn.Linear, A_log: nn.Parameter, D: nn.Parameter
    ) -> tuple[torch.Tensor, ...]:
        """One direction's parameters for the fused CPU paths, a `mixer_inference_cpu.MambaDirectionParameters`
        (imported here: it needs numba)."""
        from .mixer_inference_cpu import MambaDirectionParameters

        return MambaDirectionParameters(
            conv1d.weight, conv1d.bias, x_proj.weight, dt_proj.weight, dt_proj.bias, A_log, D
        )

    def cpu_training_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`autograd_forward` as one autograd node with a hand-written backward, fused on CPU (see
        `mixer_training_cpu`, which needs numba and is imported here, on first use); float32 only."""
        from .mixer_training_cpu import bidirectional_mamba_training_cpu

        return bidirectional_mamba_training_cpu(
            hidden_states,
            self.in_proj.weight,
            self._direction_parameters(self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D),
            self._direction_parameters(self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b),
            self.out_proj.weight,
        )

    def forward_path(self, hidden_states: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The implementation that computes this call, in order of preference:

        - `cuda_kernels_forward`: weights on CUDA, the scan backend resolves to "cuda" (mamba-ssm) and causal-conv1d
          is installed, not under torch.compile (the kernels are opaque to it);
        - `cpu_inference_forward` (no gradients) or `cpu_training_forward` (gradients): where
          `fused_cpu_kernels_apply` (float32 CPU tensors, no autocast or tracing, and the scan backend resolves
          to "numba", installed);
        - `autograd_forward` otherwise: other dtypes and devices, compilation and export, the "chunked" and
          "reference" backends.
        """
        compiling = torch.compiler.is_compiling()
        backend = resolve_backend(self.scan_backend, hidden_states.device)
        if self.in_proj.weight.is_cuda and not compiling and backend == "cuda" and cuda_kernels_available():
            return self.cuda_kernels_forward
        if fused_cpu_kernels_apply(self.scan_backend, hidden_states, self.in_proj.weight):
            return self.cpu_training_forward if torch.is_grad_enabled() else self.cpu_inference_forward
        return self.autograd_forward

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.forward_path(hidden_states)(hidden_states)


class StretchySnakeBlock(GradientCheckpointingLayer):
    """Pre-norm residual block `h + drop_path(mixer(rmsnorm(h)))`; the residual stream keeps its (float32) dtype."""

    def __init__(self, config: StretchySnakeConfig, layer_idx: int, drop_path_rate: float) -> None:
        super().__init__()
        self.norm = StretchySnakeRMSNorm(config.hidden_size, config.rms_norm_eps, config.scan_backend)
        self.mixer = StretchySnakeMixer(config, layer_idx=layer_idx)
        self.drop_path = StretchySnakeDropPath(drop_path_rate)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mixed = self.mixer(self.norm(hidden_states.to(self.norm.weight.dtype)))
        return hidden_states + self.drop_path(mixed).to(hidden_states.dtype)


class StretchySnakeRebaseOp(ConversionOps):
    """Load-time op re-basing a scale-dependent checkpoint tensor to the shape of the model being loaded.

    `from_pretrained(path, num_frames=..., image_size=..., patch_size=...)` builds the model at the requested base
    scale (on the meta device), and this op resizes the checkpoint's position tables and patch kernel to it with
    `rebase_tensor` (the resize the forward uses), instead of a size mismatch or a re-initialisation. The model
    already has the target shapes, so the same op, run on save, leaves tensors as they are.
    """

    def convert(
        self,
        input_dict: dict[str, torch.Tensor | list[torch.Tensor]],
        source_patterns: list[str],
        target_patterns: list[str],
        full_layer_name: str | None = None,
        model: nn.Module | None = None,
        **kwargs,
    ) -> dict[str, torch.Tensor]:
        tensor = next(iter(input_dict.values()))
        tensor = tensor[0] if isinstance(tensor, list) else tensor
        try:
            target_shape = model.get_parameter(full_layer_name).shape
        except AttributeError:  # a key the model does not have: the loader reports it as unexpected
            return {target_patterns[0]: tensor}
        return {target_patterns[0]: rebase_tensor(full_layer_name, tensor, target_shape)}

    @property
    def reverse_op(self) -> ConversionOps:
        return self


# Registered under the model type rather than the class names so that remote-code copies of these classes get it too.
register_checkpoint_conversion_mapping(
    StretchySnakeConfig.model_type,
    [
        WeightConverter(pattern, pattern, operations=[StretchySnakeRebaseOp()])
        for pattern in SCALE_DEPENDENT_PARAMETERS
    ],
    overwrite=True,
)


@auto_docstring
class StretchySnakePreTrainedModel(PreTrainedModel):
    config: StretchySnakeConfig
    base_model_prefix = "stretchysnake"
    main_input_name = "pixel_values"
    input_modalities = "video"
    supports_gradient_checkpointing = True
    _no_split_modules = ["StretchySnakeBlock"]
    # The loss is a mean over the batch whatever `**kwargs` holds, so the Trainer must not pass `num_items_in_batch`
    # and must divide the loss by the gradient-accumulation steps itself (it assumes the model normalizes when
    # `forward` takes `**kwargs`, and then each accumulated step trained on N times the gradient).
    accepts_loss_kwargs = False
    # hidden_states: the residual stream after the embeddings (the first block's input) and after every block
    _can_record_outputs = {"hidden_states": StretchySnakeBlock}

    def __init__(self, config: StretchySnakeConfig, *inputs, **kwargs) -> None:
        # `from_pretrained(path, image_size=...)` sets its overrides on the config after the config checked itself
        config.check_values()
        super().__init__(config, *inputs, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, **kwargs
    ) -> "StretchySnakePreTrainedModel":
        """`PreTrainedModel.from_pretrained`, at any base scale, refusing checkpoints of other architectures.

        Geometry overrides (`num_frames`, `image_size`, `patch_size`, `tubelet_size`) set the base scale of the
        returned model; the checkpoint's position tables and patch kernel are resized to it at load time
        (`StretchySnakeRebaseOp`, logged at info level), everything else loads as is: e.g.
        `StretchySnakeForVideoClassification.from_pretrained(path, num_frames=16, image_size=112, patch_size=8)`.
        Overrides are checked like the config's own values, before any weight loads.
        """
        config = kwargs.get("config")
        # Without `config=`, the config class checks the checkpoint's config.json as it loads it; with one, here.
        if config is not None and isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
            hub_kwargs = {key: value for key, value in kwargs.items() if key != "config"}
            with contextlib.suppress(OSError):  # weights without a config.json: `config` describes them
                cls.config_class.check_model_type(pretrained_model_name_or_path, **hub_kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """VideoMamba's initialisation, with Mamba's S4D-real A and inverse-softplus time-step bias.

        Linear layers: truncated normal (std `initializer_range`), zero bias (VideoMamba's `segm_init_weights`).
        Convolutions keep PyTorch's default (kaiming-uniform). The mixer follows mamba-ssm's `Mamba.__init__`: A = 1..N
        per channel, D = 1, dt_proj weight uniform in +-rank^-0.5, dt_proj bias = softplus^-1(dt) with dt log-uniform
        in [dt_min, dt_max]; and out_proj is kaiming-uniform scaled by 1/sqrt(depth) (`_init_weights` in mamba-ssm and
        VideoMamba, "rescale_prenorm_residual").
        """
        config = self.config
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv1d, nn.Conv3d)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                init.uniform_(module.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        elif isinstance(module, StretchySnakeRMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, StretchySnakeEmbeddings):
            init.zeros_(module.cls_token)
            init.trunc_normal_(module.position_embeddings, std=config.initializer_range)
            init.zeros_(module.temporal_position_embeddings)
        elif isinstance(module, StretchySnakeMixer):
            state_indices = torch.arange(1, module.ssm_state_size + 1, dtype=torch.float32)
            for A_log, D, dt_proj in (
                (module.A_log, module.D, module.dt_proj),
                (module.A_b_log, module.D_b, module.dt_proj_b),
            ):
                init.copy_(A_log, torch.log(state_indices).expand_as(A_log))
                init.ones_(D)
                bound = module.time_step_rank**-0.5
                init.uniform_(dt_proj.weight, -bound, bound)
                log_dt = torch.rand(module.intermediate_size) * (
                    math.log(config.dt_max) - math.log(config.dt_min)
                ) + math.log(config.dt_min)
                dt = torch.exp(log_dt).clamp(min=config.dt_init_floor)
                init.copy_(dt_proj.bias, dt + torch.log(-torch.expm1(-dt)))
            init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))
            if not getattr(module.out_proj.weight, "_is_hf_initialized", False):
                module.out_proj.weight.div_(math.sqrt(config.num_hidden_layers))


@auto_docstring(
    custom_intro="""
    The bare StretchySnake backbone. Input `pixel_values` `(batch_size, num_frames, num_channels, height, width)` at
    any scale divisible by the patch size (and tubelet); output `last_hidden_state`
    `(batch_size, seq_len, hidden_size)` after the final RMSNorm, with
    `seq_len = 1 + (num_frames // tubelet) * (height // patch_size) * (width // patch_size)`, and `pooler_output`
    `(batch_size, hidden_size)`, the normed cls token.
    """
)
class StretchySnakeModel(StretchySnakePreTrainedModel):
    def __init__(self, config: StretchySnakeConfig) -> None:
        super().__init__(config)
        self.embeddings = StretchySnakeEmbeddings(config)
        depth = config.num_hidden_layers
        drop_path_rates = [config.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.layers = nn.ModuleList(
            [StretchySnakeBlock(config, layer_idx=i, drop_path_rate=drop_path_rates[i]) for i in range(depth)]
        )
        self.norm_f = StretchySnakeRMSNorm(config.hidden_size, config.rms_norm_eps, config.scan_backend)
        self.post_init()

    def get_input_embeddings(self) -> StretchySnakePatchEmbeddings:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)
    @auto_docstring
    def forward(
        self,
        pixel_values: torch.Tensor,
        patch_size: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, height, width)`):
            Video frames normalized with ImageNet mean/std (`StretchySnakeVideoProcessor`), at any frame count and
            resolution divisible by the tubelet and patch sizes.
        patch_size (`int`, *optional*):
            Spatial patch size for this call; defaults to `config.patch_size`. The stored kernel is PI-resized to it
            and the position tables are interpolated to the resulting token grid.

        Example:

        ```python
        >>> import torch
        >>> from stretchysnake_hf import StretchySnakeConfig, StretchySnakeModel

        >>> model = StretchySnakeModel(StretchySnakeConfig(hidden_size=64, num_hidden_layers=2, image_size=32))
        >>> outputs = model(torch.randn(1, 4, 3, 48, 64), patch_size=8)
        >>> list(outputs.last_hidden_state.shape)
        [1, 193, 64]
        ```"""
        hidden_states = self.embeddings(pixel_values, patch_size)
        if self.config.residual_in_fp32:
            hidden_states = hidden_states.to(torch.promote_types(hidden_states.dtype, torch.float32))
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        last_hidden_state = self.norm_f(hidden_states.to(self.norm_f.weight.dtype))
        return BaseModelOutputWithPooling(last_hidden_state=last_hidden_state, pooler_output=last_hidden_state[:, 0])


@auto_docstring(
    custom_intro="""
    StretchySnake with a linear head on the normed cls token: logits `(batch_size, num_labels)`, at any frame count,
    resolution and patch size.
    """
)
class StretchySnakeForVideoClassification(StretchySnakePreTrainedModel):
    def __init__(self, config: StretchySnakeConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.stretchysnake = StretchySnakeModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @can_return_tuple
    @auto_docstring
    def forward(
        self,
        pixel_values: torch.Tensor,
        patch_size: int | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, height, width)`):
            Video frames normalized with ImageNet mean/std (`StretchySnakeVideoProcessor`), at any frame count and
            resolution divisible by the tubelet and patch sizes.
        patch_size (`int`, *optional*):
            Spatial patch size for this call; defaults to `config.patch_size`.
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class indices in `[0, num_labels)` for the cross-entropy loss, `-100` to ignore a sample (float targets of
            shape `(batch_size, num_labels)` with `problem_type="multi_label_classification"`).

        Example:

        ```python
        >>> import torch
        >>> from stretchysnake_hf import StretchySnakeConfig, StretchySnakeForVideoClassification

        >>> config = StretchySnakeConfig(hidden_size=64, num_hidden_layers=2, image_size=32, num_labels=5)
        >>> model = StretchySnakeForVideoClassification(config).eval()
        >>> logits = model(torch.randn(2, 8, 3, 64, 64)).logits  # 8 frames at 64x64, base scale 8 frames at 32x32
        >>> list(logits.shape)
        [2, 5]
        ```"""
        outputs: BaseModelOutputWithPooling = self.stretchysnake(pixel_values, patch_size=patch_size, **kwargs)
        logits = self.classifier(outputs.pooler_output)

        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if not labels.is_floating_point():
                self._check_labels(labels)
            loss = self.loss_function(labels, logits, self.config)
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def _check_labels(self, labels: torch.Tensor) -> None:
        """Class indices must lie in [0, num_labels); -100 (cross-entropy's ignore index) is allowed. Like the NaN
        check of the pixels, it reads values back, so it runs in eager mode on CPU tensors only."""
        if labels.device.type != "cpu" or is_tracing():
            return
        out_of_range = labels[(labels != -100) & ((labels < 0) | (labels >= self.num_labels))]
        if out_of_range.numel():
            raise ValueError(
                f"Label {out_of_range[0].item()} is out of range for a classifier with num_labels={self.num_labels} "
                "(valid: 0 to num_labels - 1, or -100 to ignore a sample)."
            )


__all__ = ["StretchySnakeForVideoClassification", "StretchySnakeModel", "StretchySnakePreTrainedModel"]
