//! Synthetic checkpoints in the layouts the seed models use (tied/untied, sharded/single, gemma3's two multimodal
//! key layouts, bf16/f16/f32 with edge values), written with gamma-run's own deterministic safetensors writer.
//! The bundled example, the tests and the benchmark are built with it (`gamma-run synth`, a hidden command).

use crate::error::{Error, Result};
use crate::store::{BUF_LEN, Sink, safetensors_file, write_atomic};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Arch {
    Qwen3,
    Qwen2,
    Llama,
    Phi3,
    Granite,
    /// Gemma3 multimodal, older keys: language_model.model.embed_tokens.weight
    Gemma3,
    /// Gemma3 multimodal, newer keys: model.language_model.embed_tokens.weight
    Gemma3New,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Stored {
    Embed,
    Head,
    /// Both, with identical bytes
    Both,
    /// Both, with different bytes
    BothDiffer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SynthDtype {
    Bf16,
    F16,
    F32,
}

#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Directory to write (created)
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[arg(long, value_enum, default_value = "qwen3")]
    pub(crate) arch: Arch,
    #[arg(long, default_value_t = 512)]
    pub(crate) vocab: u64,
    #[arg(long, default_value_t = 64)]
    pub(crate) hidden: u64,
    #[arg(long, value_enum, default_value = "bf16")]
    pub(crate) dtype: SynthDtype,
    /// Number of shards; more than one writes model.safetensors.index.json
    #[arg(long, default_value_t = 1)]
    pub(crate) shards: u32,
    /// config's tie_word_embeddings: true, false, or absent (class default)
    #[arg(long, default_value = "true")]
    pub(crate) tie: String,
    /// Which of embedding and head are stored
    #[arg(long, value_enum, default_value = "embed")]
    pub(crate) store: Stored,
    /// Put rounding ties, ±Inf, overflow, subnormals and -0 into the first rows
    #[arg(long)]
    pub(crate) specials: bool,
    /// Also put NaNs into the first row
    #[arg(long)]
    pub(crate) nan: bool,
    /// Bulk (MiB) added to each shard as other layers' weights: one value for all shards, or one per shard
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub(crate) filler_mib: Vec<u64>,
    /// Add a quantization_config to config.json
    #[arg(long)]
    pub(crate) quantized: bool,
    /// Write a complete decoder of this many layers (every tensor transformers loads, with its real name and
    /// shape) instead of filler, sharded as `save_pretrained` does; Llama-style architectures only
    #[arg(long, default_value_t = 0)]
    pub(crate) layers: u64,
    /// With --layers: the MLP's intermediate size
    #[arg(long, default_value_t = 128)]
    pub(crate) intermediate: u64,
    /// With --layers: attention heads, key/value heads and the head dimension
    #[arg(long, default_value_t = 4)]
    pub(crate) heads: u64,
    #[arg(long, default_value_t = 2)]
    pub(crate) kv_heads: u64,
    #[arg(long, default_value_t = 16)]
    pub(crate) head_dim: u64,
    /// With --layers: start a new shard before one would pass this many bytes (save_pretrained's max_shard_size)
    #[arg(long, default_value_t = 4_000_000_000)]
    pub(crate) max_shard_bytes: u64,
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Plant a covariance spectrum in W (the causal frames' tests): each row is a mean offset plus independent
    /// columns whose variances span this ratio, turned by a fixed reflection, then rounded to the dtype
    #[arg(long)]
    pub(crate) condition: Option<f64>,
}

struct Tensor {
    name: String,
    shape: Vec<u64>,
    seed: u64,
    specials: bool,
    /// `--condition`, for W's tensors.
    condition: Option<f64>,
}

impl Tensor {
    fn elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

impl SynthDtype {
    /// Bytes per element.
    fn width(self) -> u64 {
        if self == SynthDtype::F32 { 4 } else { 2 }
    }
}

pub fn execute(a: SynthArgs) -> Result<()> {
    if a.shards == 0 || a.vocab == 0 || a.hidden == 0 {
        return Err(Error::Usage("--shards, --vocab and --hidden must be positive".into()));
    }
    let gemma = matches!(a.arch, Arch::Gemma3 | Arch::Gemma3New);
    let (embed_key, head_key, prefix) = match a.arch {
        Arch::Gemma3 => {
            ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight", "language_model.model.")
        }
        Arch::Gemma3New => ("model.language_model.embed_tokens.weight", "lm_head.weight", "model.language_model."),
        _ => ("model.embed_tokens.weight", "lm_head.weight", "model."),
    };
    let (v, d) = (a.vocab, a.hidden);
    let w = |name: &str, seed| Tensor {
        name: name.into(),
        shape: vec![v, d],
        seed,
        specials: a.specials,
        condition: a.condition,
    };
    if a.layers > 0 {
        let layout = matches!((a.store, a.tie.as_str()), (Stored::Embed, "true") | (Stored::Head, "false"));
        if !matches!(a.arch, Arch::Qwen3 | Arch::Llama) || !layout {
            return Err(Error::Usage(
                "--layers writes qwen3 or llama decoders, tied (--tie true --store embed) or untied (--tie false \
                 --store head)"
                    .into(),
            ));
        }
        if a.shards != 1 || a.filler_mib.iter().any(|&m| m != 0) {
            return Err(Error::Usage(
                "--layers shards by --max-shard-bytes; --shards and --filler-mib do not apply".into(),
            ));
        }
        let mut all = vec![w(embed_key, a.seed)];
        all.extend(decoder(&a));
        if a.store == Stored::Head {
            all.push(w(head_key, a.seed + 1));
        }
        return write_model(&a, shard_like_save_pretrained(all, &a));
    }
    let mut shards: Vec<Vec<Tensor>> = (0..a.shards).map(|_| Vec::new()).collect();
    let last = shards.len() - 1;
    if matches!(a.store, Stored::Embed | Stored::Both | Stored::BothDiffer) {
        shards[0].push(w(embed_key, a.seed));
    }
    if gemma {
        shards[0].push(Tensor {
            name: "vision_tower.vision_model.post_layernorm.weight".into(),
            shape: vec![d],
            seed: a.seed + 7,
            specials: false,
            condition: None,
        });
    }
    for (i, shard) in shards.iter_mut().enumerate() {
        let mib = a.filler_mib.get(i).or(a.filler_mib.last()).copied().unwrap_or(0);
        let rows = (mib << 20) / 2 / d;
        let shape = if rows > 0 { vec![rows, d] } else { vec![d, 4] };
        shard.push(Tensor {
            name: format!("{prefix}layers.{i}.mlp.up_proj.weight"),
            shape,
            seed: a.seed + 100 + i as u64,
            specials: false,
            condition: None,
        });
    }
    shards[last].push(Tensor {
        name: format!("{prefix}norm.weight"),
        shape: vec![d],
        seed: a.seed + 3,
        specials: false,
        condition: None,
    });
    match a.store {
        // The head's own values (differing from the embedding's); `both` stores the embedding's values twice.
        Stored::Head | Stored::BothDiffer => shards[last].push(w(head_key, a.seed + 1)),
        Stored::Both => shards[last].push(w(head_key, a.seed)),
        Stored::Embed => {}
    }
    write_model(&a, shards)
}

/// The layers and final norm of a Llama-style decoder (Qwen3 adds q/k norms), in `state_dict` order.
fn decoder(a: &SynthArgs) -> Vec<Tensor> {
    let (d, q, kv, m) = (a.hidden, a.heads * a.head_dim, a.kv_heads * a.head_dim, a.intermediate);
    let mut out = Vec::new();
    for i in 0..a.layers {
        let mut layer: Vec<(&str, Vec<u64>)> = vec![
            ("self_attn.q_proj", vec![q, d]),
            ("self_attn.k_proj", vec![kv, d]),
            ("self_attn.v_proj", vec![kv, d]),
            ("self_attn.o_proj", vec![d, q]),
        ];
        if a.arch == Arch::Qwen3 {
            layer.extend([("self_attn.q_norm", vec![a.head_dim]), ("self_attn.k_norm", vec![a.head_dim])]);
        }
        layer.extend([("mlp.gate_proj", vec![m, d]), ("mlp.up_proj", vec![m, d]), ("mlp.down_proj", vec![d, m])]);
        layer.extend([("input_layernorm", vec![d]), ("post_attention_layernorm", vec![d])]);
        for (j, (name, shape)) in layer.into_iter().enumerate() {
            let seed = a.seed + 1000 + i * 16 + j as u64;
            out.push(Tensor {
                name: format!("model.layers.{i}.{name}.weight"),
                shape,
                seed,
                specials: false,
                condition: None,
            });
        }
    }
    out.push(Tensor {
        name: "model.norm.weight".into(),
        shape: vec![d],
        seed: a.seed + 3,
        specials: false,
        condition: None,
    });
    out
}

/// Splits tensors into shards in order, starting a new shard before one would pass `--max-shard-bytes`. (Unlike
/// huggingface_hub, a single tensor larger than the limit is not moved into a shard of its own.)
fn shard_like_save_pretrained(all: Vec<Tensor>, a: &SynthArgs) -> Vec<Vec<Tensor>> {
    let mut shards: Vec<Vec<Tensor>> = vec![Vec::new()];
    let mut size = 0u64;
    for t in all {
        let bytes = t.elements() * a.dtype.width();
        if size > 0 && size + bytes > a.max_shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        shards.last_mut().expect("one shard at least").push(t);
    }
    shards
}

/// Writes the shards, their index (when more than one) and config.json.
fn write_model(a: &SynthArgs, shards: Vec<Vec<Tensor>>) -> Result<()> {
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0u64;
    for (i, tensors) in shards.iter().enumerate() {
        let file =
            if n == 1 { "model.safetensors".to_string() } else { format!("model-{:05}-of-{n:05}.safetensors", i + 1) };
        write_shard(&a.out.join(&file), tensors, a.dtype, a.nan)?;
        total += tensors.iter().map(Tensor::elements).sum::<u64>() * a.dtype.width();
        for t in tensors {
            weight_map.insert(t.name.clone(), file.clone().into());
        }
    }
    if n > 1 {
        let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        write_atomic(&a.out.join("model.safetensors.index.json"), &pretty(&index))?;
    }
    write_atomic(&a.out.join("config.json"), &pretty(&config(a)))?;
    Ok(())
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("json");
    b.push(b'\n');
    b
}

fn config(a: &SynthArgs) -> serde_json::Value {
    let dtype = match a.dtype {
        SynthDtype::Bf16 => "bfloat16",
        SynthDtype::F16 => "float16",
        SynthDtype::F32 => "float32",
    };
    let (model_type, arch) = match a.arch {
        Arch::Qwen3 => ("qwen3", "Qwen3ForCausalLM"),
        Arch::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
        Arch::Llama => ("llama", "LlamaForCausalLM"),
        Arch::Phi3 => ("phi3", "Phi3ForCausalLM"),
        Arch::Granite => ("granitemoehybrid", "GraniteMoeHybridForCausalLM"),
        Arch::Gemma3 | Arch::Gemma3New => ("gemma3", "Gemma3ForConditionalGeneration"),
    };
    let mut c = serde_json::json!({"architectures": [arch], "model_type": model_type, "dtype": dtype});
    let dims = serde_json::json!({"vocab_size": a.vocab, "hidden_size": a.hidden});
    if model_type == "gemma3" {
        let mut text = dims;
        text["model_type"] = "gemma3_text".into();
        c["text_config"] = text;
    } else {
        c["vocab_size"] = a.vocab.into();
        c["hidden_size"] = a.hidden.into();
    }
    if a.layers > 0 {
        c["num_hidden_layers"] = a.layers.into();
        c["intermediate_size"] = a.intermediate.into();
        c["num_attention_heads"] = a.heads.into();
        c["num_key_value_heads"] = a.kv_heads.into();
        c["head_dim"] = a.head_dim.into();
    }
    match a.tie.as_str() {
        "true" => c["tie_word_embeddings"] = true.into(),
        "false" => c["tie_word_embeddings"] = false.into(),
        _ => {}
    }
    if a.quantized {
        c["quantization_config"] = serde_json::json!({"quant_method": "bitsandbytes", "load_in_8bit": true});
    }
    c
}

fn write_shard(path: &std::path::Path, tensors: &[Tensor], dtype: SynthDtype, nan: bool) -> Result<()> {
    let name = match dtype {
        SynthDtype::Bf16 => safetensors_file::OutDtype::Bf16,
        SynthDtype::F16 => safetensors_file::OutDtype::F16,
        SynthDtype::F32 => safetensors_file::OutDtype::F32,
    };
    let entries: Vec<safetensors_file::Entry> =
        tensors.iter().map(|t| safetensors_file::Entry { name: &t.name, dtype: name, shape: &t.shape }).collect();
    let mut sink = Sink::create(path)?;
    let header = safetensors_file::header(&entries);
    let width = dtype.width() as usize;
    let elements: u64 = tensors.iter().map(Tensor::elements).sum();
    sink.reserve(header.len() as u64 + elements * dtype.width())?;
    sink.write(&header)?;
    let mut buf = Vec::with_capacity(BUF_LEN);
    for t in tensors {
        let count = t.elements();
        let per_chunk = (BUF_LEN / width) as u64;
        let mut i = 0;
        while i < count {
            let n = per_chunk.min(count - i);
            buf.clear();
            for k in i..i + n {
                let bits = element(t, k, dtype, nan);
                buf.extend_from_slice(&bits.to_le_bytes()[..width]);
            }
            sink.write(&buf)?;
            i += n;
        }
    }
    sink.commit()?;
    Ok(())
}

/// A pseudo-random number in [-0.5, 0.5), a function of the seed and the element.
fn uniform(seed: u64, k: u64) -> f32 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(k.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
}

/// Element `k` of a matrix with a planted covariance spectrum: row i is `offset + (s ∘ z_i) H`, z_i independent
/// with unit variance, s_j² spanning `condition` geometrically, H = I − 2uuᵀ/uᵀu a fixed reflection.
fn planted(t: &Tensor, k: u64, condition: f64) -> f32 {
    let d = t.shape[1];
    let (row, col) = (k / d, k % d);
    let u = |j: u64| 1.0 + (j % 3) as f64;
    let s = |j: u64| condition.powf(-(j as f64) / (2.0 * (d.max(2) - 1) as f64));
    let z = |j: u64| uniform(t.seed, row * d + j) as f64 * 12f64.sqrt() * s(j);
    // z·u once per row (elements come in order), uᵀu once.
    thread_local!(static ROW: std::cell::Cell<(u64, u64, f64, f64)> = const { std::cell::Cell::new((u64::MAX, 0, 0.0, 0.0)) });
    let (zu, uu) = ROW.with(|cell| {
        let (seed, r, zu, uu) = cell.get();
        if (seed, r) == (t.seed, row) {
            return (zu, uu);
        }
        let (mut zu, mut uu) = (0.0, 0.0);
        for j in 0..d {
            zu += z(j) * u(j);
            uu += u(j) * u(j);
        }
        cell.set((t.seed, row, zu, uu));
        (zu, uu)
    });
    let offset = 0.3 + 0.1 * (col % 5) as f64;
    (offset + z(col) - 2.0 * zu / uu * u(col)) as f32
}

/// Element `k` of tensor `t`, as stored bits (low bytes used for 16-bit dtypes).
fn element(t: &Tensor, k: u64, dtype: SynthDtype, nan: bool) -> u32 {
    const F32_SPECIALS: &[u32] = &[
        0x3F80_8000,
        0x3F81_8000,
        0xBF80_8000,
        0x3F80_8001,
        0x7F80_0000,
        0xFF80_0000,
        0x7F7F_FFFF,
        0xFF7F_FFFF,
        0x0000_0001,
        0x807F_FFFF,
        0x0000_8000,
        0x8000_0000,
        0x0001_8000,
        0x7F7F_8000,
    ];
    const F16_SPECIALS: &[u16] =
        &[0x3C04, 0x3C0C, 0xBC04, 0x7C00, 0xFC00, 0x7BFF, 0xFBFF, 0x0001, 0x83FF, 0x8000, 0x3C05];
    if t.specials {
        let idx = k as usize;
        match dtype {
            SynthDtype::F32 if idx < F32_SPECIALS.len() => return F32_SPECIALS[idx],
            SynthDtype::F16 if idx < F16_SPECIALS.len() => return F16_SPECIALS[idx] as u32,
            SynthDtype::Bf16 if idx < 4 => return [0x7F80, 0xFF80, 0x0001, 0x8000][idx],
            _ => {}
        }
    }
    if nan && t.specials && k == 20 {
        return match dtype {
            SynthDtype::F32 => 0xFFC0_0001,
            SynthDtype::F16 => 0x7E01,
            SynthDtype::Bf16 => 0xFF81,
        };
    }
    let x = match t.condition {
        Some(c) => planted(t, k, c),
        None => uniform(t.seed, k) * 0.2,
    };
    match dtype {
        SynthDtype::F32 => x.to_bits(),
        SynthDtype::F16 => half::f16::from_f32(x).to_bits() as u32,
        SynthDtype::Bf16 => half::bf16::from_f32(x).to_bits() as u32,
    }
}
