"""Read gamma-run's outputs from Python: each manifest with json, its output's SHA-256 checked against the
manifest, and the tensor loaded with safetensors — torch where it is installed (it reads bf16 natively),
else numpy, which needs ml_dtypes for bf16.

    pip install safetensors numpy ml_dtypes          # or: pip install "gamma-run[read]"
    python examples/python/read_outputs.py [WORKSPACE]   # the directory holding manifests/ and tensors/

Exit 0 when every output matches its manifest, 1 otherwise.
"""
import hashlib
import json
import pathlib
import sys


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(path, name):
    """The tensor `name` of a safetensors file, as torch or numpy."""
    try:
        from safetensors.torch import load_file  # torch reads bf16 as torch.bfloat16
    except ImportError:
        import ml_dtypes  # noqa: F401 — registers numpy's bfloat16, which safetensors.numpy needs for BF16
        from safetensors.numpy import load_file
    return load_file(str(path))[name]


def main(root):
    bad = 0
    manifests = sorted((root / "manifests").glob("*/*.json"))
    for mpath in manifests:
        m = json.loads(mpath.read_text())
        out = root / m["output"]["path"]  # relative to the workspace (the parent of manifests/)
        ok = sha256(out) == m["output"]["sha256"]
        t = load(out, m["output"]["tensor"])
        shape_ok = list(t.shape) == m["output"]["shape"]
        bad += not (ok and shape_ok)
        src = m.get("source") or {}
        origin = src.get("repo") or src.get("path") or ", ".join(i["frame"] for i in m.get("inputs", []))
        print(f"{'ok' if ok and shape_ok else 'MISMATCH':9} {m['name']}/{m['frame']}  {m['output']['tensor']} "
              f"{m['output']['dtype']} {list(t.shape)}  sha256 {m['output']['sha256'][:12]}…  from {origin}")
    print(f"{len(manifests) - bad} of {len(manifests)} outputs match their manifests")
    return 1 if bad or not manifests else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
