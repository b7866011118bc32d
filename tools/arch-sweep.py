#!/usr/bin/env python3
"""Write tiny checkpoints of every model_type in src/unembedding/table.json, and what the notebook's code gives.

Usage:  python tools/arch-sweep.py OUTDIR [--types a,b,c] [--jobs 2] [--table src/unembedding/table.json]

For each type: OUTDIR/<type>-default (the config class's tying) and OUTDIR/<type>-flipped (tie flipped), written
by transformers' save_pretrained in bf16 from a deterministic random initialisation (some sharded with an
index), and OUTDIR/expected.json in the format of shared/fixtures/arch-zoo/expected.json:
  model_type, variant, config_tie_word_embeddings, tied (what the load did), stored_dtype, sharded, files,
  w_keys, w_shape, w_sha256 (raw bytes of W), output_sha256 / output_size (the file written by
  save_file({'W': W.contiguous()})), head_notes, and e_keys, e_shape, e_sha256, e_output_sha256, e_output_size
  for the input embedding (save_file({'E': E.contiguous()})).
W = AutoModelForCausalLM.from_pretrained(dir, dtype=torch.bfloat16).get_output_embeddings().weight.
Types that cannot be built are listed under "skipped".
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import multiprocessing as mp
import shutil
import signal
import sys
import traceback
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _quiet():
    import warnings

    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def sha256_file(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def raw_sha256(t):
    import torch

    t = t.detach().contiguous().cpu()
    return hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()


def dtype_name(t):
    import torch

    return {torch.bfloat16: "bf16", torch.float16: "f16", torch.float32: "f32"}.get(t.dtype, str(t.dtype))


def head_notes(entry, causal_cls, cfg):
    notes = {}
    if entry.get("head", {}).get("bias_key"):
        notes["bias_keys"] = [entry["head"]["bias_key"]]
    ops = [o for o in entry.get("logits", []) if o.get("config")]
    if ops:
        tcfg = cfg.get_text_config()
        notes["logit_config"] = {o["config"]: getattr(tcfg, o["config"], getattr(cfg, o["config"], None)) for o in ops}
        try:
            src = inspect.getsource(causal_cls.forward)
        except Exception:  # noqa: BLE001
            src = ""
        lines = []
        for ln in src.splitlines():
            s = ln.strip()
            if s.startswith("#") or not (s.startswith("logits") or s.startswith("hidden_states")):
                continue
            if any(o["config"] in s for o in ops) or ("tanh" in s and any(o["op"] == "softcap" for o in ops)):
                lines.append(s)
        notes["forward"] = lines
    return notes


def sweep_one(mt, entry, outdir):
    import torch
    from safetensors.torch import save_file

    import tiny_configs as tc

    _quiet()
    _, causal, _, _ = tc.resolve(mt)
    cfg0, strategy = tc.build_tiny(mt)
    out = {}
    tied_default = None
    for variant in ("default", "flipped"):
        if variant == "default":
            cfg = cfg0
        else:
            cfg, _ = tc.build_tiny(mt, tie=not tied_default, strategies=(strategy,))
        d = Path(outdir) / f"{mt}-{variant}"
        if d.exists():
            shutil.rmtree(d)
        seed = zlib.crc32(f"{mt}-{variant}".encode())
        shard = zlib.crc32(f"shard:{mt}-{variant}".encode()) % 2 == 0
        tc.save_tiny_checkpoint(mt, cfg, d, seed=seed, max_shard_size=(150_000 if shard else None))
        torch.manual_seed(0)
        model = tc.load_reference(d)
        W = model.get_output_embeddings().weight
        E = tc.input_embeddings(model)
        tied = bool(E is not None and (W is E or W.data_ptr() == E.data_ptr()))
        if variant == "default":
            tied_default = tied
        stored = tc.load_stored(d)
        files = sorted(p.name for p in d.glob("*.safetensors"))
        w_keys = [k for k, v in stored.items() if tc.same_bytes(v, W.detach())]
        extra = {}
        if not w_keys:  # W kept in another dtype (cast exactly), or a row slice of the stored tensor
            w_keys = [k for k, v in stored.items() if v.shape == W.shape and tc.same_bytes(v.to(W.dtype), W.detach())]
            if w_keys:
                extra["note"] = f"W loads as {dtype_name(W)}; stored {dtype_name(stored[w_keys[0]])} cast exactly"
            else:
                w_keys = [k for k, v in stored.items() if v.dim() == 2 and v.shape[1:] == W.shape[1:]
                          and v.shape[0] > W.shape[0] and tc.same_bytes(v[: W.shape[0]], W.detach())]
                if w_keys:
                    extra["rows_from"] = W.shape[0]
                    extra["note"] = f"W = the first {W.shape[0]} rows of {w_keys[0]} {list(stored[w_keys[0]].shape)}"
                else:
                    extra["expect_error"] = True
                    extra["note"] = "W matches no stored tensor: the reference W is a random initialisation"
        e_keys = [k for k, v in stored.items() if E is not None and tc.same_bytes(v, E.detach())]
        cj = json.loads((d / "config.json").read_text())
        cfg_tie = cj.get("tie_word_embeddings")
        if cfg_tie is None and isinstance(cj.get("text_config"), dict):
            cfg_tie = cj["text_config"].get("tie_word_embeddings")
        wdir = d.parent / f".{d.name}.out"
        wdir.mkdir(exist_ok=True)
        save_file({"W": W.contiguous()}, str(wdir / "W.safetensors"))
        rec = {
            "model_type": mt,
            "variant": f"{variant} tie",
            "config_tie_word_embeddings": cfg_tie,
            "tied": tied,
            "stored_dtype": dtype_name(next(iter(stored.values()))),
            "sharded": (d / "model.safetensors.index.json").exists(),
            "files": files,
            "w_keys": w_keys,
            "w_shape": list(W.shape),
            "w_dtype": dtype_name(W),
            "w_sha256": raw_sha256(W),
            "output_sha256": sha256_file(wdir / "W.safetensors"),
            "output_size": (wdir / "W.safetensors").stat().st_size,
            "head_notes": head_notes(entry, causal, model.config),
        }
        if E is not None:
            save_file({"E": E.contiguous()}, str(wdir / "E.safetensors"))
            rec.update({
                "e_keys": e_keys,
                "e_shape": list(E.shape),
                "e_sha256": raw_sha256(E),
                "e_output_sha256": sha256_file(wdir / "E.safetensors"),
                "e_output_size": (wdir / "E.safetensors").stat().st_size,
            })
        else:
            rec.update({"e_keys": [], "e_shape": None, "e_sha256": None, "e_output_sha256": None,
                        "e_output_size": None})
        shutil.rmtree(wdir)
        rec.update(extra)
        out[f"{mt}-{variant}"] = rec
        del model
    return out


class _Timeout(Exception):
    pass


def _alarm(*_):
    raise _Timeout("timed out")


def _child(args):
    mt, entry, outdir, timeout = args
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        return mt, sweep_one(mt, entry, outdir), None
    except BaseException as e:  # noqa: BLE001
        for v in ("default", "flipped"):
            shutil.rmtree(Path(outdir) / f"{mt}-{v}", ignore_errors=True)
        return mt, None, f"{type(e).__name__}: {str(e)[:400]} {traceback.format_exc(limit=2).splitlines()[-2:]}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--types", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--table", default=str(HERE.parent / "src" / "unembedding" / "table.json"))
    a = ap.parse_args()
    _quiet()
    import torch
    import transformers

    table = json.loads(Path(a.table).read_text())
    types = a.types.split(",") if a.types else sorted(table["types"])
    outdir = Path(a.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    fixtures, skipped = {}, {}
    for t in types:
        if t not in table["types"]:
            skipped[t] = "not in table.json: " + str(table.get("failed", {}).get(t, "unknown type"))[:300]
    if not a.types:
        for t, why in table.get("failed", {}).items():
            skipped[t] = "failed in table.json: " + str(why)[:300]
    todo = [(t, table["types"][t], str(outdir), a.timeout) for t in types if t in table["types"]]
    ctx = mp.get_context("fork")
    with ctx.Pool(a.jobs, maxtasksperchild=1) as pool:
        for mt, recs, err in pool.imap_unordered(_child, todo):
            if recs is None:
                skipped[mt] = err
                print(f"skip {mt}: {err[:200]}", flush=True)
            else:
                fixtures.update(recs)
                print(f"ok   {mt}", flush=True)
    doc = {
        "about": "Tiny checkpoints written by tools/arch-sweep.py with transformers save_pretrained (bf16, some "
                 "sharded) from deterministic random initialisations; W = AutoModelForCausalLM.from_pretrained(dir, "
                 "dtype=torch.bfloat16).get_output_embeddings().weight, output_sha256 = SHA-256 of "
                 "save_file({'W': W.contiguous()}); e_* the same for get_input_embeddings().weight as {'E': E}.",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "fixtures": dict(sorted(fixtures.items())),
        "skipped": dict(sorted(skipped.items())),
    }
    (outdir / "expected.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {outdir / 'expected.json'}: {len(fixtures)} checkpoints, {len(skipped)} skipped")


if __name__ == "__main__":
    main()
