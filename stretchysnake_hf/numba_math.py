# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""What the mixer's numba kernels share: `fast_exp`, `fast_softplus` and `fast_sigmoid`, which numba can vectorize,
`silu_derivative`, `non_negative` for block offsets, `flush_denormals` and `restore_float_mode` around the scans,
`prefer_512_bit_vectors`, and `compiled_once_under_lock`.

The kernels index arrays directly (`x[b, t, c]`) inside their parallel loops rather than taking views (`x[b, t]`):
numba counts references to a view's parent with atomic operations on one counter that every thread shares, and a
view per token made the causal conv's input backward 4.6x slower.

Without Intel's SVML, numba compiles `math.exp` on float32 to a scalar libm call per element, and the scan's
exp(dt * A), one per state element and step, then costs more than the rest of the recurrence. `fast_exp` on float32
is a polynomial with an exponent-bit scaling that LLVM turns into SIMD code; on float64 it is `math.exp`.

float32 formula (Cody-Waite): k = round(x / ln 2), r = x - k ln 2 (ln 2 split in a high and a low part, so r is
exact), exp(x) = 2^k * P(r) with P the degree-7 Taylor polynomial of exp, whose error on |r| <= ln(2)/2 is below
float32 rounding (the tests bound the relative error from the float64 exp by 2.5e-7; measured: 7.6e-8). x is
clamped to [-87, 88], where 2^k stays a normal float32: exp(-87) = 1.6e-38 stands for 0 and exp(88) = 1.7e38 for
overflow.

All of it is float32 arithmetic (k is rounded by `np.floor`, which keeps float32, where `math.floor` returns an int64
that turned the reduction and the polynomial into float64 code at half the SIMD width: the scan ran 2.7x slower).
It is compiled as a function of its own, with only FMA contraction, and LLVM inlines it: inlined at numba's level it
would take the calling kernel's `reassoc`, under which LLVM may fold the two-part reduction back into x - k ln 2
(error 3e-7 near x = 87).
"""

from __future__ import annotations

import functools
import math
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

try:  # transformers' remote-code loader requires the packages a file imports, except inside try blocks
    import numba
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic, overload
except ImportError as error:
    from .selective_scan import NUMBA_MISSING

    raise ImportError(NUMBA_MISSING) from error

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

# What the kernels' float math may do: reassociate (the scan's sum over the state vectorizes) and contract into
# FMAs. NaN and infinity keep their IEEE meaning.
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}

_LOG2_E = np.float32(1.4426950408889634)
_LN2_HIGH = np.float32(0.693145751953125)  # few mantissa bits: k * _LN2_HIGH is exact for |k| < 2^8
_LN2_LOW = np.float32(1.428606765330187e-06)  # ln 2 - _LN2_HIGH
_LOWEST, _HIGHEST = np.float32(-87.0), np.float32(88.0)
_TAYLOR = tuple(np.float32(1 / math.factorial(i)) for i in range(7, -1, -1))  # 1/7!, ..., 1/1!, 1/0!


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bits are the int32 `bits` (a bitcast, no conversion)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


def fast_exp(x: float) -> float:
    """exp(x); in numba-compiled code a vectorizable polynomial on float32 (see the module docstring)."""
    return math.exp(x)


@overload(fast_exp, inline="never", jit_options={"fastmath": {"contract"}})
def _fast_exp_numba(x):
    if x != types.float32:
        return lambda x: math.exp(x)

    def exp_float32(x):
        x = min(max(x, _LOWEST), _HIGHEST)
        k = np.floor(x * _LOG2_E + np.float32(0.5))
        r = (x - k * _LN2_HIGH) - k * _LN2_LOW
        p = _TAYLOR[0]
        for coefficient in _TAYLOR[1:]:
            p = p * r + coefficient
        return p * _float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))

    return exp_float32


# 2 / (2k + 1), k = 8 .. 0: log(1 + y) = 2 atanh(s) = sum_k 2 s^(2k + 1) / (2k + 1) with s = y / (2 + y) <= 1/3 for
# y = exp(-|x|) in (0, 1]; the first term left out, 2 s^19 / 19 < 1e-10, is below float32 rounding of log 2.
_ATANH_SERIES = tuple(np.float32(2 / (2 * k + 1)) for k in range(8, -1, -1))


def fast_softplus(x: float) -> float:
    """softplus(x) = log(1 + exp(x)); in numba-compiled code a vectorizable float32 formula (see `_fast_softplus_numba`)."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@overload(fast_softplus, inline="never", jit_options={"fastmath": {"contract"}})
def _fast_softplus_numba(x):
    """float32: max(x, 0) + log(1 + y), y = exp(-|x|) by `fast_exp`, the log by the atanh series of `_ATANH_SERIES`
    (no libm call, so LLVM vectorizes it); other types: the library functions."""
    if x != types.float32:
        return lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x)))

    def softplus_float32(x):
        y = fast_exp(-abs(x))
        s = y / (np.float32(2.0) + y)
        s2 = s * s
        series = _ATANH_SERIES[0]
        for coefficient in _ATANH_SERIES[1:]:
            series = series * s2 + coefficient
        return max(x, np.float32(0.0)) + s * series

    return softplus_float32


def fast_sigmoid(x: float) -> float:
    """1 / (1 + exp(-x)); in numba-compiled code by `fast_exp`, so vectorizable on float32 (silu(x) is x times it)."""
    return 1.0 / (1.0 + math.exp(-x))


@overload(fast_sigmoid, inline="never", jit_options={"fastmath": {"contract"}})
def _fast_sigmoid_numba(x):
    if x != types.float32:
        return lambda x: 1.0 / (1.0 + math.exp(-x))
    return lambda x: np.float32(1.0) / (np.float32(1.0) + fast_exp(-x))


@numba.njit(inline="always")
def silu_derivative(x: float, sigmoid: float) -> float:
    """d/dx x sigmoid(x), given sigmoid = sigmoid(x) (which the kernels also need for silu itself). float32 constants:
    a float64 1.0 would turn float32 kernels into float64 code at half the SIMD width."""
    one = np.float32(1.0)
    return sigmoid * (one + x * (one - sigmoid))


@numba.njit(inline="always")
def non_negative(i: int) -> int:
    """i, for 0 <= i < 2^32, as an int64 that LLVM can prove is not negative (it went through uint32).

    numba maps a negative index to one counted from the end, so `x[b, t, first + j]` costs a select per element
    unless LLVM proves the index is not negative; with `first` from this, a loop over j reads contiguous vectors,
    where a `first` computed by signed arithmetic (`block * 64`) left the loop scalar (2.6x slower).
    """
    return np.int64(np.uint32(i))


# x86's MXCSR bits that flush denormal results (FTZ, bit 15) and read denormal inputs (DAZ, bit 6) as zero.
_FLUSH_TO_ZERO_AND_DENORMALS_ARE_ZERO = 0x8040
_HAS_MXCSR = platform.machine().lower() in ("x86_64", "amd64")


def _call_mxcsr_intrinsic(builder: ir.IRBuilder, name: str, slot: ir.Value) -> None:
    """Calls llvm.x86.sse.stmxcsr or ldmxcsr, which store the MXCSR in or load it from the int32 at `slot`."""
    function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [slot.type]), name)
    builder.call(function, [slot])


@intrinsic
def flush_denormals(typingctx):
    """Makes the calling thread treat denormal float32/float64 values as zero, in results and inputs, and returns its
    previous mode for `restore_float_mode`; on other processors than x86-64 does nothing and returns 0.

    A reverse scan carries the gradient of the state back through every step, multiplied by exp(dt A) < 1 each time;
    where no new gradient enters (after the CLS token, the last layer's only gradient), it decays below float32's
    smallest normal number, 1.2e-38, and every operation on it takes a microcode assist on x86: a chunk of the last
    layer's backward scan ran 25x slower (50 ms against 2), a training step at 8x224 1.1x slower.

    LLVM does not keep floating-point arithmetic after the call, only memory accesses: a kernel's loops, which load
    their arrays, run flushed; a product of two scalar arguments could be computed before it.
    """

    def codegen(context, builder, signature, args):
        if not _HAS_MXCSR:
            return ir.Constant(ir.IntType(32), 0)
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _call_mxcsr_intrinsic(builder, "llvm.x86.sse.stmxcsr", slot)
        previous = builder.load(slot)
        builder.store(builder.or_(previous, ir.Constant(ir.IntType(32), _FLUSH_TO_ZERO_AND_DENORMALS_ARE_ZERO)), slot)
        _call_mxcsr_intrinsic(builder, "llvm.x86.sse.ldmxcsr", slot)
        return previous

    return types.int32(), codegen


@intrinsic
def restore_float_mode(typingctx, mode):
    """Gives the calling thread back the mode `flush_denormals` returned (the thread may go on to run torch ops)."""

    def codegen(context, builder, signature, args):
        if _HAS_MXCSR:
            _call_mxcsr_intrinsic(builder, "llvm.x86.sse.ldmxcsr", cgutils.alloca_once_value(builder, args[0]))
        return context.get_dummy_value()

    return types.none(types.int32), codegen


@intrinsic
def prefer_512_bit_vectors(typingctx):
    """Lets LLVM vectorize the calling function (for a kernel, call it first thing in its parallel loop, which numba
    compiles as a function of its own) with 512-bit vectors where the CPU has them (AVX-512); elsewhere it changes
    nothing.

    LLVM's tuning for Intel's AVX-512 CPUs prefers 256-bit vectors, for fear of the clock slowdown 512-bit
    instructions brought on older ones. For the scans it measured faster on this CPU: on an 8x224 training step's
    replayed inputs the backward took 0.84x the time and the forward (with its loops over 64 channels) 0.78x; inside
    the step, 0.93x and 0.70x (the forward with its new loops), `scan_numba`'s forward and backward 0.75x.
    Process-wide (`NUMBA_CPU_FEATURES`) it also made other kernels slower, and it would reach every numba function of
    the user's process; here it is the "prefer-vector-width" attribute of one function. llvmlite accepts only a fixed
    list of function attributes, so the string attribute goes into its attribute set directly (a `set`, written out
    verbatim).
    """

    def codegen(context, builder, signature, args):
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


def compiled_once_under_lock(warm_up: Callable[[], None]) -> Callable[[], None]:
    """Decorator: the first call of `warm_up` in a process, which compiles numba kernels or loads them from numba's
    on-disk cache, runs while holding a lock that every process on this machine shares; later calls do nothing.

    numba's cache is not safe for processes that compile the same parallel kernel at the same time (numba issues
    #4807 and #10128: crashes when loading what another process is writing), as `accelerate launch` processes and
    pytest-xdist workers on a fresh install do. Under the lock the first process compiles and writes the cache, and
    the others load it.

    torch's thread count is the same after it as before: numba and torch share libgomp, and the first parallel
    kernel a process runs starts numba's threads, which sets the OpenMP thread count torch reads to
    `NUMBA_NUM_THREADS` (a user's `torch.set_num_threads(1)` was silently undone by the first fused forward).
    """

    def warm_up_keeping_torch_threads() -> None:
        threads = torch.get_num_threads()
        try:
            warm_up()
        finally:
            torch.set_num_threads(threads)

    @functools.cache
    def once() -> None:
        if fcntl is None:
            warm_up_keeping_torch_threads()
            return
        with open(Path(tempfile.gettempdir()) / "stretchysnake_hf_numba.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                warm_up_keeping_torch_threads()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    return functools.wraps(warm_up)(once)
