#!/usr/bin/env python3
"""The checkpoint-grid benchmark (issue 14): a pythia-like repo of 154 revisions (step0, step1, step2, step4, …,
step512, step1000 … step143000) on a loopback hub that adds LATENCY to every request and caps each connection's
bandwidth, as a CDN does. Two runs of 43 consecutive branches serve byte-identical files (86 of 154, as in
pythia-2.8b); the other 68 branches each have their own weights.

Rows, each a ratio measured in this invocation:
  - the whole grid (`gamma-run JOBFILE`, default workers) vs curl fetching the same distinct byte ranges (W of
    each distinct file, and its header) with the same number of parallel connections (`curl --parallel`);
  - bytes the CDN served vs the distinct W bytes + headers;
  - a rerun of the fresh grid: wall time, and the CDN requests it made;
  - peak RSS of the grid run.
Usage: bench/grid.py --bin target/release/gamma-run [--smoke] [--latency-ms 20] [--mbps 40] [--connections 8]
"""
import argparse, hashlib, http.server, json, os, resource, shutil, socketserver, subprocess, sys, tempfile
import threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--smoke", action="store_true", help="tiny W: checks the harness, not the speed")
ap.add_argument("--latency-ms", type=float, default=20.0)
ap.add_argument("--mbps", type=float, default=40.0, help="per-connection cap, MB/s")
ap.add_argument("--connections", type=int, default=8)
ap.add_argument("--vocab", type=int, default=50304)
ap.add_argument("--dim", type=int, default=64)
args = ap.parse_args()
args.bin = os.path.abspath(args.bin)
if args.smoke:
    args.vocab, args.dim = 2048, 16

REPO = "bench/pythia-grid"
STEPS = ["step0"] + [f"step{2 ** i}" for i in range(10)] + [f"step{k * 1000}" for k in range(1, 144)]
assert len(STEPS) == 154
# Two runs of 43 identical branches; the rest distinct.
GROUP_A, GROUP_B = set(STEPS[20:63]), set(STEPS[80:123])

work = tempfile.mkdtemp(prefix="gamma-grid-bench-")
blobs = os.path.join(work, "blobs")
os.makedirs(blobs)


def safetensors_file(seed):
    v, d = args.vocab, args.dim
    n = v * d * 2
    header = {
        "__metadata__": {"format": "pt"},
        "embed_out.weight": {"dtype": "BF16", "shape": [v, d], "data_offsets": [0, n]},
        "gpt_neox.embed_in.weight": {"dtype": "BF16", "shape": [v, d], "data_offsets": [n, 2 * n]},
    }
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    # Random weights (gamma copies bf16 as it is); the seed's digest first, so equal keys never collide.
    body = hashlib.sha256(str(seed).encode()).digest() + os.urandom(2 * n - 32)
    return len(h).to_bytes(8, "little") + h + body, 8 + len(h), n


config = json.dumps({"model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"], "vocab_size": args.vocab,
                     "hidden_size": args.dim, "num_hidden_layers": 1, "num_attention_heads": 1,
                     "tie_word_embeddings": False}).encode()
config_etag = hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()

revisions = {}  # name -> (commit, sha256)
files = {}  # sha256 -> (path, header_end, w_len)
for i, step in enumerate(STEPS):
    key = "A" if step in GROUP_A else "B" if step in GROUP_B else step
    existing = [s for s, (_, _, _, k) in files.items() if k == key]
    if existing:
        sha = existing[0]
    else:
        data, hend, wlen = safetensors_file(key)
        sha = hashlib.sha256(data).hexdigest()
        path = os.path.join(blobs, sha)
        open(path, "wb").write(data)
        files[sha] = (path, hend, wlen, key)
    revisions[step] = ("%040x" % (i + 1), sha)
by_commit = {c: sha for c, sha in revisions.values()}
distinct_w = sum(w for _, _, w, _ in files.values())
headers_bytes = sum(h for _, h, _, _ in files.values())

stats = {"cdn_requests": 0, "cdn_bytes": 0, "requests": 0}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # As a CDN does: small responses are not held back by Nagle waiting for a delayed ACK (40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.route(True)

    def do_GET(self):
        self.route(False)

    def reply(self, status, headers, body=b"", head=False):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def route(self, head):
        time.sleep(args.latency_ms / 1000)
        with lock:
            stats["requests"] += 1
        path = self.path.split("?")[0]
        if path == f"/api/models/{REPO}/refs":
            body = {"branches": [{"name": s, "ref": f"refs/heads/{s}", "targetCommit": c}
                                 for s, (c, _) in revisions.items()], "tags": [], "converts": []}
            return self.reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode(), head)
        if path.startswith(f"/{REPO}/resolve/"):
            commit, name = path[len(f"/{REPO}/resolve/"):].split("/", 1)
            sha = by_commit.get(commit)
            if sha is None:
                return self.reply(404, {"X-Error-Code": "RevisionNotFound"}, b"{}", head)
            if name == "config.json":
                return self.reply(200, {"ETag": f'"{config_etag}"', "X-Repo-Commit": commit}, config, head)
            if name == "model.safetensors":
                return self.reply(302, {"Location": f"/cdn/{sha}", "X-Linked-Etag": f'"{sha}"',
                                        "X-Linked-Size": str(os.path.getsize(files[sha][0])),
                                        "X-Repo-Commit": commit}, b"", head)
            return self.reply(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, b"{}", head)
        if path.startswith("/cdn/"):
            return self.send_range(files[path[5:]][0], head)
        self.reply(404, {}, b"", head)

    def send_range(self, local, head):
        size = os.path.getsize(local)
        rng = self.headers.get("Range", "")
        a, b, status = 0, size - 1, 200
        if rng.startswith("bytes="):
            x, y = rng[6:].split("-")
            a, b, status = int(x), min(int(y) if y else size - 1, size - 1), 206
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {a}-{b}/{size}")
        self.send_header("Content-Length", str(b - a + 1))
        self.end_headers()
        with lock:
            stats["cdn_requests"] += 1
        if head:
            return
        # The per-connection cap: 64 KiB at a time, paced.
        piece, rate = 64 << 10, args.mbps * 1e6
        start, sent = time.perf_counter(), 0
        with open(local, "rb") as f:
            f.seek(a)
            left = b - a + 1
            while left > 0:
                chunk = f.read(min(piece, left))
                self.wfile.write(chunk)
                sent += len(chunk)
                left -= len(chunk)
                ahead = sent / rate - (time.perf_counter() - start)
                if ahead > 0:
                    time.sleep(ahead)
        with lock:
            stats["cdn_bytes"] += sent


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256


server = Server(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
endpoint = f"http://127.0.0.1:{server.server_address[1]}"


GNU_TIME = shutil.which("time", path="/usr/bin:/bin") or sys.exit(
    "bench: needs GNU time (/usr/bin/time, Debian package `time`) to measure the run's peak RSS")


def peak_rss_of(cmd, env, cwd):
    """Runs cmd, returning (wall, stdout, peak RSS in MiB). The RSS comes from GNU time, which forks the command
    from its own small process: wait4's ru_maxrss for a child of this one would include this Python process's
    RSS (the server's), inherited through fork, and read ~73 MiB for a command that used 20."""
    t = time.perf_counter()
    errf, rssf = tempfile.TemporaryFile(), tempfile.NamedTemporaryFile()
    p = subprocess.Popen([GNU_TIME, "-f", "%M", "-o", rssf.name] + cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                         stderr=errf)
    out = p.stdout.read()
    status = p.wait()
    errf.seek(0)
    err = errf.read()
    wall = time.perf_counter() - t
    if status != 0:
        sys.exit(f"bench: {cmd} failed ({status}):\n{err.decode()[-3000:]}")
    return wall, out.decode(), int(open(rssf.name).read().split()[-1]) / 1024


def reset():
    with lock:
        for k in stats:
            stats[k] = 0


ws = os.path.join(work, "ws")
os.makedirs(os.path.join(ws, "jobs"))
open(os.path.join(ws, "jobs", "grid.yaml"), "w").write(
    f"version: 1\njobs:\n  - model: {REPO}\n    name: pythia\n    revisions: {{match: \"step*\"}}\n")
env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HOME=os.path.join(work, "hf"),
           GAMMA_RUN_HTTP_CONNECTIONS=str(args.connections))
env.pop("HF_TOKEN", None)

# The baseline: curl fetching each distinct file's header and W, --parallel with the same connections, into files
# made durable (as gamma-run's are).
curl_dir = os.path.join(work, "curl")


def curl_run():
    shutil.rmtree(curl_dir, ignore_errors=True)
    os.makedirs(curl_dir)
    cfg = []
    for sha, (_, hend, wlen, _) in files.items():
        for (a, b, suffix) in [(0, hend - 1, "h"), (hend, hend + wlen - 1, "w")]:
            cfg.append(f'url = "{endpoint}/cdn/{sha}"\nrange = "{a}-{b}"\noutput = "{curl_dir}/{sha}.{suffix}"\n')
    path = os.path.join(work, "curl.cfg")
    open(path, "w").write("next\n".join(cfg))
    t = time.perf_counter()
    subprocess.run(["curl", "-sSf", "--no-progress-meter", "--parallel", "--parallel-max", str(args.connections), "-K", path], check=True)
    subprocess.run(["sync", "-f", curl_dir], check=True)
    return time.perf_counter() - t


def grid_run():
    for d in ["tensors", "manifests"]:
        shutil.rmtree(os.path.join(ws, d), ignore_errors=True)
    reset()
    wall, out, rss = peak_rss_of([args.bin, "jobs/grid.yaml"], env, ws)
    return wall, out, rss, dict(stats)


runs = 1 if args.smoke else 5
rows = []
g_walls, c_walls, rss_max, moved = [], [], 0, None
for i in range(runs):
    order = [grid_run, curl_run] if i % 2 == 0 else [curl_run, grid_run]
    for f in order:
        # Neither run inherits the other's writeback.
        subprocess.run(["sync"], check=True)
        if f is curl_run:
            c_walls.append(curl_run())
        else:
            wall, out, rss, st = grid_run()
            if "154 built" not in out:
                sys.exit(f"bench: the grid run did not build 154 outputs:\n{out[-2000:]}")
            g_walls.append(wall)
            rss_max = max(rss_max, rss)
            moved = st
reset()
rerun_wall, out, _ = peak_rss_of([args.bin, "jobs/grid.yaml"], env, ws)
rerun = dict(stats)
if "154 fresh" not in out:
    sys.exit(f"bench: the rerun was not all fresh:\n{out[-2000:]}")

med = lambda xs: sorted(xs)[len(xs) // 2]
g, c = med(g_walls), med(c_walls)
bound = distinct_w + headers_bytes
print(f"grid: 154 revisions, {len(files)} distinct files, W {args.vocab}x{args.dim} bf16 "
      f"({distinct_w / len(files) / 2**20:.1f} MiB each), latency {args.latency_ms:g} ms, "
      f"{args.mbps:g} MB/s per connection, {args.connections} connections, {runs} runs each")
print("| case | gamma-run | baseline | ratio | target | met |")
print("|---|---:|---:|---:|---:|:-:|")
print(f"| whole grid, wall (median; min–max) | {g:.2f} s ({min(g_walls):.2f}–{max(g_walls):.2f}) | "
      f"curl --parallel {c:.2f} s ({min(c_walls):.2f}–{max(c_walls):.2f}) | {g / c:.2f} | ≤ 1.3 | "
      f"{'yes' if g / c <= 1.3 else 'no'} |")
print(f"| bytes the CDN served | {moved['cdn_bytes']:,} | distinct W + headers {bound:,} | "
      f"{moved['cdn_bytes'] / bound:.3f} | ≤ 1.02 | {'yes' if moved['cdn_bytes'] <= 1.02 * bound else 'no'} |")
print(f"| requests (all / CDN) | {moved['requests']} / {moved['cdn_requests']} | curl: {2 * len(files)} CDN | | | |")
print(f"| rerun of the fresh grid | {rerun_wall:.3f} s, {rerun['cdn_requests']} CDN requests, "
      f"{rerun['requests']} in all | | | < 1 s, 0 CDN | "
      f"{'yes' if rerun_wall < 1 and rerun['cdn_requests'] == 0 else 'no'} |")
print(f"| peak RSS of the grid run | {rss_max:.1f} MiB | | | ≤ 64 MiB | {'yes' if rss_max <= 64 else 'no'} |")
shutil.rmtree(work, ignore_errors=True)
