#!/usr/bin/env python3
"""gamma-run benchmark cases and their baselines (see bench/run.sh). Each case and its baseline run alternately,
`runs` times after a warm-up; wall time by perf_counter, peak RSS from wait4. Ratios are against the baseline
measured in the same invocation, so the table is comparable across machines."""
import argparse, json, os, platform, shutil, signal, socket, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--smoke", action="store_true")
ap.add_argument("--only", default="", help="comma-separated case ids")
ap.add_argument("--before", default="", help="another gamma-run binary (e.g. the last release): adds before/after "
                "rows that time the same commands with both binaries, alternately, in this one invocation")
ap.add_argument("--python", default=os.environ.get("BENCH_PYTHON", sys.executable),
                help="a Python with torch, transformers and safetensors for the notebook rows (env BENCH_PYTHON)")
args = ap.parse_args()
B = args.bin
ROOT = os.path.dirname(os.path.abspath(__file__))
D = os.path.join(ROOT, "data-smoke" if args.smoke else "data")
# Qwen3-4B-Instruct-2507: 36 layers, W [151936, 2560] bf16 at the start of shard 1, shards of ≈ 3.96, 3.99 and
# 0.10 GB. Every tensor is there with its real name and shape, so transformers loads it for the notebook row.
V, H = (4096, 256) if args.smoke else (151936, 2560)
DECODER = ("--layers 4 --intermediate 512 --heads 4 --kv-heads 2 --head-dim 64 --max-shard-bytes 4000000" if args.smoke
           else "--layers 36 --intermediate 9728 --heads 32 --kv-heads 8 --head-dim 128 --max-shard-bytes 4000000000")
os.makedirs(D, exist_ok=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def timed(cmd, env=None):
    """(seconds, peak RSS in KiB) of one run of a shell command."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, shell=True, env=env, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"failed: {cmd}")
    return dt, ru.ru_maxrss


def synth(name, *a):
    if not os.path.exists(os.path.join(D, name, "config.json")):
        print(f"bench: writing synthetic checkpoint {name} …", file=sys.stderr)
        sh(f"{B} synth --out {D}/{name} " + " ".join(a))
    return os.path.join(D, name)


def job(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").write("version: 1\njobs:\n" + text)
    return path


def manifest(ws, name, frame="gamma"):
    return json.load(open(f"{ws}/manifests/{name}/{frame}.json"))


qwen3 = synth("qwen3-4b", f"--arch qwen3 --vocab {V} --hidden {H} {DECODER} --tie true --store embed")
f32 = synth("qwen3-f32", f"--arch qwen3 --vocab {V} --hidden {H} --dtype f32 --tie true --store embed")
quarter = synth("qwen3-quarter", f"--arch qwen3 --vocab {V // 4} --hidden {H} --tie true --store embed")
half = synth("qwen3-half", f"--arch qwen3 --vocab {V // 2} --hidden {H} --tie true --store embed")
# The control for "time independent of tensor size": the same decoder layout (same tensors, index and shards),
# with tiny tensors.
tiny = synth("tiny-4b-layout", "--arch qwen3 --vocab 256 --hidden 16 --layers 36 --intermediate 48 --heads 2 --kv-heads 1 "
             "--head-dim 8 --max-shard-bytes 100000 --tie true --store embed")

W = os.path.join(D, "ws")
shutil.rmtree(W, ignore_errors=True)
J = lambda n: os.path.join(W, "jobs", n)
one = job(J("one.yaml"), f"  - path: {qwen3}\n    name: q\n")
conv = job(J("f32.yaml"), f"  - path: {f32}\n    name: f\n")
prime = job(J("prime.yaml"), f"  - path: {qwen3}\n    name: q\n    frames: [gamma, gamma_prime]\n")
twoj = job(J("twojobs.yaml"), f"  - path: {half}\n    name: h2\n  - path: {half}\n    name: h3\n")
onej = job(J("onejob.yaml"), f"  - path: {half}\n    name: h2\n")
scale = {n: job(J(f"scale-{n}.yaml"), f"  - path: {p}\n    name: s-{n}\n") for n, p in [("quarter", quarter), ("half", half), ("full", qwen3)]}
big = job(J("big.yaml"), "".join(f"  - path: {qwen3}\n    name: big{i}\n" for i in range(3)))
small_ws = os.path.join(D, "ws-tiny")
shutil.rmtree(small_ws, ignore_errors=True)
small = job(os.path.join(small_ws, "jobs", "tiny.yaml"), "".join(f"  - path: {tiny}\n    name: t{i}\n" for i in range(3)))
sha_ws = os.path.join(D, "ws-sha")
shutil.rmtree(sha_ws, ignore_errors=True)
one_out = job(os.path.join(sha_ws, "jobs", "one.yaml"), f"  - path: {qwen3}\n    name: q\n")
src_ws = os.path.join(D, "ws-sources")
shutil.rmtree(src_ws, ignore_errors=True)
src_job = job(os.path.join(src_ws, "jobs", "one.yaml"), f"  - path: {qwen3}\n    name: q\n")
for j in (one, conv, prime, big, small, one_out, onej, src_job):
    sh(f"{B} run -q {j}", stdout=subprocess.DEVNULL)

qm, fm = manifest(W, "q"), manifest(W, "f")
shard_q = os.path.join(qwen3, qm["source"]["range"]["file"])
shard_f = os.path.join(f32, fm["source"]["range"]["file"])
OUT = os.path.join(W, "baseline.out")
dd = lambda src, off, n: f"dd if={src} of={OUT} bs=4M iflag=skip_bytes,count_bytes skip={off} count={n} conv=fsync status=none"
wprime = f"{W}/tensors/q/W_prime.safetensors"
big_files = " ".join(f"{W}/tensors/big{i}/W.safetensors" for i in range(3))

rows = []


def case(cid, what, cmd, base, target, prepare=None, env=None, note="", also=None, rss_shown=True):
    """Times `cmd` against `base`; `also(median, rss_mib)` → (ok, text) adds a target that is not a ratio."""
    if args.only and cid not in args.only.split(","):
        return
    t_cmd, t_base, rss = [], [], []
    try:
        for i in range(args.runs + 1):
            if prepare:
                sh(prepare)
            # Alternate which goes first, so neither always runs after the other's writes.
            if i % 2:
                b, _ = timed(base)
                a, r = timed(cmd, env)
            else:
                a, r = timed(cmd, env)
                b, _ = timed(base)
            if i > 0:
                t_cmd.append(a); t_base.append(b); rss.append(r)
    except RuntimeError as e:
        print(f"{cid}: {e}", file=sys.stderr)
        rows.append(dict(id=cid, what=what, med=0, lo=0, hi=0, bmed=0, blo=0, bhi=0, ratio=0, target=target,
                         ok=False, rss=0, note=f"FAILED: {e}"))
        return
    med, bmed = statistics.median(t_cmd), statistics.median(t_base)
    ratio = med / bmed
    ok = ratio <= target if target else None
    if also:
        extra_ok, text = also(med, max(rss) / 1024)
        ok = extra_ok if ok is None else (ok and extra_ok)
        note = (f"{note}; {text}" if note else text) if text else note
    rows.append(dict(id=cid, what=what, med=med, lo=min(t_cmd), hi=max(t_cmd), bmed=bmed, blo=min(t_base),
                     bhi=max(t_base), ratio=ratio, target=target, ok=ok, rss=max(rss) / 1024 if rss_shown else None,
                     note=note))
    print(f"{cid}: {med:.3f}s vs {bmed:.3f}s = {ratio:.2f}x (target {target}) peak RSS {max(rss)/1024:.1f} MiB", file=sys.stderr)


case("gamma-bf16", "γ, bf16 source (W 742 MiB of an 8 GB checkpoint)", f"{B} run -q --force {one}",
     dd(shard_q, qm["source"]["range"]["offset"], qm["source"]["range"]["length"]), 1.3, note="baseline: dd of W's range, conv=fsync",
     also=lambda med, rss: (rss <= 32, f"peak RSS ≤ 32 MiB: {'yes' if rss <= 32 else 'NO'}"))
case("gamma-f32", "γ, f32 source (W 1.48 GB → 742 MiB bf16)", f"{B} run -q --force {conv}",
     dd(shard_f, fm["source"]["range"]["offset"], fm["source"]["range"]["length"]), 1.5, note="baseline: dd of the f32 range, conv=fsync")
case("gamma-prime", "γ′ from γ (reads 742 MiB, writes 1.48 GB f32)", f"{B} run -q {prime}",
     f"cp {wprime} {OUT} && sync {OUT}", 2.0, prepare=f"rm -f {W}/manifests/q/gamma_prime.json",
     note="baseline: cp of a file of γ′'s size + sync")
under100 = lambda med, rss: (med < 0.1, f"under 100 ms: {'yes' if med < 0.1 else 'NO'}")
case("status", "`status` on 3 fresh Qwen3-scale outputs", f"{B} status {big}", f"{B} status {small}", 1.5,
     note="baseline: the same on 3 tiny outputs of the same 36-layer layout", also=under100)
case("noop-run", "no-op `run` on 3 fresh Qwen3-scale outputs", f"{B} run -q {big}", f"{B} run -q {small}", 1.5,
     note="baseline: the same on 3 tiny outputs of the same 36-layer layout", also=under100)
# The other binary works in a workspace of its own: manifests from another version must not make either binary
# do work the other does not (an older manifest lacks fields the newer one re-checks once).
WB = os.path.join(D, "ws-before")
if args.before:
    shutil.rmtree(WB, ignore_errors=True)
    one_b = job(os.path.join(WB, "jobs", "one.yaml"), f"  - path: {qwen3}\n    name: q\n")
    sh(f"{args.before} run -q {one_b}", stdout=subprocess.DEVNULL)
    case("before-gamma-bf16", "γ, bf16 source: this binary vs --before", f"{B} run -q --force {one}",
         f"{args.before} run -q --force {one_b}", 1.1, note=f"baseline: {args.before}, in a workspace of its own")
sha_ni = "sha_ni" in open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else False
case("sha256", "SHA-256 of one 742 MiB output (`verify`)", f"{B} verify {sha_ws}/manifests",
     f"openssl dgst -sha256 {sha_ws}/tensors/q/W.safetensors", 0,
     note=f"baseline: openssl dgst -sha256 (SHA extensions); CPU has sha_ni: {'yes' if sha_ni else 'no'} — "
          "a ratio near 1 shows the sha2 crate picked them at run time (software SHA-256 is ~3× slower)")
case("verify", "`verify` of 6 outputs (5.2 GB: 4 × γ, 1 × f32-sourced γ, 1 × γ′)", f"{B} verify {W}/manifests", f"openssl dgst -sha256 {big_files} {W}/tensors/q/W.safetensors {W}/tensors/f/W.safetensors {wprime}",
     1.25, note="baseline: openssl dgst -sha256 over the same files")
# verify --sources re-reads what the manifest records (config, index and W's shard) whole, hashes it and
# re-extracts W: against sha256sum of the same files.
src_files = " ".join(os.path.join(qwen3, f["path"]) for f in qm["source"]["files"])
src_bytes = sum(f["size"] for f in qm["source"]["files"])
case("verify-sources", f"`verify --sources` of γ from the local checkpoint (re-reads config, index and W's shard: {src_bytes / 1e9:.2f} GB)",
     f"{B} verify --sources --offline {src_ws}/manifests", f"sha256sum {src_files}", 1.25,
     note="baseline: sha256sum of the same files; target ≥ 0.8 × its speed, i.e. a ratio ≤ 1.25")

# From a loopback hub: range fetch with an empty cache, against curl of the same byte range from the same server.
port = socket.socket(); port.bind(("127.0.0.1", 0)); PORT = port.getsockname()[1]; port.close()
server = subprocess.Popen([sys.executable, os.path.join(ROOT, "hub_server.py"), D, str(PORT)])
time.sleep(1.0)
try:
    hubjob = job(J("hub.yaml"), f"  - model: bench/qwen3-4b\n    name: hq\n    revision: c0ffee{'0' * 34}\n")
    env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{PORT}", HF_HUB_CACHE=os.path.join(W, "empty-cache"))
    stats = lambda: json.load(__import__("urllib.request").request.urlopen(f"http://127.0.0.1:{PORT}/stats"))["served"]
    s0 = stats(); sh(f"{B} run -q --force {hubjob}", env=env, stdout=subprocess.DEVNULL); moved = stats() - s0
    off, n = qm["source"]["range"]["offset"], qm["source"]["range"]["length"]
    url = f"http://127.0.0.1:{PORT}/cdn/qwen3-4b/{qm['source']['range']['file']}"
    fits = moved <= 1.01 * n + (1 << 20)
    case("hub-range", "γ from the loopback hub (range fetch, no cache)", f"{B} run -q --force {hubjob}",
         f"curl -s -r {off}-{off + n - 1} {url} -o {OUT} && sync {OUT}", 1.3, env=env,
         prepare=f"rm -rf {W}/empty-cache",
         note=f"baseline: curl of W's range from the same server + sync; bytes moved {moved} = {moved / n:.4f} × W "
              f"(≤ 1.01 × W + 1 MiB: {'yes' if fits else 'NO'})",
         also=lambda med, rss: (fits, ""))
    if args.before:
        # The same command with the other binary as the baseline: the ratio is after ÷ before.
        hub_b = job(os.path.join(WB, "jobs", "hub.yaml"), f"  - model: bench/qwen3-4b\n    name: hq\n    revision: c0ffee{'0' * 34}\n")
        case("before-hub-range", "γ from the loopback hub: this binary vs --before", f"{B} run -q --force {hubjob}",
             f"env HF_ENDPOINT=http://127.0.0.1:{PORT} HF_HUB_CACHE={WB}/empty-cache {args.before} run -q --force {hub_b}",
             1.1, env=env, prepare=f"rm -rf {W}/empty-cache {WB}/empty-cache",
             note=f"baseline: {args.before}, in a workspace of its own")
finally:
    server.send_signal(signal.SIGTERM)

for n, j in scale.items():
    case(f"scale-{n}", f"γ at V = {V if n == 'full' else V // (4 if n == 'quarter' else 2)}", f"{B} run -q --force {j}",
         "true", 0, note="time per size: see the scaling row")
# The disk's own answer to "twice the bytes at once": two dd copies of the same range in parallel against one.
hm = manifest(W, "h2")
half_shard, half_off, half_n = os.path.join(half, hm["source"]["range"]["file"]), hm["source"]["range"]["offset"], hm["source"]["range"]["length"]
dd_half = lambda out: f"dd if={half_shard} of={out} bs=4M iflag=skip_bytes,count_bytes skip={half_off} count={half_n} conv=fsync status=none"
case("two-dd", "the floor for two jobs: two dd copies (371 MiB each) in parallel", f"{dd_half(OUT + '.1')} & {dd_half(OUT + '.2')}; wait",
     dd_half(OUT + ".1"), 0, note="baseline: one dd; this ratio is what the disk itself allows for twice the bytes",
     rss_shown=False)
floor = next((r["ratio"] for r in rows if r["id"] == "two-dd"), None)
case("two-jobs", "two γ jobs (371 MiB each) with --jobs 2", f"{B} run -q --force --jobs 2 {twoj}", f"{B} run -q --force {onej}", 1.25,
     note="baseline: one such job" + (f"; the disk's own ratio for the same bytes (two dd vs one): {floor:.2f}" if floor else ""))

# The same two jobs with the outputs on a RAM filesystem: no disk, so this shows what the CPUs allow.
shm = "/dev/shm"
if os.path.isdir(shm) and shutil.disk_usage(shm).free > 4 * half_n:
    SW = os.path.join(shm, f"gamma-run-bench-{os.getpid()}")
    try:
        two_shm = job(os.path.join(SW, "jobs", "two.yaml"), f"  - path: {half}\n    name: h2\n  - path: {half}\n    name: h3\n")
        one_shm = job(os.path.join(SW, "jobs", "one.yaml"), f"  - path: {half}\n    name: h2\n")
        case("two-jobs-ram", "two γ jobs with --jobs 2, outputs in RAM (/dev/shm)", f"{B} run -q --force --jobs 2 {two_shm}",
             f"{B} run -q --force {one_shm}", 0, note="baseline: one such job in RAM; no disk, so this is the CPUs' own ratio")
    finally:
        shutil.rmtree(SW, ignore_errors=True)

PY = args.python
py = subprocess.run([PY, "-c", "import torch, transformers, safetensors, accelerate"], capture_output=True)
notebook_note = (f"the notebook and safe_open rows need torch, transformers, safetensors and accelerate (for device_map=cpu) in {PY} (or --python); skipped here"
                 if py.returncode else "")
if not py.returncode:
    nb = os.path.join(W, "nb.out")
    case("notebook", "the notebook: from_pretrained + lm_head + save_file", f"{PY} -c \"import torch;from transformers import AutoModelForCausalLM as A;from safetensors.torch import save_file as s;m=A.from_pretrained('{qwen3}',dtype=torch.bfloat16,device_map='cpu');s({{'W':m.lm_head.weight.data}},'{nb}')\"",
         f"{B} run -q --force {one}", 0, note="ratio: notebook / gamma-run")
    case("safe-open", "Python safe_open + get_tensor + save_file", f"{PY} -c \"from safetensors import safe_open;from safetensors.torch import save_file as s;f=safe_open('{shard_q}','pt');s({{'W':f.get_tensor('model.embed_tokens.weight')}},'{nb}')\"",
         f"{B} run -q --force {one}", 0, note="ratio: safe_open / gamma-run")

scaled = {r["id"]: r for r in rows if r["id"].startswith("scale-")}
lines = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} ({os.cpu_count()} cores, "
         f"{platform.machine()}), {args.runs} runs per case after one warm-up, medians{' — SMOKE (tiny shapes)' if args.smoke else ''}.", "",
         "| case | gamma-run median (min–max) | baseline median (min–max) | ratio | target | met | peak RSS | baseline |",
         "|---|---:|---:|---:|---:|:-:|---:|---|"]
for r in rows:
    if r["id"].startswith("scale-"):
        continue
    met = "—" if r["ok"] is None else ("yes" if r["ok"] else "**no**")
    tgt = f"≤ {r['target']}" if r["target"] else "—"
    rss = "—" if r["rss"] is None else f"{r['rss']:.1f} MiB"
    lines.append(f"| {r['what']} | {r['med']:.3f} s ({r['lo']:.3f}–{r['hi']:.3f}) | {r['bmed']:.3f} s ({r['blo']:.3f}–{r['bhi']:.3f}) | "
                 f"{r['ratio']:.2f} | {tgt} | {met} | {rss} | {r['note']} |")
if len(scaled) == 3 and all(r["med"] > 0 for r in scaled.values()):
    per = {k: scaled[f"scale-{k}"]["med"] / f for k, f in (("quarter", 0.25), ("half", 0.5), ("full", 1.0))}
    spread = max(per.values()) / min(per.values())
    lines.append(f"| scaling: γ at V/4, V/2, V | {scaled['scale-quarter']['med']:.3f} / {scaled['scale-half']['med']:.3f} / "
                 f"{scaled['scale-full']['med']:.3f} s | — | {spread:.2f} | ≤ 1.3 (time per byte, max/min) | "
                 f"{'yes' if spread <= 1.3 else '**no**'} | {max(s['rss'] for s in scaled.values()):.1f} MiB | linear in W's size |")
if notebook_note:
    lines += ["", f"Note: {notebook_note}."]
table = "\n".join(lines)
open(os.path.join(D, "results.md"), "w").write(table + "\n")
print(table)
