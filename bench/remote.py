#!/usr/bin/env python3
"""The remote-store benchmark (issue 29): OUTPUTS outputs (W of a few MiB each, from a loopback hub) pushed to a
real S3 server on loopback (s3s-fs) and pulled into an empty workspace, against the same objects downloaded by a
parallel S3 client of the same concurrency (boto3, as the AWS CLI uses it; and the AWS CLI itself), alternately,
in this one invocation. A counting proxy between the clients and the server measures the bytes each moved and
the LIST requests `status --remote` makes.

Rows:
  - pull (`gamma-run pull -j C`): wall time against boto3 with C threads downloading the same objects, and
    against `aws s3 cp --recursive` (max_concurrent_requests C);
  - bytes the server sent for the pull, against the objects' total size;
  - push (`gamma-run push -j C`) of the same outputs: wall time (no baseline: informational);
  - `status --remote` of STATUS outputs: wall time and LIST requests.
gamma-run writes every pulled file durably (fsync, rename, directory fsync) and hashes it while writing; the
baselines only write the bytes.
Usage: bench/remote.py --bin target/release/gamma-run --s3s-fs PATH [--smoke] [--runs 5] [--concurrency 8]
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--s3s-fs", default=shutil.which("s3s-fs") or "s3s-fs")
ap.add_argument("--smoke", action="store_true", help="few, tiny outputs: checks the harness, not the speed")
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--concurrency", type=int, default=8)
ap.add_argument("--outputs", type=int, default=50)
ap.add_argument("--status-outputs", type=int, default=1000)
ap.add_argument("--vocab", type=int, default=16384)
ap.add_argument("--dim", type=int, default=128)
args = ap.parse_args()
args.bin = os.path.abspath(args.bin)
if args.smoke:
    args.outputs, args.status_outputs, args.vocab, args.dim, args.runs = 5, 40, 1024, 32, 1
HERE = os.path.dirname(os.path.abspath(__file__))
work = tempfile.mkdtemp(prefix="gamma-remote-bench-")
KEY, SECRET, BUCKET = "benchkey", "bench-secret-value", "bench"
COMMIT = "c0ffee" + "0" * 34  # hub_server.py's commit


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port):
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return
        except OSError:
            time.sleep(0.025)
    sys.exit(f"bench: nothing listens on {port}")


def checkpoint(dir, seed, vocab, dim):
    """A tied decoder with one embedding tensor (W), random bf16 bytes."""
    os.makedirs(dir, exist_ok=True)
    n = vocab * dim * 2
    header = {"model.embed_tokens.weight": {"dtype": "BF16", "shape": [vocab, dim], "data_offsets": [0, n]}}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(dir, "model.safetensors"), "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + seed.to_bytes(8, "little") + os.urandom(n - 8))
    config = {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "vocab_size": vocab, "hidden_size": dim,
              "num_hidden_layers": 1, "num_attention_heads": 1, "tie_word_embeddings": True}
    json.dump(config, open(os.path.join(dir, "config.json"), "w"))


class CountingProxy:
    """Forwards a port to s3s-fs; counts bytes the server sent and LIST requests."""

    def __init__(self, upstream):
        self.upstream, self.sent, self.lists, self.lock = upstream, 0, 0, threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def reset(self):
        with self.lock:
            self.sent, self.lists = 0, 0

    def serve(self):
        while True:
            c, _ = self.sock.accept()
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def pipe(self, a, b, down):
        try:
            while True:
                data = a.recv(1 << 20)
                if not data:
                    break
                if down:
                    with self.lock:
                        self.sent += len(data)
                elif b"list-type=2" in data:
                    with self.lock:
                        self.lists += data.count(b"list-type=2")
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def conn(self, c):
        s = socket.create_connection(("127.0.0.1", self.upstream))
        threading.Thread(target=self.pipe, args=(c, s, False), daemon=True).start()
        self.pipe(s, c, True)


# The hub: OUTPUTS models for the transfer rows, STATUS tiny ones for the status row.
data = os.path.join(work, "hub")
for i in range(args.outputs):
    checkpoint(os.path.join(data, f"m{i}"), i, args.vocab, args.dim)
for i in range(args.status_outputs):
    checkpoint(os.path.join(data, f"t{i}"), 10_000 + i, 64, 8)
hub_port = free_port()
hub = subprocess.Popen([sys.executable, os.path.join(HERE, "hub_server.py"), data, str(hub_port)])
s3_root = os.path.join(work, "s3")
os.makedirs(os.path.join(s3_root, BUCKET))
s3_port = free_port()
s3 = subprocess.Popen([args.s3s_fs, "--host", "127.0.0.1", "--port", str(s3_port), "--access-key", KEY,
                       "--secret-key", SECRET, s3_root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_port(hub_port)
wait_port(s3_port)
proxy = CountingProxy(s3_port)
endpoint = f"http://127.0.0.1:{proxy.port}"
env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{hub_port}", HF_HUB_CACHE=os.path.join(work, "hf-cache"),
           AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1",
           AWS_DEFAULT_REGION="us-east-1", HF_HUB_DISABLE_PROGRESS_BARS="1")
env.pop("HF_TOKEN", None)
C = args.concurrency


def workspace(name, prefix, count):
    ws = os.path.join(work, name)
    shutil.rmtree(ws, ignore_errors=True)
    os.makedirs(os.path.join(ws, "jobs"))
    jobs = "".join(f"  - model: bench/{prefix}{i}\n    revision: {COMMIT}\n" for i in range(count))
    open(os.path.join(ws, "jobs/j.yaml"), "w").write(f"version: 1\njobs:\n{jobs}")
    return ws


def gamma(ws, *a, check=True):
    t = time.perf_counter()
    p = subprocess.run([args.bin, *a], cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if check and p.returncode != 0:
        sys.exit(f"bench: gamma-run {' '.join(a)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return dt, p


remote = f"s3://{BUCKET}/team"
built = workspace("builder", "m", args.outputs)
gamma(built, "jobs/j.yaml", "--no-push", "-j", str(C))
push_times = []
for r in range(max(1, args.runs // 2)):
    # Each push to a fresh prefix, so every run sends every object.
    push_times.append(gamma(built, "push", "jobs/j.yaml", "-j", str(C), "--remote", f"s3://{BUCKET}/push{r}")[0])
gamma(built, "push", "jobs/j.yaml", "-j", str(C), "--remote", remote)
sizes = {}
for i in range(args.outputs):
    m = json.load(open(os.path.join(built, f"manifests/m{i}/gamma.json")))
    sizes[m["output"]["sha256"]] = m["output"]["size"]
total = sum(sizes.values())

import boto3  # noqa: E402  (only now: the harness above needs nothing beyond the standard library)
from botocore.config import Config  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                      region_name="us-east-1", config=Config(max_pool_connections=C))


def boto_pull():
    out = tempfile.mkdtemp(dir=work)
    t = time.perf_counter()
    with ThreadPoolExecutor(C) as pool:
        list(pool.map(lambda sha: client.download_file(BUCKET, f"team/objects/sha256/{sha}", os.path.join(out, sha)),
                      sizes))
    dt = time.perf_counter() - t
    shutil.rmtree(out)
    return dt


aws = shutil.which("aws")


def aws_pull():
    out = tempfile.mkdtemp(dir=work)
    cfg = os.path.join(work, "aws-config")
    open(cfg, "w").write(f"[default]\nregion = us-east-1\ns3 =\n  max_concurrent_requests = {C}\n")
    e = dict(env, AWS_CONFIG_FILE=cfg)
    t = time.perf_counter()
    subprocess.run([aws, "s3", "cp", "--recursive", "--only-show-errors", "--endpoint-url", endpoint,
                    f"s3://{BUCKET}/team/objects/", out], env=e, check=True)
    dt = time.perf_counter() - t
    shutil.rmtree(out)
    return dt


pulls, boto, awscli, moved = [], [], [], []
for r in range(args.runs + 1):  # the first round warms up, and is not counted
    ws = workspace(f"puller{r}", "m", args.outputs)
    proxy.reset()
    dt, p = gamma(ws, "pull", "jobs/j.yaml", "-j", str(C), "--remote", remote)
    assert f"{args.outputs} pulled" in p.stdout, p.stdout
    sent = proxy.sent
    b = boto_pull()
    a = aws_pull() if aws else None
    if r > 0:
        pulls.append(dt)
        boto.append(b)
        moved.append(sent)
        if a is not None:
            awscli.append(a)
    shutil.rmtree(ws)

status_ws = workspace("status", "t", args.status_outputs)
gamma(status_ws, "jobs/j.yaml", "-j", str(C), "--remote", f"s3://{BUCKET}/status")
status_times, lists = [], []
for r in range(args.runs + 1):
    proxy.reset()
    dt, p = gamma(status_ws, "status", "jobs/j.yaml", "--remote", f"s3://{BUCKET}/status", "--check")
    if r > 0:
        status_times.append(dt)
        lists.append(proxy.lists)

med = statistics.median
rng = lambda xs: f"{min(xs):.2f}–{max(xs):.2f}"
mib = total / (1 << 20)
rows = [
    ("case", "median s", "range", "baseline median s", "ratio"),
    (f"pull {args.outputs} outputs ({mib:.0f} MiB), -j {C}", f"{med(pulls):.2f}", rng(pulls),
     f"boto3, {C} threads: {med(boto):.2f}", f"{med(pulls) / med(boto):.2f}"),
]
if awscli:
    rows.append((f"pull, against the AWS CLI", f"{med(pulls):.2f}", rng(pulls),
                 f"aws s3 cp --recursive ({C} requests): {med(awscli):.2f}", f"{med(pulls) / med(awscli):.2f}"))
rows += [
    ("bytes the server sent for the pull", f"{med(moved)}", "", f"objects: {total}", f"{med(moved) / total:.4f}"),
    (f"push {args.outputs} outputs, -j {C}", f"{med(push_times):.2f}", rng(push_times), "-", "-"),
    (f"status --remote, {args.status_outputs} outputs", f"{med(status_times):.2f}", rng(status_times),
     f"LIST requests: {max(lists)}", "-"),
]
print(f"remote store bench: {args.runs} runs after a warm-up; s3s-fs on loopback behind a counting proxy")
for r in rows:
    print("| " + " | ".join(r) + " |")
    if r is rows[0]:
        print("|" + "---|" * len(r))
for proc in (hub, s3):
    proc.terminate()
shutil.rmtree(work, ignore_errors=True)
