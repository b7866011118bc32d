#!/usr/bin/env python3
"""Benchmark of the `token_stats` frame: gamma-run rebuilding stats.safetensors from γ, against numpy computing
the same statistics from the same file, and against reading γ once (`cat` from the page cache).

    python3 bench/token_stats.py --bin target/release/gamma-run             # Qwen3-4B's W: V 151936, d 2560
    python3 bench/token_stats.py --bin target/release/gamma-run --smoke     # V 4096, d 256: checks the harness
    python3 bench/token_stats.py --bin … --runs 5                           # runs per case (default 3)

The workspace is built once and reused: bench/data-stats (or bench/data-stats-smoke) holds models/m (written by
`gamma-run synth --seed 1`) and jobs/stats.yaml ([gamma, token_stats]). A warm-up run builds γ and the stats
(and checks them against examples/python/token_stats_check.py, once); then, `--runs` times, alternately:
  gamma-run   `gamma-run run jobs/stats.yaml --force --only m/token_stats -q` (γ is fresh: only the stats)
  numpy       reading tensors/m/W.safetensors and computing every statistic with the numpy reference of
              examples/python/token_stats_check.py (the same code, imported, with its exact norms), in a
              process of its own
  cat         `cat tensors/m/W.safetensors > /dev/null`: reading γ once, from the page cache
Wall time by perf_counter, peak RSS of each process from os.wait4 (a child's ru_maxrss includes the memory of
this Python process it was forked from, so the header gives that floor: the peak RSS of `true`). Prints a markdown table (also written to
results.md in the data directory) of medians and their ratios to the numpy and cat rows measured in the same
invocation, so the table compares across machines.
"""
import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(ROOT)
CHECK = os.path.join(REPO, "examples", "python", "token_stats_check.py")


def load_check():
    """The numpy reference, imported by path (examples/ is no package)."""
    spec = importlib.util.spec_from_file_location("token_stats_check", CHECK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
ap.add_argument("--bin", help="the gamma-run binary to time (a release build)")
ap.add_argument("--smoke", action="store_true", help="tiny shapes (V 4096, d 256): checks the harness, not the speed")
ap.add_argument("--runs", type=int, default=3, help="runs per case after one warm-up (default 3)")
ap.add_argument("--numpy-case", metavar="W", help=argparse.SUPPRESS)  # internal: the numpy row's process
args = ap.parse_args()

if args.numpy_case:
    # The numpy row: read the file, compute everything, as one process (so wait4 sees its peak RSS).
    check = load_check()
    check.reference(check.load_w(args.numpy_case))
    sys.exit(0)

if not args.bin:
    ap.error("--bin is required")
B = os.path.abspath(args.bin)
V, H = (4096, 256) if args.smoke else (151936, 2560)  # full: the Qwen3-4B unembedding
D = os.path.join(ROOT, "data-stats-smoke" if args.smoke else "data-stats")
W_FILE = os.path.join("tensors", "m", "W.safetensors")
STATS_FILE = os.path.join("tensors", "m", "stats.safetensors")
ERR = os.path.join(D, "last-stderr.txt")
# ru_maxrss is in KiB on Linux, in bytes on macOS.
RSS_MIB = (lambda r: r / 2 ** 20) if sys.platform == "darwin" else (lambda r: r / 1024)


def sh(cmd, **kw):
    """Runs a setup command in the workspace, failing loudly."""
    print(f"bench: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=D, check=True, **kw)


def timed(cmd):
    """(seconds, peak RSS in MiB) of one run of `cmd` (a list; stdout discarded), in the workspace."""
    with open(ERR, "wb") as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=D, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen, so it does not wait again
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}\n{open(ERR, errors='replace').read()}")
    return dt, RSS_MIB(ru.ru_maxrss)


# The workspace: the model once (synth is deterministic, so a cached one is the same), the job file each time.
os.makedirs(os.path.join(D, "jobs"), exist_ok=True)
if not os.path.exists(os.path.join(D, "models", "m", "config.json")):
    sh([B, "synth", "--out", os.path.join("models", "m"), "--vocab", str(V), "--hidden", str(H), "--seed", "1", "-q"])
with open(os.path.join(D, "jobs", "stats.yaml"), "w") as f:
    f.write("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, token_stats]\n")

# Warm-up: builds γ (and the stats) if missing, and fills the page cache.
sh([B, "run", os.path.join("jobs", "stats.yaml"), "-q"])
print("bench: checking stats.safetensors against the numpy reference …", file=sys.stderr)
checked = subprocess.run([sys.executable, CHECK, W_FILE, STATS_FILE], cwd=D, capture_output=True, text=True)
check_line = (checked.stdout.strip().splitlines() or ["(no output)"])[-1]
if checked.returncode != 0:
    print(checked.stdout + checked.stderr, file=sys.stderr)

CASES = [
    ("gamma-run", "`gamma-run run --force --only m/token_stats` (stats from γ)",
     [B, "run", os.path.join("jobs", "stats.yaml"), "--force", "--only", "m/token_stats", "-q"]),
    ("numpy", "numpy reference (token_stats_check.py): read γ, every statistic",
     [sys.executable, os.path.abspath(__file__), "--numpy-case", W_FILE]),
    ("cat", "`cat W.safetensors > /dev/null` (γ read once)", ["cat", W_FILE]),
]
times = {c: [] for c, _, _ in CASES}
rss = {c: [] for c, _, _ in CASES}
failed = {}
for i in range(args.runs + 1):
    # Rotate which case goes first, so none always runs right after another's writes; run 0 is a warm-up.
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
        print(f"bench: run {i}{' (warm-up)' if i == 0 else ''} {c}: {dt:.3f} s, peak RSS {r:.1f} MiB", file=sys.stderr)

floor = timed(["true"])[1]
med = {c: statistics.median(t) for c, t in times.items() if t}
w_bytes = os.path.getsize(os.path.join(D, W_FILE))
lines = [
    f"token_stats, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} ({os.cpu_count()} cores, "
    f"{platform.machine()}): W [{V}, {H}] bf16 ({w_bytes / 2 ** 20:.1f} MiB), {args.runs} runs per case after one "
    f"warm-up, medians{' — SMOKE (tiny shapes)' if args.smoke else ''}. Check of the stats file: {check_line}. "
    f"Peak RSS floor (`true`, forked from this script): {floor:.1f} MiB.",
    "",
    "| case | median wall s (min–max) | ratio to numpy | ratio to cat | peak RSS MiB |",
    "|---|---:|---:|---:|---:|",
]
ratio = lambda c, base: f"{med[c] / med[base]:.2f}" if c in med and base in med and med[base] > 0 else "—"
for c, what, _ in CASES:
    if c in failed:
        lines.append(f"| {what} | FAILED: {failed[c]} | — | — | — |")
        continue
    lines.append(f"| {what} | {med[c]:.3f} ({min(times[c]):.3f}–{max(times[c]):.3f}) | {ratio(c, 'numpy')} | "
                 f"{ratio(c, 'cat')} | {max(rss[c]):.1f} |")
table = "\n".join(lines)
with open(os.path.join(D, "results.md"), "w") as f:
    f.write(table + "\n")
print(table)
sys.exit(1 if failed or checked.returncode != 0 else 0)
