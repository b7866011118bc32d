#!/usr/bin/env python3
"""Benchmark of the causal frames: gamma-run computing γ → causal_metric → causal (outputs written, durable), against
numpy computing mean, GᵀG, eigh and G·A from the same W in float32 and in float64, in one invocation.

    python3 bench/causal.py --bin target/release/gamma-run             # Qwen3-4B's W: V 151936, d 2560
    python3 bench/causal.py --bin target/release/gamma-run --smoke     # V 8192, d 256: checks the harness
    python3 bench/causal.py --bin … --runs 3                           # runs per case (default 2)

The workspace is built once and reused: bench/data-causal (or bench/data-causal-smoke) holds models/m (written by
`gamma-run synth --seed 1 --condition 1e4`: a planted spectrum) and jobs/causal.yaml ([gamma, causal]). A warm-up
run builds everything and is checked against examples/python/causal_check.py (float64 numpy reference, once); then,
`--runs` times, in rotating order:
  gamma-run      `gamma-run run jobs/causal.yaml --force --only m/causal_metric --only m/causal -q`: the metric
                 and the coordinates from the stored γ, both files written and fsynced as every output is
  numpy f32      reading W.safetensors, then mean, (W−μ)ᵀ(W−μ)/V, eigh, A = QΛ^-1/2Qᵀ, G = (W−μ)·A in float32
  numpy f64      the same in float64
  dd             copying G.safetensors with `dd conv=fsync`: what writing G durably costs on this disk, which
                 gamma-run pays and the numpy rows do not
numpy runs with OpenBLAS on as many threads as gamma-run's rayon pool (OPENBLAS_NUM_THREADS, RAYON_NUM_THREADS:
the machine's cores), with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset; it writes nothing. Wall time by
perf_counter, peak RSS by os.wait4 (the floor: the peak RSS of `true` forked from this script). Prints a markdown
table (also results.md in the data directory) with medians and ratios to both numpy rows.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(ROOT)
CHECK = os.path.join(REPO, "examples", "python", "causal_check.py")

ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
ap.add_argument("--bin", help="the gamma-run binary to time (a release build)")
ap.add_argument("--smoke", action="store_true", help="tiny shapes (V 8192, d 256): checks the harness, not the speed")
ap.add_argument("--runs", type=int, default=2, help="runs per case after one warm-up (default 2)")
ap.add_argument("--numpy-case", nargs=2, metavar=("W", "DTYPE"), help=argparse.SUPPRESS)  # internal
args = ap.parse_args()

if args.numpy_case:
    # One numpy row, as its own process (so wait4 sees its peak RSS): the pipeline a notebook runs.
    import ml_dtypes  # noqa: F401
    import numpy as np
    from safetensors.numpy import load_file
    dt = np.float32 if args.numpy_case[1] == "f32" else np.float64
    w = load_file(args.numpy_case[0])["W"].astype(dt)
    mu = w.mean(axis=0, dtype=dt)
    w -= mu
    c = (w.T @ w) / dt(w.shape[0])
    lam, q = np.linalg.eigh(c)
    a = (q * lam ** -0.5) @ q.T
    g = w @ a
    assert np.isfinite(g[0, 0])
    sys.exit(0)

if not args.bin:
    ap.error("--bin is required")
B = os.path.abspath(args.bin)
V, H = (8192, 256) if args.smoke else (151936, 2560)
D = os.path.join(ROOT, "data-causal-smoke" if args.smoke else "data-causal")
T = os.path.join("tensors", "m")
ERR = os.path.join(D, "last-stderr.txt")
RSS_MIB = (lambda r: r / 2 ** 20) if sys.platform == "darwin" else (lambda r: r / 1024)
THREADS = str(os.cpu_count())
ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
ENV.update(OPENBLAS_NUM_THREADS=THREADS, RAYON_NUM_THREADS=THREADS)


def sh(cmd):
    print(f"bench: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=D, check=True, env=ENV)


def timed(cmd):
    """(seconds, peak RSS in MiB) of one run of `cmd` in the workspace."""
    with open(ERR, "wb") as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=D, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}\n{open(ERR, errors='replace').read()}")
    return dt, RSS_MIB(ru.ru_maxrss)


os.makedirs(os.path.join(D, "jobs"), exist_ok=True)
if not os.path.exists(os.path.join(D, "models", "m", "config.json")):
    sh([B, "synth", "--out", os.path.join("models", "m"), "--vocab", str(V), "--hidden", str(H), "--seed", "1",
        "--condition", "1e4", "-q"])
with open(os.path.join(D, "jobs", "causal.yaml"), "w") as f:
    f.write("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, causal]\n")
sh([B, "run", os.path.join("jobs", "causal.yaml"), "-q"])
print("bench: checking M and G against the float64 numpy reference …", file=sys.stderr)
checked = subprocess.run([sys.executable, CHECK, *(os.path.join(T, f) for f in
                          ("W.safetensors", "M.safetensors", "G.safetensors"))], cwd=D, capture_output=True, text=True)
print(checked.stdout + checked.stderr, file=sys.stderr)
g_line = next((l for l in checked.stdout.splitlines() if l.startswith("G ")), "(no G line)")
worst = max((float(l.split()[3]) for l in checked.stdout.splitlines()
             if l.split()[:1] and l.split()[0] in ("C", "M", "A", "A_inv") and "relative" in l), default=float("nan"))

W_FILE = os.path.join(T, "W.safetensors")
CASES = [
    ("gamma-run", "gamma-run: causal_metric + causal from γ (files written, fsynced)",
     [B, "run", os.path.join("jobs", "causal.yaml"), "--force", "--only", "m/causal_metric", "--only", "m/causal",
      "-q"]),
    ("numpy f32", "numpy float32: read W, mean, GᵀG, eigh, G·A (nothing written)",
     [sys.executable, os.path.abspath(__file__), "--numpy-case", W_FILE, "f32"]),
    ("numpy f64", "numpy float64: the same", [sys.executable, os.path.abspath(__file__), "--numpy-case", W_FILE, "f64"]),
    ("dd", "`dd conv=fsync` of G.safetensors (the floor for writing G durably; numpy writes nothing)",
     ["dd", f"if={os.path.join(T, 'G.safetensors')}", "of=dd-copy.tmp", "bs=4M", "conv=fsync", "status=none"]),
]
times = {c: [] for c, _, _ in CASES}
rss = {c: [] for c, _, _ in CASES}
failed = {}
for i in range(args.runs + 1):
    for c, _, cmd in CASES[i % len(CASES):] + CASES[:i % len(CASES)]:
        if c in failed:
            continue
        try:
            dt, r = timed(cmd)
        except RuntimeError as e:
            failed[c] = str(e).splitlines()[0]
            print(f"bench: {c} FAILED: {e}", file=sys.stderr)
            continue
        if i > 0:
            times[c].append(dt)
            rss[c].append(r)
        print(f"bench: run {i}{' (warm-up)' if i == 0 else ''} {c}: {dt:.2f} s, peak RSS {r:.1f} MiB", file=sys.stderr)

floor = timed(["true"])[1]
med = {c: statistics.median(t) for c, t in times.items() if t}
lines = [
    f"causal frames, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} ({THREADS} cores, "
    f"{platform.machine()}): W [{V}, {H}] bf16, planted condition 1e4, {args.runs} runs per case after one warm-up, "
    f"medians{' — SMOKE (tiny shapes)' if args.smoke else ''}. Against float64 numpy: worst of C, M, A, A⁻¹ "
    f"{worst:.1e}; {g_line.split(None, 1)[1] if ' ' in g_line else g_line}. Peak RSS floor: {floor:.1f} MiB.",
    "",
    "| case | median wall s (min–max) | ratio to numpy f32 | ratio to numpy f64 | peak RSS MiB |",
    "|---|---:|---:|---:|---:|",
]
ratio = lambda c, base: f"{med[c] / med[base]:.2f}" if c in med and base in med and med[base] > 0 else "—"
for c, what, _ in CASES:
    if c in failed:
        lines.append(f"| {what} | FAILED: {failed[c]} | — | — | — |")
        continue
    lines.append(f"| {what} | {med[c]:.2f} ({min(times[c]):.2f}–{max(times[c]):.2f}) | {ratio(c, 'numpy f32')} | "
                 f"{ratio(c, 'numpy f64')} | {max(rss[c]):.1f} |")
table = "\n".join(lines)
with open(os.path.join(D, "results.md"), "w") as f:
    f.write(table + "\n")
print(table)
sys.exit(1 if failed or checked.returncode != 0 else 0)
