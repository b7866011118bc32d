#!/usr/bin/env python3
"""Generate src/unembedding/table.json: for every model_type that AutoModelForCausalLM resolves, where W
(get_output_embeddings().weight of AutoModelForCausalLM.from_pretrained(dir, dtype=torch.bfloat16)) lives on disk.

Every field is derived from transformers itself: a tiny config per type (tools/tiny_configs.py), the model
instantiated, given distinct random weights, written with save_pretrained (safetensors) in both tie settings,
reloaded the notebook's way, and the on-disk tensors compared byte for byte with W and the input embedding.
Alternative layouts (in-memory names, base-model-prefix-less keys, old/new multimodal layouts) are kept only
where a reload from a checkpoint renamed that way gives W again.

Usage:  python tools/gen-w-table.py [--out src/unembedding/table.json] [--types a,b] [--jobs 2] [--work DIR]
Needs: torch, transformers, safetensors.
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TEXT_NAMES = ("decoder", "generator", "text_config", "text_encoder")
HIDDEN_NAMES = ("hidden_size", "n_embd", "d_model", "dim", "embed_dim", "n_embed", "hidden_dim", "emb_dim")


def _quiet():
    import warnings

    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


# ---------------------------------------------------------------- config helpers
def flat_ints(cfg, prefix=""):
    """dotted name -> int for every int attribute of cfg.to_dict() (sub-configs dotted)."""
    out = {}
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    for k, v in d.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            out[prefix + k] = v
        elif isinstance(v, dict) and k in (getattr(cfg, "sub_configs", {}) or {}):
            out.update(flat_ints(getattr(cfg, k), prefix + k + "."))
    return out


def get_dotted(cfg, name):
    cur = cfg
    for part in name.split("."):
        if cur is None:
            return None
        try:
            cur = getattr(cur, part)
        except Exception:  # noqa: BLE001
            return None
    return cur


def text_config_name(cfg):
    try:
        t = cfg.get_text_config()
    except Exception:  # noqa: BLE001
        return None
    if t is cfg:
        return None
    for n in TEXT_NAMES:
        if getattr(cfg, n, None) is t:
            return n
    return None


def aliases_for(cfg_cls, real):
    amap = getattr(cfg_cls, "attribute_map", {}) or {}
    return [a for a, r in amap.items() if r == real]


# ---------------------------------------------------------------- checkpoint rewrites
def rewrite_checkpoint(src_dir, dst_dir, rename):
    """Copy a checkpoint, renaming keys with rename(key) -> key; single model.safetensors out."""
    import tiny_configs as tc
    from safetensors.torch import save_file

    dst_dir = Path(dst_dir)
    if dst_dir.exists():
        shutil.rmtree(dst_dir)
    dst_dir.mkdir(parents=True)
    for f in Path(src_dir).iterdir():
        if f.suffix == ".json" and f.name != "model.safetensors.index.json":
            shutil.copy(f, dst_dir / f.name)
    stored = tc.load_stored(src_dir)
    new = {rename(k): v.contiguous() for k, v in stored.items()}
    save_file(new, str(dst_dir / "model.safetensors"), metadata={"format": "pt"})
    return new


def find_keys(stored, t):
    import tiny_configs as tc

    if t is None:
        return []
    t = t.detach()
    # exact bytes; or, where W loads in another dtype than stored (fp32-kept heads), exact after the cast
    return [k for k, v in stored.items()
            if tc.same_bytes(v, t) or (v.dtype != t.dtype and v.shape == t.shape and tc.same_bytes(v.to(t.dtype), t))]


def module_name(model, mod):
    for n, m in model.named_modules():
        if m is mod:
            return n
    return None


# ---------------------------------------------------------------- logits ops
def logits_ops(causal_cls, text_cfg_default):
    ops = []
    try:
        src = inspect.getsource(causal_cls.forward)
    except Exception:  # noqa: BLE001
        return ops, "forward source unavailable"
    try:
        init_src = inspect.getsource(causal_cls.__init__)
    except Exception:  # noqa: BLE001
        init_src = ""
    self_map = dict(re.findall(r"self\.(\w+)\s*=\s*config(?:\.get_text_config\(\))?\.(\w+)", init_src))
    lines = [ln.split("#")[0].strip() for ln in src.splitlines()]
    has_tanh = any("tanh" in ln and "logits" in ln for ln in lines)
    found = {}

    def op_before(rhs, pos):
        k = pos
        while k > 0 and (rhs[k - 1].isalnum() or rhs[k - 1] in "_.()"):
            k -= 1
        pre = rhs[:k].rstrip()
        if pre.endswith("*"):
            return "multiply"
        if pre.endswith("/"):
            return "divide"
        return None

    for ln in lines:
        m = re.match(r"^(logits|hidden_states)\s*=\s*(.+)$", ln)
        if not m:
            continue
        lhs, rhs = m.groups()
        if lhs == "hidden_states" and "lm_head" in rhs:
            continue
        for mm in re.finditer(r"self((?:\.\w+(?:\(\))?)+)", rhs):
            parts = [x for x in mm.group(1).split(".") if x]
            last = parts[-1]
            if parts[0] == "config" or last == "get_text_config()":
                n = last if parts[0] == "config" else None
            elif last in self_map:
                n = self_map[last]
            else:
                v = getattr(text_cfg_default, last, None)
                n = last if isinstance(v, (int, float)) and not isinstance(v, bool) else None
            if n is None or n in ("vocab_size", "hidden_size", "use_return_dict", "output_hidden_states"):
                continue
            found.setdefault(n, []).append((lhs, op_before(rhs, mm.start()), ln))
    for n, uses in found.items():
        kinds = {u[1] for u in uses}
        where = {u[0] for u in uses}
        default = getattr(text_cfg_default, n, None)
        if has_tanh and "divide" in kinds and "multiply" in kinds and "logits" in where:
            ops.append({"op": "softcap", "config": n, "default": default})
        else:
            for lhs, op, ln in uses:
                if op is None:
                    continue
                e = {"op": op, "config": n, "default": default}
                if lhs == "hidden_states":
                    e["applies_to"] = "hidden_states before the head (equivalent for a linear head)"
                e["source"] = ln
                ops.append(e)
    return ops, None


# ---------------------------------------------------------------- types the notebook cannot load
def notebook_cannot_load(mt, work):
    """For a type whose causal class takes one of the composite config's sub-configs that AutoModelForCausalLM does
    not swap in (musicgen's decoder: only text_config is swapped): why the notebook's load gives no W, each reason
    shown by transformers itself on tiny checkpoints.  None for every other type, or where the load works."""
    import torch

    import tiny_configs as tc
    from transformers import AutoModelForCausalLM
    from transformers.models.auto import modeling_auto as ma
    from transformers.models.auto.auto_factory import _get_model_class

    cfg_cls, causal, _, swap = tc.resolve(mt)
    base = tc.default_config(mt)
    sub = next((n for n, c in (getattr(base, "sub_configs", {}) or {}).items()
                if c is getattr(causal, "config_class", None) and c is not cfg_cls), None)
    if swap or sub is None:
        return None
    why = []
    # A checkpoint of this model_type, as the class that writes them (the composite model) saves it.
    cfg = tc.tiny_config(mt, 0)
    writer = next((_get_model_class(cfg, getattr(ma, name)) for name in dir(ma)
                   if name.startswith("MODEL_") and name.endswith("_MAPPING") and not name.endswith("NAMES_MAPPING")
                   and isinstance(getattr(ma, name + "_NAMES", None), dict) and mt in getattr(ma, name + "_NAMES")
                   and getattr(_get_model_class(cfg, getattr(ma, name)), "config_class", None) is cfg_cls), None)
    if writer is not None:
        d = Path(work) / f"{mt}-composite"
        writer._from_config(cfg).to(torch.bfloat16).save_pretrained(str(d))
        try:
            tc.load_reference(d)
            return None
        except Exception as e:  # noqa: BLE001
            why.append(f"a {mt} checkpoint ({writer.__name__}.save_pretrained): AutoModelForCausalLM hands the composite "
                       f"{cfg_cls.__name__} to {causal.__name__}, which needs its {sub} sub-config: "
                       f"{type(e).__name__}: {str(e)[:100]}")
        shutil.rmtree(d, ignore_errors=True)
    # A checkpoint of the causal class alone (config = the sub-config, its own model_type).
    sub_cfg = getattr(cfg, sub)
    m = causal._from_config(sub_cfg)
    d = Path(work) / f"{mt}-{sub}"
    m.to(torch.bfloat16).save_pretrained(str(d))
    try:
        tc.load_reference(d)
        return None
    except Exception as e:  # noqa: BLE001
        msg = re.sub(r"<class '(?:[\w.]*\.)?(\w+)'>", r"\1", str(e).splitlines()[0])
        why.append(f"a {causal.__name__} checkpoint (model_type {sub_cfg.model_type}): {type(e).__name__}: {msg[:110]}")
    shutil.rmtree(d, ignore_errors=True)
    head = m.get_output_embeddings()
    if not hasattr(head, "weight"):
        n = f" of {len(head)} heads" if hasattr(head, "__len__") else ""
        why.append(f"and {causal.__name__}.get_output_embeddings() is a {type(head).__name__}{n}, without .weight")
    return "AutoModelForCausalLM cannot load this type in transformers itself: " + "; ".join(why)


# ---------------------------------------------------------------- the per-type analysis
def analyze(mt, work):
    import torch

    import tiny_configs as tc
    from transformers import CONFIG_MAPPING, AutoConfig

    _quiet()
    cfg_cls, causal, save_cls, swap = tc.resolve(mt)
    refused = notebook_cannot_load(mt, work)
    if refused:
        raise RuntimeError(refused)
    entry = {"class": causal.__name__}
    notes = []
    if save_cls is not causal:
        notes.append(f"real checkpoints of this type are written by {save_cls.__name__}; AutoModelForCausalLM "
                     f"loads them into {causal.__name__} from config.get_text_config()")
    default_cfg = tc.default_config(mt)
    tname = text_config_name(default_cfg)
    entry["text_config"] = tname
    pre = (tname + ".") if tname else ""
    text_default = default_cfg.get_text_config() if tname else default_cfg

    cfg, strategy = tc.build_tiny(mt)
    if strategy:
        notes.append(f"tiny config strategy {strategy} (kept the class's layer counts)")
    text_cfg = cfg.get_text_config() if tname else cfg

    work = Path(work)
    runs = {}
    for variant, tie in (("default", None), ("flipped", "flip")):
        c = cfg
        if tie == "flip":
            eff = runs["default"]["tied"]
            try:
                c, _ = tc.build_tiny(mt, tie=not eff, strategies=(strategy,))
            except RuntimeError as e:
                # A class that validates the flag away (DBRX: "tie_word_embeddings is not supported") has one
                # layout only: the default run is the whole story.
                if "not supported" not in str(e):
                    raise
                notes.append(f"the config class refuses tie_word_embeddings={not eff} "
                             f"({str(e).splitlines()[-1].strip()[:120]}): only the default layout exists")
                break
        d = work / f"{mt}-{variant}"
        if d.exists():
            shutil.rmtree(d)
        tc.save_tiny_checkpoint(mt, c, d, seed=1234)
        m = tc.load_reference(d)
        stored = tc.load_stored(d)
        W = m.get_output_embeddings().weight
        E = tc.input_embeddings(m)
        tied = E is not None and (W is E or W.data_ptr() == E.data_ptr())
        runs[variant] = dict(dir=d, model=m, stored=stored, W=W, E=E, tied=tied, cfg=c,
                             w_keys=find_keys(stored, W), e_keys=find_keys(stored, E))
        if runs[variant]["w_keys"] and W.dtype != torch.bfloat16:
            cast = runs[variant]["w_keys"]
            if cast:
                fp32 = sorted(set(getattr(m, "_keep_in_fp32_modules_strict", None) or []) |
                              set(getattr(m, "_keep_in_fp32_modules", None) or []))
                entry["value_op"] = (f"dtype: W loads as {str(W.dtype).replace('torch.', '')} although dtype=bfloat16 "
                                     f"was asked ({variant} tie; _keep_in_fp32_modules(_strict)={fp32}); values are the "
                                     f"stored {str(stored[cast[0]].dtype).replace('torch.', '')} ones cast exactly, "
                                     f"and the notebook's W.safetensors is then {str(W.dtype).replace('torch.', '')}")

    # which run is untied / tied
    untied = next((r for r in runs.values() if not r["tied"]), None)
    tiedr = next((r for r in runs.values() if r["tied"]), None)
    if untied is None or tiedr is None:
        notes.append("the tie flag did not change tying (both runs " + ("tied" if untied is None else "untied") + ")")
    ref = untied or tiedr
    m = ref["model"]
    W = ref["W"]
    head_mod = module_name(m, m.get_output_embeddings())
    emb_mod = module_name(m, m.get_input_embeddings()) if ref["E"] is not None else None
    head_mem = f"{head_mod}.weight"
    emb_mem = f"{emb_mod}.weight" if emb_mod is not None else None

    # rows_from / value_op
    entry["rows_from"] = None
    entry.setdefault("value_op", None)
    ints = flat_ints(m.config)
    for r in runs.values():
        if not r["w_keys"]:
            Wr = r["W"]
            sliced = [k for k, v in r["stored"].items() if v.dim() == 2 and v.shape[1] == Wr.shape[1]
                      and v.shape[0] > Wr.shape[0] and tc.same_bytes(v[: Wr.shape[0]], Wr.detach())]
            if sliced:
                cands = [k for k, v in flat_ints(r["model"].config).items() if v == Wr.shape[0]]
                entry["rows_from"] = cands[0] if cands else str(Wr.shape[0])
                r["w_keys"] = sliced
                notes.append(f"{r['dir'].name}: W = first {Wr.shape[0]} rows of stored {sliced} "
                             f"({[tuple(r['stored'][k].shape) for k in sliced]}); candidates {cands}")
            else:
                entry["value_op"] = f"{r['dir'].name}: W matches no stored tensor (random init or transformed)"

    # shapes -> config names, disambiguated by perturbation
    rows, cols = W.shape

    def pick(value, axis, prefer):
        cands = [k for k, v in flat_ints(ref["cfg"]).items() if v == value]
        if tname:
            cands = [k for k in cands if k.startswith(pre)] or cands
        if not cands:
            notes.append(f"no config attribute equals W dim {axis} ({value})")
            return None, cands
        hits, unknown = [], []
        for k in cands:
            try:
                c2, _ = tc.build_tiny(mt, tie=None, strategies=(strategy,), extra={k: value + 8})
                cc = tc.load_config_for_causal(c2, swap)
                with torch.device("meta"):
                    mm = causal._from_config(cc)
                if mm.get_output_embeddings().weight.shape[axis] != value:
                    hits.append(k)
            except Exception:  # noqa: BLE001
                unknown.append(k)
        for group, label in ((hits, None), (unknown, "unverified (perturbed config did not build)")):
            best = [k for k in prefer if k in group] or group
            if best:
                if label:
                    notes.append(f"w_shape[{axis}] = {best[0]} {label}")
                return best[0], cands
        notes.append(f"no single config attribute sets W dim {axis} ({value}); equal-valued, none changes it: {cands}")
        return None, cands

    rname, rc = pick(rows, 0, [pre + "vocab_size"])
    cname, cc = pick(cols, 1, [pre + h for h in HIDDEN_NAMES])
    entry["w_shape"] = [rname, cname]
    # pick() perturbs with the class's default tie; where W's rows follow another size with the tie flipped
    # (marian: a tied head is the decoder embedding, decoder_vocab_size rows; an untied one has vocab_size rows),
    # say so.  The table's rule is the default tie's.
    if rname is not None and len(rc) > 1:
        try:
            flip = not runs["default"]["tied"]
            movers = []
            for k in rc:
                c2, _ = tc.build_tiny(mt, tie=flip, strategies=(strategy,), extra={k: rows + 8})
                with torch.device("meta"):
                    mm = causal._from_config(tc.load_config_for_causal(c2, swap))
                if mm.get_output_embeddings().weight.shape[0] != rows:
                    movers.append(k)
            if rname not in movers:
                notes.append(f"with tie_word_embeddings={flip} W's rows follow {movers or 'none of ' + str(rc)}, "
                             f"not {rname} (the rule here is the class default tie's)")
        except Exception as e:  # noqa: BLE001
            notes.append(f"rows with the tie flipped not checked ({type(e).__name__})")
    if len(rc) > 1 or len(cc) > 1:
        notes.append(f"w_shape candidates rows {rc} cols {cc}")

    def names_default(real_dotted):
        if real_dotted is None:
            return {"names": [], "default": None}
        base = real_dotted.split(".")[-1]
        sub = real_dotted[: -len(base) - 1] if "." in real_dotted else ""
        sub_cls = type(get_dotted(default_cfg, sub)) if sub else cfg_cls
        names = [real_dotted] + [(sub + "." if sub else "") + a for a in aliases_for(sub_cls, base)]
        return {"names": names, "default": get_dotted(default_cfg, real_dotted)}

    vreal = rname if rname and rname.split(".")[-1] != "unpadded_vocab_size" else pre + "vocab_size"
    entry["vocab_size"] = names_default(vreal)
    # A rows field that the class fills from vocab_size when config.json omits it (marian's decoder_vocab_size):
    # vocab_size is the fallback name, as transformers reads it.
    if vreal != pre + "vocab_size" and not pre and rname and rname.split(".")[-1] != "unpadded_vocab_size":
        try:
            import copy

            probe = cfg_cls(**{**copy.deepcopy(tc.BASE_KWARGS.get(mt, {})), "vocab_size": 1237})
            if get_dotted(probe, vreal) == 1237:
                entry["vocab_size"]["names"] += [n for n in names_default("vocab_size")["names"]
                                                 if n not in entry["vocab_size"]["names"]]
                notes.append(f"{vreal} absent from config.json: the class takes vocab_size")
        except Exception:  # noqa: BLE001
            pass
    hreal = None
    for h in HIDDEN_NAMES:
        real = (getattr(type(text_cfg), "attribute_map", {}) or {}).get(h, h)
        if get_dotted(cfg, pre + real) is not None:
            hreal = pre + real
            break
    entry["hidden_size"] = names_default(hreal)

    # tie flag: where it is read (experiment on the tied checkpoint with config.json variants)
    tie_default = runs["default"]["tied"]
    entry["tie"] = {"names": ["tie_word_embeddings"], "default": tie_default}
    if tiedr is not None and untied is not None:
        base_json = json.loads((tiedr["dir"] / "config.json").read_text())
        sources = [("tie_word_embeddings", None)] + ([(pre + "tie_word_embeddings", tname)] if tname else [])
        outcomes = {}
        import itertools

        for vals in itertools.product([None, True, False], repeat=len(sources)):
            j = json.loads(json.dumps(base_json))
            for (name, sub), v in zip(sources, vals):
                tgt = j[sub] if sub else j
                tgt.pop("tie_word_embeddings", None)
                if v is not None:
                    tgt["tie_word_embeddings"] = v
            d2 = work / f"{mt}-tieexp"
            if d2.exists():
                shutil.rmtree(d2)
            shutil.copytree(tiedr["dir"], d2)
            (d2 / "config.json").write_text(json.dumps(j))
            mm = tc.load_reference(d2)
            Wm = mm.get_output_embeddings().weight
            Em = tc.input_embeddings(mm)
            outcomes[vals] = bool(Em is not None and (Wm is Em or Wm.data_ptr() == Em.data_ptr()))
            del mm
            shutil.rmtree(d2)
        tdef = outcomes[tuple([None] * len(sources))]
        rule = None
        orders = [[0], [1], [0, 1], [1, 0]] if len(sources) == 2 else [[0]]
        for order in orders:
            ok = True
            for vals, res in outcomes.items():
                pred = tdef
                for i in order:
                    if vals[i] is not None:
                        pred = vals[i]
                        break
                if pred != res:
                    ok = False
                    break
            if ok:
                rule = [sources[i][0] for i in order]
                break
        if rule is None:
            rule = [s[0] for s in sources]
            notes.append("tie outcome table not explained by a priority order: "
                         + json.dumps({str(k): v for k, v in outcomes.items()}))
        entry["tie"] = {"names": rule, "default": tdef}
        if tname and len(rule) == 1 and rule[0] == sources[0][0]:
            notes.append(f"tie flag read from the top level only ({tname}.tie_word_embeddings ignored)")
    cls_default = get_dotted(default_cfg, "tie_word_embeddings")
    if cls_default is not None and bool(cls_default) != entry["tie"]["default"]:
        notes.append(f"config class default tie_word_embeddings={cls_default} but a config.json without "
                     f"the flag loads {'tied' if entry['tie']['default'] else 'untied'}")

    # head / embedding keys
    head_disk = untied["w_keys"] if untied else []
    emb_disk = (untied["e_keys"] if untied else []) or (tiedr["w_keys"] if tiedr else [])
    head_keys = list(head_disk)
    emb_keys = list(emb_disk)
    if tiedr is not None and tiedr["w_keys"] and emb_disk and tiedr["w_keys"][0] not in emb_disk:
        notes.append(f"tied checkpoint stores W (the tie source) as {tiedr['w_keys']}")
        emb_keys += [k for k in tiedr["w_keys"] if k not in emb_keys]
    confirmed_alt = {}
    unconfirmed = []
    bias = getattr(m.get_output_embeddings(), "bias", None)
    bias_key = None
    if bias is not None and untied is not None:
        bk = find_keys(untied["stored"], bias)
        bias_key = bk[0] if bk else f"{head_mod}.bias"

    def try_layout(label, rename, run):
        d2 = work / f"{mt}-{label}"
        new = rewrite_checkpoint(run["dir"], d2, rename)
        try:
            mm = tc.load_reference(d2)
        except Exception as e:  # noqa: BLE001
            shutil.rmtree(d2)
            return None, None, f"{label}: load failed {type(e).__name__}"
        Wm = mm.get_output_embeddings().weight
        Em = tc.input_embeddings(mm)
        wk = find_keys(new, Wm)
        ek = find_keys(new, Em)
        del mm
        shutil.rmtree(d2)
        return wk, ek, None

    layouts = []
    hd = head_disk[0] if head_disk else None
    ed = emb_disk[0] if emb_disk else None
    if (hd and hd != head_mem) or (ed and emb_mem and ed != emb_mem):
        ren = {}
        if hd and hd != head_mem:
            ren[hd] = head_mem
        if ed and emb_mem and ed != emb_mem:
            ren[ed] = emb_mem
        layouts.append(("inmem", lambda k, ren=ren: ren.get(k, k)))
    prefix = getattr(m, "base_model_prefix", "") or ""
    if prefix and any(k.startswith(prefix + ".") for k in ref["stored"]):
        layouts.append(("noprefix", lambda k: k[len(prefix) + 1:] if k.startswith(prefix + ".") else k))
    if any(k.startswith("model.language_model.") for k in ref["stored"]):
        def to_old(k):
            for a, b in (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                         ("model.vision_tower.", "vision_tower."), ("model.multi_modal_projector.", "multi_modal_projector.")):
                if k.startswith(a):
                    return b + k[len(a):]
            return k
        layouts.append(("oldmm", to_old))
    if any(k.startswith("language_model.") for k in ref["stored"]):
        def to_new(k):
            for a, b in (("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
                         ("vision_tower.", "model.vision_tower."), ("multi_modal_projector.", "model.multi_modal_projector.")):
                if k.startswith(a):
                    return b + k[len(a):]
            return k
        layouts.append(("newmm", to_new))
    for label, rename in layouts:
        for run in (r for r in (untied, tiedr) if r is not None):
            wk, ek, err = try_layout(label, rename, run)
            if err:
                unconfirmed.append(err)
                continue
            tag = "untied" if run is untied else "tied"
            if run is untied:
                if wk:
                    for k in wk:
                        if k not in head_keys:
                            head_keys.append(k)
                else:
                    unconfirmed.append(f"{label}: head under {rename(hd) if hd else None} not loaded")
            if ek:
                for k in ek:
                    if k not in emb_keys:
                        emb_keys.append(k)
            elif emb_mem:
                unconfirmed.append(f"{label}/{tag}: embedding under {rename(ed) if ed else None} not loaded")
            confirmed_alt.setdefault(label, []).append(tag)
    if head_mem not in head_keys:
        unconfirmed.append(f"in-memory head name {head_mem} not confirmed")
    entry["head"] = {"module": head_mod, "keys": head_keys, "bias_key": bias_key}
    entry["embedding"] = ({"module": emb_mod, "keys": emb_keys} if emb_mod is not None else None)
    tf = None
    if tiedr is not None:
        tf = tiedr["model"].all_tied_weights_keys.get(head_mem)
    entry["tied_from"] = tf

    ops, err = logits_ops(causal, text_default)
    if bias is not None:
        ops.append({"op": "add_bias", "config": None, "default": None})
    if err:
        notes.append(err)
    entry["logits"] = ops
    entry["confirmed"] = bool(untied and untied["w_keys"] and (tiedr is None or tiedr["w_keys"]))
    entry["round_trip"] = {v: {"tied": r["tied"], "w_keys": r["w_keys"], "e_keys": r["e_keys"],
                               "w_shape": list(r["W"].shape)} for v, r in runs.items()}
    if unconfirmed:
        notes.append("; ".join(unconfirmed))
    entry["notes"] = " | ".join(notes) if notes else None
    for r in runs.values():
        shutil.rmtree(r["dir"], ignore_errors=True)
    return entry


def _child(args):
    mt, work, timeout = args
    signal.alarm(timeout)
    try:
        w = Path(work) / mt
        w.mkdir(parents=True, exist_ok=True)
        e = analyze(mt, w)
        shutil.rmtree(w, ignore_errors=True)
        return mt, e, None
    except BaseException as e:  # noqa: BLE001
        tb = traceback.format_exc(limit=3)
        return mt, None, f"{type(e).__name__}: {str(e)[:900]} [{tb.splitlines()[-3].strip() if len(tb.splitlines()) > 3 else ''}]"


class _Timeout(Exception):
    pass


def _alarm(*_):
    raise _Timeout("timed out")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE.parent / "src" / "unembedding" / "table.json"))
    ap.add_argument("--types", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=420)
    ap.add_argument("--work", default=None)
    ap.add_argument("--merge", action="store_true", help="update the existing table instead of replacing it")
    a = ap.parse_args()
    _quiet()
    import torch
    import transformers
    from transformers.models.auto import modeling_auto as ma

    all_types = list(ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    types = a.types.split(",") if a.types else all_types
    work = Path(a.work or tempfile.mkdtemp(prefix="gen-w-table-"))
    signal.signal(signal.SIGALRM, _alarm)
    ctx = mp.get_context("fork")
    table = {"transformers_version": transformers.__version__, "torch_version": torch.__version__.split("+")[0],
             "generated_by": "tools/gen-w-table.py", "types": {}, "failed": {}}
    out = Path(a.out)
    if a.merge and out.exists():
        old = json.loads(out.read_text())
        table["types"].update(old.get("types", {}))
        table["failed"].update(old.get("failed", {}))
    with ctx.Pool(a.jobs, maxtasksperchild=1) as pool:
        for mt, e, err in pool.imap_unordered(_child, [(t, str(work), a.timeout) for t in types]):
            if e is not None:
                table["types"][mt] = e
                table["failed"].pop(mt, None)
                print(f"ok   {mt}: W={e['head']['keys']} E={(e['embedding'] or {}).get('keys')} tie={e['tie']}",
                      flush=True)
            else:
                table["failed"][mt] = err
                table["types"].pop(mt, None)
                print(f"FAIL {mt}: {err[:300]}", flush=True)
    mm_types = [t for t in ma.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES if t in all_types]
    table["multimodal_types"] = {
        "about": "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES entries that AutoModelForCausalLM also resolves "
                 "(all are keys of MODEL_FOR_CAUSAL_LM_MAPPING_NAMES; image-text types outside it are not "
                 "loadable by AutoModelForCausalLM).",
        "types": mm_types,
    }
    table["types"] = dict(sorted(table["types"].items()))
    table["failed"] = dict(sorted(table["failed"].items()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    print(f"wrote {out}: {len(table['types'])} types, {len(table['failed'])} failed")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
