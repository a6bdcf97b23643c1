"""Batched Sinkhorn-Knopp for the OT rewards: POT's iteration and stopping rule, many problems at once.

For B problems (cost (B, n, m), marginals a (B, n), b (B, m), zero mass marking padding) each element follows
POT's `sinkhorn_knopp` exactly: u = 1/n, v = 1/m, then v = b / Kᵀu, u = a / K v; every 10 iterations the
column-marginal error ||(uᵀK)∘v − b|| is checked and an element below `stop_thr` stops; an element hitting a
numerical error (Kᵀu = 0, a non-finite scaling) keeps its previous scaling and stops. Computed in float64: with
reg 0.01 the kernel exp(-C/reg) reaches e^-200, far below float32's range.

Why two loops: on a CPU the work is 2·B matrix-vector products per iteration, and numpy's stacked matmul runs
them several times faster than torch's batched `bmm` with a vector (bench/bench_ot.py), so CPU tensors go through
numpy (zero-copy views), and problems leave the batch as they converge; on CUDA the loop runs in torch without
any host sync (finished problems are frozen by masks instead), so it can be captured in a CUDA graph. Both assume
no numerical error and check the plans once at the end; only problems whose plan came out non-finite are solved
again with POT's full error rule (`_checked`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

CHECK_EVERY = 10  # POT checks the marginal error every 10 iterations


def _marginal_error(K: Any, u: Any, v: Any, b: Any) -> Any:
    return ((((u[:, None, :] @ K)[:, 0, :] * v - b) ** 2).sum(1)) ** 0.5


def _lean_cpu(K: np.ndarray, a: np.ndarray, b: np.ndarray, iters: int, stop_thr: float) -> tuple[Any, Any]:
    """Two products and two divisions per iteration. A problem that meets the stopping rule keeps that
    iteration's scaling and leaves the working set (most stop long before the last one does), so later iterations
    touch fewer kernels. Assumes no numerical error: one that occurs leaves a non-finite scaling (an infinite or
    NaN value spreads through the products and never comes back finite), which the caller checks."""
    n, m = K.shape[1], K.shape[2]
    u, v = np.full(a.shape, 1.0 / n), np.full(b.shape, 1.0 / m)
    out_u, out_v = u.copy(), v.copy()
    idx = np.arange(len(K))
    for it in range(iters):
        v = b / (u[:, None, :] @ K)[:, 0, :]
        u = a / (K @ v[:, :, None])[:, :, 0]
        if it % CHECK_EVERY == 0:
            stop = _marginal_error(K, u, v, b) < stop_thr
            if stop.any():
                out_u[idx[stop]], out_v[idx[stop]] = u[stop], v[stop]
                keep = ~stop
                idx, K, a, b, u, v = idx[keep], K[keep], a[keep], b[keep], u[keep], v[keep]
                if len(idx) == 0:
                    break
    out_u[idx], out_v[idx] = u, v
    return out_u, out_v


def _lean_cuda(K: Tensor, a: Tensor, b: Tensor, iters: int, stop_thr: float) -> tuple[Tensor, Tensor]:
    """The same without reading the device: every problem runs every iteration, and one that met the stopping
    rule keeps the scaling of that iteration through masks (capturable in a CUDA graph)."""
    n, m = K.shape[1], K.shape[2]
    u, v = torch.full_like(a, 1.0 / n), torch.full_like(b, 1.0 / m)
    kept_u, kept_v = u, v
    done = torch.zeros(len(K), dtype=torch.bool, device=K.device)
    for it in range(iters):
        v = b / (u[:, None, :] @ K)[:, 0, :]
        u = a / (K @ v[:, :, None])[:, :, 0]
        if it % CHECK_EVERY == 0:
            new = ~done & (_marginal_error(K, u, v, b) < stop_thr)
            kept_u, kept_v = torch.where(new[:, None], u, kept_u), torch.where(new[:, None], v, kept_v)
            done = done | new
    return torch.where(done[:, None], kept_u, u), torch.where(done[:, None], kept_v, v)


def _checked(K: Any, a: Any, b: Any, iters: int, stop_thr: float, where: Any) -> tuple[Any, Any, Any]:
    """POT's full rule, numerical errors included (Kᵀu = 0 or a non-finite scaling: keep the last scaling, stop).
    Several times slower than `_lean`; only problems whose lean plan came out non-finite go through it."""
    n, m = K.shape[1], K.shape[2]
    u = a * 0 + 1.0 / n
    v = b * 0 + 1.0 / m
    active = (a[:, 0] * 0) == 0
    failed = ~active
    for it in range(iters):
        ktu = (u[:, None, :] @ K)[:, 0, :]
        v_new = b / ktu
        u_new = a / (K @ v_new[:, :, None])[:, :, 0]
        bad = ((ktu == 0) & (b > 0)).any(1) | ~((u_new - u_new) == 0).all(1) | ~((v_new - v_new) == 0).all(1)
        take = active & ~bad
        failed = failed | (active & bad)
        u, v = where(take[:, None], u_new, u), where(take[:, None], v_new, v)
        active = take
        if it % CHECK_EVERY == 0:
            active = active & ~(_marginal_error(K, u, v, b) < stop_thr)
            if not bool(active.any()):
                break
    return u, v, failed


def sinkhorn_batched(
    cost: Tensor, a: Tensor, b: Tensor, reg: float = 0.01, iters: int = 100, stop_thr: float = 1e-9, warn: bool = True
) -> Tensor:
    """Entropic OT plans (B, n, m) of a batch of problems, POT's `sinkhorn_knopp` element by element.

    Padded columns (b = 0) get v = 0. On CUDA the iterations run without reading the device; the one read at the
    end (is every plan finite?) decides whether any problem needs POT's numerical-error rule."""
    cost, a, b = cost.detach().double(), a.detach().double(), b.detach().double()
    if cost.device.type == "cpu":
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # errors are found and handled below
            return _solve(cost, a, b, reg, iters, stop_thr, warn)
    return _solve(cost, a, b, reg, iters, stop_thr, warn)


def _solve(cost: Tensor, a: Tensor, b: Tensor, reg: float, iters: int, stop_thr: float, warn: bool) -> Tensor:
    cpu = cost.device.type == "cpu"
    where = np.where if cpu else torch.where
    K, aa, bb = (np.exp(-cost.numpy() / reg), a.numpy(), b.numpy()) if cpu else (torch.exp(-cost / reg), a, b)
    u, v = _lean_cpu(K, aa, bb, iters, stop_thr) if cpu else _lean_cuda(K, aa, bb, iters, stop_thr)
    plan = u[:, :, None] * K * v[:, None, :]
    finite = ((plan - plan) == 0).all(2).all(1)
    if not bool(finite.all()):
        idx = ~finite
        u2, v2, failed = _checked(K[idx], aa[idx], bb[idx], iters, stop_thr, where)
        plan[idx] = u2[:, :, None] * K[idx] * v2[:, None, :]
        if warn and bool(failed.any()):
            warnings.warn(
                f"sinkhorn: numerical errors in {int(failed.sum())} of {len(finite)} problems; they keep "
                "their last finite scaling",
                stacklevel=2,
            )
    return torch.from_numpy(plan) if cpu else plan
