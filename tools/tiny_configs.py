"""Tiny configs for every model_type that AutoModelForCausalLM resolves.

Shared by tools/gen-w-table.py and tools/arch-sweep.py.  Needs transformers (5.x) and torch.

The shrinking is generic: every known width/depth/expert-count attribute of the config (and of its
sub-configs: text_config, vision_config, ...) is set to a small value, the vocabulary to a per-type
distinct value, token ids are clamped into the vocabulary.  A few types need per-type overrides
(PER_TYPE below).  Several strategies are tried in order (full shrink, then keeping the class's layer
counts / layer patterns) and the first whose model builds, with at most MAX_PARAMS parameters, wins.
"""

from __future__ import annotations

import copy
import zlib

import torch

MAX_PARAMS = 40_000_000

# Width-like attributes -> tiny value.  Applied to the top-level config and to every sub-config.
WIDTHS = {
    "hidden_size": 64, "n_embd": 64, "d_model": 64, "dim": 64, "embed_dim": 64, "n_embed": 64,
    "hidden_dim": 64, "emb_dim": 64, "embedding_size": 64, "word_embed_proj_dim": 64,
    "input_embedding_size": 64, "output_embedding_size": 64,
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "num_heads": 4, "attention_heads": 4,
    "decoder_attention_heads": 4, "encoder_attention_heads": 4, "num_decoder_attention_heads": 4,
    "num_encoder_attention_heads": 4,
    "num_key_value_heads": 2, "num_kv_heads": 2, "multi_query_group_num": 2, "num_query_groups": 2,
    "head_dim": 16, "attention_head_dim": 16, "dim_head": 16, "d_head": 16, "kv_channels": 16,
    "attention_head_size": 16, "qk_head_dim": 24, "v_head_dim": 16, "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 16, "kv_lora_rank": 32, "q_lora_rank": 32, "index_head_dim": 16, "index_n_heads": 2,
    "intermediate_size": 128, "n_inner": 128, "d_ff": 128, "ffn_dim": 128, "decoder_ffn_dim": 128,
    "encoder_ffn_dim": 128, "dim_ff": 128, "dff": 128, "d_inner": 128, "ffn_hidden_size": 128,
    "feed_forward_size": 128, "intermediate_size_mlp": 128, "dense_intermediate_size": 128,
    "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32, "shared_intermediate_size": 32,
    "expert_ffn_hidden_size": 32, "moe_shared_expert_intermediate_size": 32,
    "shared_experts_intermediate_size": 32,
    "num_experts": 4, "n_routed_experts": 4, "num_local_experts": 4, "moe_num_experts": 4,
    "num_experts_per_tok": 2, "num_experts_per_token": 2, "moe_topk": 2, "moe_k": 2,
    "n_shared_experts": 1, "num_shared_experts": 1, "moe_num_shared_experts": 1,
    "n_group": 1, "topk_group": 1, "num_expert_group": 1,
    "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_num_key_heads": 2,
    "linear_num_value_heads": 4, "linear_head_dim": 16, "linear_num_heads": 4,
    "mamba_d_state": 8, "mamba_n_heads": 8, "mamba_d_head": 16, "mamba_n_groups": 1, "mamba_chunk_size": 16,
    "mamba_expand": 2, "state_size": 8, "ssm_state_size": 8, "time_step_rank": 8, "mamba_dt_rank": 8,
    "mamba_num_heads": 8, "mamba_head_dim": 16, "mamba_headdim": 16, "mamba_ngroups": 1, "n_groups": 1,
    "n_mamba_heads": 8, "chunk_size": 16,
    "lru_width": 64, "attention_hidden_size": 64, "swa_num_attention_heads": 4,
    "swa_num_key_value_heads": 2, "swa_head_dim": 16,
    "max_position_embeddings": 256, "n_positions": 256, "n_ctx": 256, "max_seq_len": 256,
    "context_length": 256, "max_target_positions": 256, "max_source_positions": 256,
    "num_nextn_predict_layers": 0,
    "laurel_rank": 8, "hidden_size_per_layer_input": 8, "vocab_size_per_layer_input": 128,
    "router_hidden_size": 32, "ple_embed_dim": 8,
}

DEPTHS = {
    "num_hidden_layers": 2, "n_layer": 2, "n_layers": 2, "num_layers": 2, "decoder_layers": 2,
    "encoder_layers": 2, "num_decoder_layers": 2, "num_encoder_layers": 2,
    "first_k_dense_replace": 1, "num_dense_layers": 1,
}

VISION = {  # shrink for non-text sub-configs (vision / audio towers)
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
    "depth": 1, "num_layers": 1, "embed_dim": 32, "out_hidden_size": 64, "projection_dim": 32,
    "num_heads": 2, "head_dim": 16, "hidden_dim": 32,
}

# Dots 3 Note: per-layer settings are keyed by layer index (per_layer_config, mlp_layer_types), so they must fit the
# tiny depth; 3 text layers give both attention kinds (0, 1 indexed; 2 sliding), MLA with kv heads = heads.
_DOTS3_TEXT = {
    "num_hidden_layers": 3, "num_key_value_heads": 4, "head_dim": 24, "mlp_layer_types": ["dense", "sparse", "sparse"],
    "per_layer_config": {"2": {"num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 32,
                               "kv_lora_rank": 32, "head_dim": 24, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
                               "v_head_dim": 16}},
}
# ... and its vision tower (a pyramid of per-layer expert counts) and both adapters must match the tiny widths.
_DOTS3_TOWERS = {
    "vision_config.num_hidden_layers": 2, "vision_config.mlp_layer_types": ["dense", "sparse"],
    "vision_config.per_layer_config": {"1": {"num_local_experts": 4, "num_experts_per_tok": 2}},
    "vision_config.adapter_in_dim": 32, "vision_config.adapter_out_dim": 64,
    "audio_config.adapter_input_size": 32, "audio_config.downsample_hidden_size": 32, "audio_config.adapter_out_dim": 64,
}

# Per-type extra overrides (top-level, or "text_config.x" dotted).  Keep small.
PER_TYPE: dict[str, dict] = {
    "lfm2_moe": {"layer_types": ["conv", "full_attention"]},
    "dots1": {"n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1},
    "dbrx": {"attn_config.rope_theta": 10000.0},
    "reformer": {"is_decoder": True, "axial_pos_embds_dim": [32, 32], "axial_pos_shape": [16, 16],
                 "attn_layers": ["local", "local"], "num_hidden_layers": 2},
    "falcon_h1": {"mamba_d_ssm": 128, "mamba_n_heads": 8, "mamba_d_head": 16},
    "mamba2": {"num_heads": 8, "head_dim": 16, "n_groups": 1},
    "zaya": {"num_experts_per_tok": 1},
    # The assistant's text config must have no per-layer inputs, no MoE block, and every layer KV-shared (0: the
    # constructor sets num_kv_shared_layers = num_hidden_layers); the generic shrink would set the per-layer sizes.
    "gemma4_assistant": {"text_config.hidden_size_per_layer_input": 0, "text_config.vocab_size_per_layer_input": 0,
                         "text_config.num_kv_shared_layers": 0},
    # Emu3's model maps image tokens through vocabulary_map (None by default, which the model cannot take), and its
    # VQ-VAE is 240M parameters with the class's channel widths.
    "emu3": {"vocabulary_map": {"<image>": 900, "<|extra_200|>": 901},
             "vq_config.base_channels": 32, "vq_config.codebook_size": 64, "vq_config.channel_multiplier": [1, 2],
             "vq_config.num_res_blocks": 1, "vq_config.attn_resolutions": []},
    # Gemma 3n: per-layer lists (activation sparsity, intermediate sizes, layer types) must cover every layer, and
    # KV-shared layers need a producing layer of each type; the class's timm vision tower (mobilenetv5_300m_enc,
    # 300M parameters) is swapped for timm's test_efficientnet.
    "gemma3n": {"text_config.num_hidden_layers": 4,
                "text_config.layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
                "text_config.num_kv_shared_layers": 2, "text_config.activation_sparsity_pattern": [0.95, 0.0, 0.0, 0.0],
                "text_config.intermediate_size": [128, 128, 128, 128], "vision_config.architecture": "test_efficientnet"},
    "blt": {"encoder_hash_byte_group_vocab": 1000},
    **{mt: {pre + k: v for k, v in _DOTS3_TEXT.items()} | extra for mt, pre, extra in (
        ("dots3_note_text", "", {}),
        ("dots3_note", "text_config.", _DOTS3_TOWERS))},
    "cohere_compass_text": {"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 10000.0}}},
}

TEXT_SUBCONFIG_NAMES = ("text_config", "decoder", "generator", "text_encoder")

# Constructor arguments for a type whose config class refuses its own defaults (Gemma4AssistantConfig() validates
# its default gemma4_text sub-config, which has per-layer inputs, and raises): the smallest change that builds.
# Everything else keeps the class defaults, which the table reports.
BASE_KWARGS: dict[str, dict] = {
    "gemma4_assistant": {"text_config": {"hidden_size_per_layer_input": 0, "vocab_size_per_layer_input": 0}},
}


def default_config(model_type: str):
    """The config class's default instance (with BASE_KWARGS where the class refuses its bare defaults)."""
    from transformers import CONFIG_MAPPING

    return CONFIG_MAPPING[model_type](**copy.deepcopy(BASE_KWARGS.get(model_type, {})))


def vocab_for(model_type: str) -> int:
    """A per-type vocabulary size, distinct from the other tiny sizes (512..1016, step 8)."""
    return 512 + 8 * (zlib.crc32(model_type.encode()) % 64) + 8


def _fields(cfg_cls_or_obj):
    obj = cfg_cls_or_obj
    names = set()
    try:
        import dataclasses

        if dataclasses.is_dataclass(obj):
            names |= {f.name for f in dataclasses.fields(obj)}
    except Exception:
        pass
    return names


FILL_IF_NONE = {"head_dim", "num_key_value_heads"}


def _safe_getattr(obj, name):
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001  (per-layer heterogeneous configs refuse global reads)
        return None


def _real_name(cfg, name):
    amap = getattr(type(cfg), "attribute_map", {}) or {}
    return amap.get(name, name)


def _shrink_dict(cfg, d: dict, table: dict, vocab: int | None, keep_layers: bool) -> dict:
    """Return a copy of d (cfg.to_dict()) with the table's attributes shrunk."""
    d = copy.deepcopy(d)
    fields = _fields(cfg) | set(d.keys())
    for name, val in table.items():
        if keep_layers and name in DEPTHS:
            continue
        real = _real_name(cfg, name)
        if real not in fields:
            continue
        cur = d[real] if real in d else _safe_getattr(cfg, real)
        if isinstance(cur, bool):
            continue
        if isinstance(cur, int) or (cur is None and name in FILL_IF_NONE):
            d[real] = val
        elif isinstance(cur, list) and cur and all(isinstance(x, int) and not isinstance(x, bool) for x in cur) \
                and name in WIDTHS and name not in ("max_position_embeddings",):
            n = len(cur) if keep_layers else DEPTHS["num_hidden_layers"]
            d[real] = [val] * n
    if vocab is not None:
        # decoder_vocab_size (marian: the decoder embedding's rows, which a tied head takes) is a vocabulary too;
        # left at the class's 58101 it would hide which of the two sizes W's rows follow.
        for vname in ("vocab_size", "decoder_vocab_size"):
            real = _real_name(cfg, vname)
            if real in fields and isinstance(d[real] if real in d else _safe_getattr(cfg, real), int):
                d[real] = vocab
        if isinstance(d.get("unpadded_vocab_size"), int):
            d["unpadded_vocab_size"] = vocab - 24
        # clamp token ids into the vocabulary (distinct values near the top)
        k = 1
        for key in sorted(d):
            v = d[key]
            if (key.endswith("token_id") or key.endswith("token_index") or key.endswith("_id")) and isinstance(v, int) \
                    and not isinstance(v, bool) and v >= vocab - 32:
                d[key] = vocab - 1 - k
                k += 1
            elif key.endswith("token_id") and isinstance(v, list):
                d[key] = [x if not isinstance(x, int) or x < vocab - 32 else vocab - 1 - (k + i) for i, x in enumerate(v)]
                k += len(v)
    return d


def tiny_config(model_type: str, strategy: int = 0, tie: bool | None = None, vocab: int | None = None,
                extra: dict | None = None):
    """Build a tiny config for model_type.  strategy 0: shrink widths and depths; 1: keep layer counts;
    2: keep layer counts and do not touch sub-configs other than the text one."""
    from transformers import CONFIG_MAPPING

    cfg_cls = CONFIG_MAPPING[model_type]
    base = default_config(model_type)
    vocab = vocab or vocab_for(model_type)
    keep_layers = strategy >= 1
    d = base.to_dict()
    top = _shrink_dict(base, d, {**WIDTHS, **DEPTHS}, vocab, keep_layers)
    subs = dict(getattr(base, "sub_configs", {}) or {})
    for sname in subs:
        sub = getattr(base, sname, None)
        if sub is None or not hasattr(sub, "to_dict"):
            continue
        if sname in TEXT_SUBCONFIG_NAMES or "text" in sname or "decoder" in sname or sname in ("global_config",):
            top[sname] = _shrink_dict(sub, sub.to_dict(), {**WIDTHS, **DEPTHS}, vocab, keep_layers)
        elif strategy < 2:
            top[sname] = _shrink_dict(sub, sub.to_dict(), {**WIDTHS, **DEPTHS, **VISION}, None, keep_layers)
    # drop derived / read-only keys that the constructor recomputes
    for k in ("layer_types", "_sliding_window_pattern"):
        if k in top and not keep_layers:
            top.pop(k)
        for sname in subs:
            if isinstance(top.get(sname), dict) and k in top[sname] and not keep_layers:
                top[sname].pop(k)
    # Per-type overrides last, so that a type whose constructor needs one of the keys dropped above (lfm2_moe's
    # layer_types) gets it.
    for k, v in {**PER_TYPE.get(model_type, {}), **(extra or {})}.items():
        if "." in k:
            a, b = k.split(".", 1)
            top.setdefault(a, {})[b] = v
        else:
            top[k] = v
    for k in ("transformers_version", "model_type", "architectures"):
        top.pop(k, None)
    if tie is not None:
        top["tie_word_embeddings"] = tie
        for sname in subs:
            if isinstance(top.get(sname), dict) and sname in TEXT_SUBCONFIG_NAMES:
                top[sname]["tie_word_embeddings"] = tie
    cfg = cfg_cls.from_dict(top)
    return cfg


def resolve(model_type: str):
    """What AutoModelForCausalLM does for this model_type.

    Returns (config_class, causal_class, save_class, swap): causal_class is the class AutoModelForCausalLM
    instantiates; swap is True when it instantiates it from config.get_text_config() (composite config whose
    text sub-config is the causal class's config_class); save_class is the class that writes real checkpoints
    of this model_type (the image-text-to-text class for such composites, else causal_class)."""
    from transformers import CONFIG_MAPPING
    from transformers.models.auto import modeling_auto as ma
    from transformers.models.auto.auto_factory import _get_model_class

    cfg_cls = CONFIG_MAPPING[model_type]
    base = default_config(model_type)
    causal = _get_model_class(base, ma.MODEL_FOR_CAUSAL_LM_MAPPING)
    tcc = (getattr(base, "sub_configs", {}) or {}).get("text_config")
    swap = tcc is not None and getattr(causal, "config_class", None) == tcc
    save = causal
    if swap and model_type in ma.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        save = _get_model_class(base, ma.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING)
    return cfg_cls, causal, save, swap


def count_params_meta(model_cls, cfg) -> int:
    with torch.device("meta"):
        m = model_cls._from_config(cfg)
    n = sum(p.numel() for p in m.parameters())
    return n


def build_tiny(model_type: str, tie: bool | None = None, vocab: int | None = None, extra: dict | None = None,
               strategies=(0, 1, 2)):
    """Return (config, strategy) for the first strategy whose save-class model (and, for composites loaded
    through their text config, the causal class) builds on meta within MAX_PARAMS.  config is the full
    (top-level) config, as a checkpoint's config.json holds it."""
    _, causal, save, swap = resolve(model_type)
    errors = []
    for strategy in strategies:
        try:
            cfg = tiny_config(model_type, strategy, tie=tie, vocab=vocab, extra=extra)
            n = count_params_meta(save, cfg)
            if swap:
                count_params_meta(causal, cfg.get_text_config())
            if n > MAX_PARAMS:
                errors.append(f"strategy {strategy}: {n} params")
                continue
            return cfg, strategy
        except Exception as e:  # noqa: BLE001
            errors.append(f"strategy {strategy}: {type(e).__name__}: {str(e)[:300]}")
    raise RuntimeError(" | ".join(errors))


def randomize_(model, seed: int):
    """Give every parameter distinct random values (deterministic), so tensors can be told apart by bytes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i, (name, p) in enumerate(model.named_parameters()):  # tied params appear once
            if p.dtype.is_floating_point:
                p.copy_((torch.randn(p.shape, generator=g) * 0.05 + 0.001 * (i + 1)).to(p.dtype))


def load_config_for_causal(cfg, swap: bool):
    """The config AutoModelForCausalLM hands the causal class."""
    return cfg.get_text_config() if swap else cfg


def save_tiny_checkpoint(model_type: str, cfg, out_dir, seed: int = 0, dtype=torch.bfloat16, max_shard_size=None):
    """Instantiate the save class from cfg, give it distinct random weights, write it with save_pretrained."""
    _, _, save_cls, _ = resolve(model_type)
    torch.manual_seed(seed)
    model = save_cls._from_config(cfg)
    randomize_(model, seed)
    model = model.to(dtype)
    kw = {}
    if max_shard_size is not None:
        kw["max_shard_size"] = max_shard_size
    model.save_pretrained(str(out_dir), **kw)
    del model


def load_stored(dir_path) -> dict:
    """All tensors of all *.safetensors files in dir_path: key -> tensor."""
    from pathlib import Path

    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(dir_path).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def load_reference(dir_path):
    """The notebook's load: AutoModelForCausalLM.from_pretrained(dir, dtype=torch.bfloat16)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(dir_path), dtype=torch.bfloat16)


def same_bytes(a, b) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    a = a.detach().contiguous()
    b = b.detach().contiguous()
    if a.element_size() == 2:
        return torch.equal(a.view(torch.int16), b.view(torch.int16))
    if a.element_size() == 4:
        return torch.equal(a.view(torch.int32), b.view(torch.int32))
    return torch.equal(a, b)


def input_embeddings(model):
    try:
        e = model.get_input_embeddings()
    except Exception:  # noqa: BLE001
        return None
    return getattr(e, "weight", None) if e is not None else None
