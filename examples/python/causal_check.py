#!/usr/bin/env python3
"""Recompute gamma-run's causal frames with numpy in float64 and compare.

    python3 causal_check.py tensors/NAME/W.safetensors tensors/NAME/M.safetensors tensors/NAME/G.safetensors \
        [--divisor n|n-1] [--ridge 0] [--basis symmetric|eigen] [--center mean|none]

From W (bf16, exactly as stored) it computes Park et al.'s quantities in float64 with numpy/LAPACK: μ, the
covariance C, eigh(C + λI), M = (C + λI)^-1, A = (C + λI)^-1/2, A^-1, and the coordinates G. It prints each
output's relative Frobenius error against that reference, and the error of numpy float32 computing the same
pipeline (what a notebook does), so gamma-run's G can be judged against it. Exit 1 when an f64 output is off by
more than --tol (default 1e-10) or G is less accurate than numpy float32.

Needs numpy, safetensors and ml_dtypes (`pip install gamma-run[read]` installs them).
"""
import argparse
import sys

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)
import numpy as np
from safetensors.numpy import load_file


def rel(a, b):
    """‖a − b‖_F / ‖b‖_F."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def canonical_signs(q):
    """Each column's largest-magnitude component positive (the first such on a tie): gamma-run's rule."""
    idx = np.argmax(np.abs(q), axis=0)
    signs = np.sign(q[idx, np.arange(q.shape[1])])
    signs[signs == 0] = 1
    return q * signs


def pipeline(w, dtype, divisor, ridge, basis, center):
    """mean, covariance, eigh, whitening and coordinates in one precision (numpy float32 or float64)."""
    x = w.astype(dtype)
    v = x.shape[0]
    mu = x.mean(axis=0, dtype=dtype)
    xc = x - mu
    c = (xc.T @ xc) / dtype(v if divisor == "n" else v - 1)
    lam, q = np.linalg.eigh(c + dtype(ridge) * np.eye(c.shape[0], dtype=dtype))
    q = canonical_signs(q)
    a = (q * lam ** -0.5) @ q.T
    src = xc if center == "mean" else x
    g = src @ a if basis == "symmetric" else src @ (q * lam ** -0.5)
    return {"mu": mu, "C": c, "eigenvalues": lam, "Q": q, "M": (q / lam) @ q.T, "A": a,
            "A_inv": (q * lam ** 0.5) @ q.T}, g


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("w")
    p.add_argument("m")
    p.add_argument("g")
    p.add_argument("--divisor", default="n", choices=["n", "n-1"])
    p.add_argument("--ridge", type=float, default=0.0)
    p.add_argument("--basis", default="symmetric", choices=["symmetric", "eigen"])
    p.add_argument("--center", default="mean", choices=["mean", "none"])
    p.add_argument("--tol", type=float, default=1e-10)
    a = p.parse_args()

    w = load_file(a.w)["W"]
    assert w.dtype == ml_dtypes.bfloat16, f"W is {w.dtype}, expected bfloat16"
    ref, g_ref = pipeline(w, np.float64, a.divisor, a.ridge, a.basis, a.center)
    _, g_np32 = pipeline(w, np.float32, a.divisor, a.ridge, a.basis, a.center)
    ours = load_file(a.m)
    g = load_file(a.g)["G"]

    failed = False
    lam = ref["eigenvalues"]
    print(f"reference: numpy {np.__version__} float64, eigenvalues {lam[0]:.3e} … {lam[-1]:.3e}, "
          f"condition {lam[-1] / lam[0]:.3e}")
    for name in ["mu", "eigenvalues", "C", "Q", "M", "A", "A_inv"]:
        err = rel(ours[name], ref[name])
        bad = ours[name].dtype == np.float64 and err > a.tol
        failed |= bad
        print(f"{name:12s} relative error {err:.3e}{'  > tol' if bad else ''}")
    err_g, err_np32 = rel(g, g_ref), rel(g_np32, g_ref)
    worse = err_g > err_np32
    failed |= worse
    print(f"{'G':12s} relative error {err_g:.3e}  (numpy float32 pipeline: {err_np32:.3e}; "
          f"gamma-run is {err_np32 / max(err_g, 1e-300):.1f}× as accurate){'  WORSE' if worse else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
