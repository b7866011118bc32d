#!/usr/bin/env python3
"""A minimal Hugging Face Hub for benchmarks: serves each checkpoint directory under DATA as repo `bench/<dir>` at
one fixed commit. The revision API, resolve URLs (small files 200 + ETag; *.safetensors 302 to /cdn/... with
X-Linked-Etag/X-Linked-Size), byte ranges (206) sent with sendfile, and /stats with the body bytes served.
Usage: hub_server.py DATA PORT"""
import hashlib, http.server, json, os, sys, threading

DATA, PORT = sys.argv[1], int(sys.argv[2])
COMMIT = "c0ffee" + "0" * 34
served = 0
lock = threading.Lock()


def sha256_of(path):
    side = os.path.join(DATA, ".sha256", path.replace("/", "__"))
    st = os.stat(path)
    key = f"{st.st_size}:{st.st_mtime_ns}"
    if os.path.exists(side):
        k, h = open(side).read().split()
        if k == key:
            return h
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    os.makedirs(os.path.dirname(side), exist_ok=True)
    open(side, "w").write(f"{key} {h.hexdigest()}")
    return h.hexdigest()


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.route(head=True)

    def do_GET(self):
        self.route(head=False)

    def reply(self, status, headers, body=b"", head=False):
        global served
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
            with lock:
                served += len(body)

    def route(self, head):
        path = self.path.split("?")[0]
        if path == "/stats":
            return self.reply(200, {"Content-Type": "application/json"}, json.dumps({"served": served}).encode(), head)
        if path.startswith("/api/models/"):
            repo = path[len("/api/models/"):].split("/revision/")[0]
            body = json.dumps({"id": repo, "sha": COMMIT, "siblings": []}).encode()
            return self.reply(200, {"Content-Type": "application/json"}, body, head)
        if "/resolve/" in path:
            repo, rest = path[1:].split("/resolve/", 1)
            _rev, name = rest.split("/", 1)
            local = os.path.join(DATA, repo.split("/", 1)[1], name)
            if not os.path.isfile(local):
                return self.reply(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, b"{}", head)
            if name.endswith(".safetensors"):
                return self.reply(302, {
                    "Location": f"/cdn/{repo.split('/', 1)[1]}/{name}",
                    "X-Linked-Etag": '"%s"' % sha256_of(local),
                    "X-Linked-Size": str(os.path.getsize(local)),
                    "X-Repo-Commit": COMMIT,
                }, b"", head)
            data = open(local, "rb").read()
            return self.reply(200, {"ETag": '"%s"' % git_blob_id(data), "X-Repo-Commit": COMMIT}, data, head)
        if path.startswith("/cdn/"):
            return self.send_range(os.path.join(DATA, path[len("/cdn/"):]), head)
        self.reply(404, {}, b"", head)

    def send_range(self, local, head):
        global served
        size = os.path.getsize(local)
        rng = self.headers.get("Range")
        a, b, status = 0, size - 1, 200
        if rng and rng.startswith("bytes="):
            x, y = rng[6:].split("-")
            a, b, status = int(x), min(int(y) if y else size - 1, size - 1), 206
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {a}-{b}/{size}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(b - a + 1))
        self.end_headers()
        if head:
            return
        with open(local, "rb") as f:
            self.wfile.flush()
            sent = self.connection.sendfile(f, a, b - a + 1)
        with lock:
            served += sent


http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
