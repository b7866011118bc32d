#!/usr/bin/env python3
"""Write the small legacy-PyTorch (`pytorch_model.bin`) checkpoints the tests use, with the notebook's output.

Usage: python tools/make-bin-fixtures.py tests/data/torch-bin

Each fixture is a config written by transformers and the state dict written with torch.save, in the layout
transformers 4.x's save_pretrained(safe_serialization=False) wrote (transformers 5 writes safetensors only):
`pytorch_model.bin`, or `pytorch_model-0000N-of-0000M.bin` shards with `pytorch_model.bin.index.json`; and expected.json records, per fixture, the SHA-256 of
the file the notebook's code writes: save_file({"W": AutoModelForCausalLM.from_pretrained(dir,
dtype=torch.bfloat16).get_output_embeddings().weight}). Hostile files (an os.system pickle, an unknown global, a
truncated zip, an entry pointing past the end, a huge declared size) are written beside them.
"""
import hashlib, json, shutil, sys, zipfile, io, os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig
from safetensors.torch import save_file

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
expected = {"about": __doc__.strip().splitlines()[0], "torch": torch.__version__, "fixtures": {}, "hostile": {}}


def cfg(vocab, hidden, tie, dtype):
    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tie, dtype=dtype)


def reference(d, name):
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16)
    W = m.get_output_embeddings().weight.data.contiguous()
    f = out / f".{name}.W.safetensors"
    save_file({"W": W}, f)
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    f.unlink()
    return sha, list(W.shape)


def save_bin(m, d, shard_bytes=None):
    d.mkdir(parents=True, exist_ok=True)
    m.config.save_pretrained(d)
    sd = m.state_dict()
    if not shard_bytes:
        torch.save(sd, d / "pytorch_model.bin")
        return
    # Shards in key order, each up to shard_bytes, as transformers 4.x's shard_checkpoint did.
    shards, cur, size = [], {}, 0
    for k, t in sd.items():
        n = t.numel() * t.element_size()
        if cur and size + n > shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = t
        size += n
    shards.append(cur)
    weight_map, total = {}, 0
    for i, sh in enumerate(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        torch.save(sh, d / name)
        for k, t in sh.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
    (d / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")


def fixture(name, vocab, hidden, tie, dtype, shard=None, seed=0):
    torch.manual_seed(seed)
    d = out / name
    shutil.rmtree(d, ignore_errors=True)
    m = AutoModelForCausalLM.from_config(cfg(vocab, hidden, tie, dtype)).to(dtype)
    save_bin(m, d, shard)
    sha, shape = reference(d, name)
    files = sorted(p.name for p in d.iterdir())
    expected["fixtures"][name] = {"tied": tie, "dtype": str(dtype), "files": files, "output_sha256": sha, "w_shape": shape}


fixture("llama-untied-bf16", 96, 16, False, torch.bfloat16, seed=1)
fixture("llama-tied-bf16", 96, 16, True, torch.bfloat16, seed=2)
fixture("llama-untied-f32", 64, 16, False, torch.float32, seed=3)
fixture("llama-untied-f16", 64, 16, False, torch.float16, seed=4)
# Sharded, W large enough that bytes moved by range are dominated by W: 4096 × 64 bf16 = 512 KiB.
fixture("llama-sharded-bf16", 4096, 64, False, torch.bfloat16, shard=300_000, seed=5)

# A view into a larger storage: lm_head.weight is rows 8.. of a bigger tensor, saved as torch.save does.
torch.manual_seed(6)
d = out / "llama-view-bf16"
shutil.rmtree(d, ignore_errors=True)
m = AutoModelForCausalLM.from_config(cfg(64, 16, False, torch.bfloat16)).to(torch.bfloat16)
save_bin(m, d)
sd = torch.load(d / "pytorch_model.bin", weights_only=True)
big = torch.randn(80, 16).to(torch.bfloat16)
sd["lm_head.weight"] = big[8:72]
torch.save(sd, d / "pytorch_model.bin")
sha, shape = reference(d, "llama-view-bf16")
expected["fixtures"]["llama-view-bf16"] = {"tied": False, "dtype": "torch.bfloat16", "files": sorted(p.name for p in d.iterdir()), "output_sha256": sha, "w_shape": shape, "storage_offset": 8 * 16}

# The legacy (pre-1.6, non-zip) format, which torch.load (and so transformers) still reads.
torch.manual_seed(7)
d = out / "llama-legacy-bf16"
shutil.rmtree(d, ignore_errors=True)
m = AutoModelForCausalLM.from_config(cfg(64, 16, False, torch.bfloat16)).to(torch.bfloat16)
d.mkdir(parents=True)
m.config.save_pretrained(d)
torch.save(m.state_dict(), d / "pytorch_model.bin", _use_new_zipfile_serialization=False)
sha, shape = reference(d, "llama-legacy-bf16")
expected["fixtures"]["llama-legacy-bf16"] = {"tied": False, "dtype": "torch.bfloat16", "files": sorted(p.name for p in d.iterdir()), "output_sha256": sha, "w_shape": shape, "legacy": True}

# A non-contiguous view (a transposed tensor): refused, not guessed.
d = out / "llama-strided-bf16"
shutil.rmtree(d, ignore_errors=True)
shutil.copytree(out / "llama-view-bf16", d)
sd = torch.load(d / "pytorch_model.bin", weights_only=True)
sd["lm_head.weight"] = torch.randn(16, 64).to(torch.bfloat16).t()
torch.save(sd, d / "pytorch_model.bin")
expected["hostile"]["llama-strided-bf16"] = "non-contiguous"

# Hostile: each is a copy of llama-untied-bf16 with pytorch_model.bin replaced.
base = out / "llama-untied-bf16"
good = (base / "pytorch_model.bin").read_bytes()


def hostile(name, data, why):
    d = out / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    shutil.copy(base / "config.json", d / "config.json")
    (d / "pytorch_model.bin").write_bytes(data)
    expected["hostile"][name] = why


def rezip(replace, deflate=lambda name: False):
    src = zipfile.ZipFile(io.BytesIO(good))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            data = src.read(info.filename)
            data = replace(info.filename, data)
            method = zipfile.ZIP_DEFLATED if deflate(info.filename) else zipfile.ZIP_STORED
            z.writestr(info.filename, data, compress_type=method)
    return buf.getvalue()


system_pickle = b"\x80\x02cos\nsystem\nq\x00X\x0b\x00\x00\x00touch pwnedq\x01\x85q\x02Rq\x03."
hostile("hostile-os-system", rezip(lambda n, d: system_pickle if n.endswith("data.pkl") else d), "os.system")
eval_pickle = b"\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1q\x01\x85q\x02Rq\x03."
hostile("hostile-eval", rezip(lambda n, d: eval_pickle if n.endswith("data.pkl") else d), "builtins.eval")
unknown = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00)Rq\x01."
hostile("hostile-unknown-global", rezip(lambda n, d: unknown if n.endswith("data.pkl") else d), "numpy.core.multiarray._reconstruct")
hostile("hostile-truncated", good[: len(good) // 2], "truncated")
# The storage entry's local header offset points past the end: patch the central directory.
z = zipfile.ZipFile(io.BytesIO(good))
names = [i.filename for i in z.infolist()]
bad = bytearray(good)
cd = bad.rfind(b"PK\x01\x02" + bytes(good[bad.rfind(b"PK\x01\x02") + 4 : bad.rfind(b"PK\x01\x02") + 6]))
# last central directory header: set its local header offset (at +42) to a huge value
bad[cd + 42 : cd + 46] = (0x7FFFFFF0).to_bytes(4, "little")
hostile("hostile-entry-past-end", bytes(bad), "past the end")
# A huge declared size in the pickle: shape 2^40 × 2^20 of a small storage.
huge = good  # built from the real pickle with the size tuple patched is fiddly; use a crafted pickle instead
huge_pickle = (b"\x80\x02}q\x00X\x0e\x00\x00\x00lm_head.weightq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nBFloat16Storage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06M\x00\x04tq\x07QK\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x04\x00\x00\x10\x00\x86q\x08\x8a\x04\x00\x00\x10\x00K\x01\x86q\tccollections\nOrderedDict\nq\n)Rq\x0bJ\x00\x00\x00\x00\x89tq\x0cRq\rs.")
hostile("hostile-huge-size", rezip(lambda n, d: huge_pickle if n.endswith("data.pkl") else d), "declares a size")

# The tensors' entries deflated (the pickle stays stored, so it still parses): read as raw bf16 they would be a
# wrong W; they must be refused as compressed.
hostile("hostile-deflated", rezip(lambda n, d: d, deflate=lambda n: "/data/" in n), "compressed")

(out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print(json.dumps(expected, indent=1))
