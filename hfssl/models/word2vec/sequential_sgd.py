"""word2vec's pair-by-pair SGD on the CPU, compiled from ``csrc/sequential_sgd.cpp`` at first use.

The fused loss (:mod:`~hfssl.models.word2vec.negative_sampling`) applies a batch's updates chunk by
chunk with torch ops, which suits GPUs; on a CPU its gathers and ``index_add_`` dominate a step.
This kernel walks the rows one at a time as word2vec.c does (chunk size 1), each row seeing the
updates of the rows before it, and returns the same thing as the fused loss: the summed loss and
gradients such that one SGD step ``w -= alpha * grad`` applies the batch's updates. It never
writes the weights (a row's current value is read as ``w - alpha * grad_so_far``), so a DDP run's
processes hold equal weights until the optimizer step. With several threads the rows are split
into blocks that share the gradient buffers without locks, as word2vec.c's and gensim's threads
share the weights (Hogwild; one thread is deterministic).

The shared library is built with the system C++ compiler (``$CXX`` or ``c++``) into
``$HFSSL_CACHE`` (default ``~/.cache/hfssl``)/kernels, keyed by the source and flags. When no
compiler is found the model falls back to the fused loss and logs why, once.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "sequential_sgd.cpp"
# -fopenmp-simd enables the ``omp simd`` vectorisation hints only (no OpenMP runtime, no clash with torch's).
FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp-simd", "-fno-math-errno", "-pthread"]


def cache_dir() -> Path:
    return Path(os.environ.get("HFSSL_CACHE", Path.home() / ".cache" / "hfssl")) / "kernels"


@cache
def load_library() -> ctypes.CDLL | None:
    """The compiled kernel, built on first use; None (with one logged warning) when it cannot be built."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        logger.warning(
            "No C++ compiler found ($CXX, c++ or g++): word2vec falls back to the slower fused torch loss on the CPU."
        )
        return None
    source = SOURCE.read_bytes()
    key = hashlib.sha256(
        source + " ".join([compiler, _compiler_version(compiler), *FLAGS, platform.machine()]).encode()
    ).hexdigest()[:16]
    target = cache_dir() / f"sequential_sgd_{key}.so"
    try:
        if not target.exists():
            _compile(compiler, target)
        library = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as error:
        details = getattr(error, "stderr", "") or error
        logger.warning(
            "Building or loading the word2vec CPU kernel failed, so word2vec falls back to the fused torch loss: %s",
            details,
        )
        return None
    for name in ("hfssl_word2vec_sgd_float", "hfssl_word2vec_sgd_double"):
        function = getattr(library, name)
        function.restype = ctypes.c_double
        function.argtypes = (
            [ctypes.c_void_p] * 4
            + [ctypes.c_int64]
            + [ctypes.c_void_p] * 3
            + [ctypes.c_int64, ctypes.c_void_p]
            + [ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_int]
        )
    return library


def _compiler_version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[
            0
        ]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def _compile(compiler: str, target: Path) -> None:
    """Build into a temporary file and rename it into place, so concurrent processes never load half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as build:
        built = Path(build) / target.name
        subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)], check=True, capture_output=True, text=True)
        os.replace(built, target)


def is_available() -> bool:
    return load_library() is not None


def sequential_sgd_loss_and_grads(
    input_weight: torch.Tensor,
    output_weight: torch.Tensor,
    center_ids: torch.Tensor,
    context_ids: torch.Tensor,
    context_mask: torch.Tensor | None,
    negative_ids: torch.Tensor,
    cbow_mean: bool,
    step_size: float,
    threads: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss (float64 scalar) and dense gradients ((V, D) each) of the rows taken one after the other.

    Shapes as :func:`~hfssl.models.word2vec.negative_sampling.negative_sampling_loss`: ``center_ids``
    (N,); ``context_ids`` (N,) for skip-gram or (N, C) with ``context_mask`` (N, C) for CBOW;
    ``negative_ids`` (N, K). CPU tensors, float32 or float64 weights.
    """
    library = load_library()
    if library is None:
        raise RuntimeError(
            "The word2vec CPU kernel is not available (no C++ compiler): use loss_implementation='fused'."
        )
    _check_shapes(input_weight, output_weight, center_ids, context_ids, context_mask, negative_ids)
    dtype = input_weight.dtype
    function = library.hfssl_word2vec_sgd_float if dtype == torch.float32 else library.hfssl_word2vec_sgd_double
    input_weight, output_weight = input_weight.detach().contiguous(), output_weight.detach().contiguous()
    contexts = context_ids.reshape(len(center_ids), -1).to(torch.int64).contiguous()
    mask = None if context_mask is None else context_mask.to(torch.uint8).contiguous()
    centers = center_ids.to(torch.int64).contiguous()
    negatives = negative_ids.to(torch.int64).contiguous()
    _check_ids(input_weight.shape[0], centers, contexts, negatives)
    input_grad, output_grad = torch.zeros_like(input_weight), torch.zeros_like(output_weight)
    loss = function(
        input_weight.data_ptr(),
        output_weight.data_ptr(),
        input_grad.data_ptr(),
        output_grad.data_ptr(),
        input_weight.shape[1],
        centers.data_ptr(),
        contexts.data_ptr(),
        None if mask is None else mask.data_ptr(),
        contexts.shape[1],
        negatives.data_ptr(),
        len(centers),
        negatives.shape[1],
        int(cbow_mean),
        float(step_size),
        int(threads),
    )
    return torch.tensor(loss, dtype=torch.float64), input_grad, output_grad


def _check_shapes(input_weight, output_weight, center_ids, context_ids, context_mask, negative_ids) -> None:
    """The kernel reads raw memory by these shapes: every mismatch must be an error, not a read past a tensor."""
    tensors = (input_weight, output_weight, center_ids, context_ids, negative_ids) + (
        () if context_mask is None else (context_mask,)
    )
    if any(tensor.device.type != "cpu" for tensor in tensors):
        raise ValueError(
            "The word2vec CPU kernel takes CPU tensors; on an accelerator use loss_implementation='fused'."
        )
    if input_weight.dtype not in (torch.float32, torch.float64) or output_weight.dtype != input_weight.dtype:
        raise ValueError(
            f"The word2vec CPU kernel takes float32 or float64 weights of one dtype, got {input_weight.dtype} and {output_weight.dtype}."
        )
    if input_weight.dim() != 2 or output_weight.shape != input_weight.shape:
        raise ValueError(
            f"Both weight matrices must be (V, D) alike, got {tuple(input_weight.shape)} and {tuple(output_weight.shape)}."
        )
    rows = center_ids.shape[0]
    if (
        center_ids.dim() != 1
        or context_ids.shape[0] != rows
        or negative_ids.dim() != 2
        or negative_ids.shape[0] != rows
    ):
        raise ValueError(
            f"Rows disagree: center_ids {tuple(center_ids.shape)}, context_ids {tuple(context_ids.shape)}, negative_ids {tuple(negative_ids.shape)} "
            "(expected (N,), (N,) or (N, C), and (N, K))."
        )
    if context_ids.dim() not in (1, 2) or (context_mask is not None and context_mask.shape != context_ids.shape):
        raise ValueError(f"context_ids {tuple(context_ids.shape)} and context_mask must be (N,) or (N, C) alike.")


def _check_ids(vocab_size: int, *ids: torch.Tensor) -> None:
    """The kernel indexes raw memory: an id outside the vocabulary must be an error, not a crash."""
    for tensor in ids:
        if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= vocab_size):
            raise IndexError(
                f"word ids must lie in [0, {vocab_size}), got ids from {int(tensor.min())} to {int(tensor.max())}."
            )


class SequentialSGDLoss(torch.autograd.Function):
    """Autograd wrapper: forward runs the kernel, backward scales its gradients."""

    @staticmethod
    def forward(
        ctx,
        input_weight,
        output_weight,
        center_ids,
        context_ids,
        context_mask,
        negative_ids,
        cbow_mean,
        step_size,
        threads,
    ):
        loss, input_grad, output_grad = sequential_sgd_loss_and_grads(
            input_weight,
            output_weight,
            center_ids,
            context_ids,
            context_mask,
            negative_ids,
            cbow_mean,
            step_size,
            threads,
        )
        ctx.save_for_backward(input_grad, output_grad)
        return loss.to(input_weight.dtype)

    @staticmethod
    def backward(ctx, grad_loss):
        input_grad, output_grad = ctx.saved_tensors
        # in place: the buffers are this step's alone, and copying two (V, D) matrices costs a memory pass
        return input_grad.mul_(grad_loss), output_grad.mul_(grad_loss), None, None, None, None, None, None, None
