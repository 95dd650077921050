"""A layer of 1-D tables in training: numba forward and backward behind a torch Function.

Written with torch's own ops, a layer materialises its (A, B, C, H, W) table
indices and reads, several hundred MB per layer, and an iteration of a 2-block
x4 network took 8-15 s; these kernels read the inputs in place and keep one
table-gradient accumulator per batch entry.

Sums of table values are exact in float32 (multiples of 1/16 below 2**15), in
any order, so the forward values are the runtime's whatever the loop order.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange


@njit(parallel=True, cache=True)
def _depthwise_forward(x, e, out):
    # x (B, Cin, H, W) levels; e (9, C, L); out (B, C, H, W); Cin 1 or C
    B, cin, H, W = x.shape
    C = e.shape[1]
    for b in prange(B):
        for o in range(C):
            c = 0 if cin == 1 else o
            for i in range(H):
                for j in range(W):
                    acc = np.float32(0)
                    for dy in range(3):
                        ii = min(max(i + dy - 1, 0), H - 1)
                        for dx in range(3):
                            jj = min(max(j + dx - 1, 0), W - 1)
                            acc += e[3 * dy + dx, o, x[b, c, ii, jj]]
                    out[b, o, i, j] = acc


@njit(parallel=True, cache=True)
def _depthwise_backward(x, slope, grad, grad_e, grad_x):
    # grad_e (B, 9, C, L): one accumulator per batch entry, summed by the caller
    B, cin, H, W = x.shape
    C = slope.shape[1]
    for b in prange(B):
        for o in range(C):
            c = 0 if cin == 1 else o
            for i in range(H):
                for j in range(W):
                    g = grad[b, o, i, j]
                    for dy in range(3):
                        ii = min(max(i + dy - 1, 0), H - 1)
                        for dx in range(3):
                            jj = min(max(j + dx - 1, 0), W - 1)
                            v = x[b, c, ii, jj]
                            a = 3 * dy + dx
                            grad_e[b, a, o, v] += g
                            grad_x[b, c, ii, jj] += g * slope[a, o, v]


@njit(parallel=True, cache=True)
def _pointwise_forward(x, e, out):
    # x (B, A, H, W) levels; e (A, L, C), rows contiguous over outputs; out (B, C, H, W)
    B, A, H, W = x.shape
    C = e.shape[2]
    for b in prange(B):
        acc = np.empty(C, np.float32)
        for i in range(H):
            for j in range(W):
                acc[:] = 0
                for a in range(A):
                    row = e[a, x[b, a, i, j]]
                    for o in range(C):
                        acc[o] += row[o]
                for o in range(C):
                    out[b, o, i, j] = acc[o]


@njit(parallel=True, cache=True)
def _pointwise_backward(x, slope, grad, grad_e, grad_x):
    # slope (A, L, C); grad_e (B, A, L, C); grad_x (B, A, H, W)
    B, A, H, W = x.shape
    C = slope.shape[2]
    for b in prange(B):
        for i in range(H):
            for j in range(W):
                for a in range(A):
                    v = x[b, a, i, j]
                    s = np.float32(0)
                    for o in range(C):
                        g = grad[b, o, i, j]
                        grad_e[b, a, v, o] += g
                        s += g * slope[a, v, o]
                    grad_x[b, a, i, j] = s


def _levels(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.int16).contiguous().numpy()


class TableSum(torch.autograd.Function):
    """Per output channel, the sum of one table value per input (see :func:`table_sum`)."""

    @staticmethod
    def forward(ctx, e, slope, x, depthwise):
        levels = _levels(x)
        B, _, H, W = x.shape
        C = e.shape[1]
        out = np.empty((B, C, H, W), np.float32)
        if depthwise:
            _depthwise_forward(levels, e.detach().contiguous().numpy(), out)
        else:
            _pointwise_forward(levels, e.detach().permute(0, 2, 1).contiguous().numpy(), out)
        ctx.save_for_backward(slope, x)
        ctx.depthwise = depthwise
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad):
        slope, x = ctx.saved_tensors
        levels = _levels(x)
        g = grad.detach().to(torch.float32).contiguous().numpy()
        B = levels.shape[0]
        grad_x = np.zeros(levels.shape, np.float32)
        if ctx.depthwise:
            s = slope.detach().contiguous().numpy()
            grad_e = np.zeros((B, *s.shape), np.float32)
            _depthwise_backward(levels, s, g, grad_e, grad_x)
            grad_e = grad_e.sum(0)
        else:
            s = slope.detach().permute(0, 2, 1).contiguous().numpy()
            grad_e = np.zeros((B, *s.shape), np.float32)
            _pointwise_backward(levels, s, g, grad_e, grad_x)
            grad_e = grad_e.sum(0).transpose(0, 2, 1)
        return torch.from_numpy(np.ascontiguousarray(grad_e)), None, torch.from_numpy(grad_x), None


def table_sum(e: torch.Tensor, slope: torch.Tensor, x: torch.Tensor,
              depthwise: bool) -> torch.Tensor:
    """``sum_a e[a, o, v_a]`` for every pixel and output channel ``o``.

    Parameters
    ----------
    e, slope : Tensor (A, C, L)
        The tables' values at every input level, and the slope of their
        interpolation there (used for the inputs' gradient only).
    x : Tensor (B, C_in, H, W)
        Integer input levels ``0..L-1`` (float, with gradients).
    depthwise : bool
        ``v_a`` is window position ``a`` (3x3, replicate padding) of channel
        ``o`` (or of the only channel when ``C_in = 1``); otherwise it is
        input channel ``a``.

    Returns
    -------
    Tensor (B, C, H, W)
        Backward: ``e`` gets the output gradient at each entry read; each input
        the output gradient times ``slope`` at the entries it was read for.
    """
    return TableSum.apply(e, slope, x, depthwise)
