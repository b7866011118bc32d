//! A restricted reader for the pickle `torch.save` writes for a state dict (`data.pkl` in a `pytorch_model.bin`):
//! the same allow-list idea as `torch.load(weights_only=True)`, but nothing is ever executed — the stream is
//! interpreted. It understands the opcodes of protocols 2–5 that such a pickle uses, and only these globals:
//! `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter` and the
//! `torch.*Storage` types (persistent ids name the storages). Anything else — `os.system`, `builtins.eval`, an
//! unknown class — is refused with its name. Input size, memo size, value count and nesting are capped, and
//! the memory a parse may take is a budget in bytes, a small multiple of the input, charged before each value is
//! made or copied; strings are shared, not copied, when the memo hands them out again. Every step is linear in
//! the input (a key is looked up, never compared with every earlier one), and at most `MAX_PARSES` parses run at
//! once, so parallel grid workers cannot multiply the budget.

use super::header::Dtype;
use std::rc::Rc;

/// Refused past this size (a state dict's pickle is kilobytes to a few megabytes).
pub const MAX_PICKLE: u64 = 64 << 20;
const MAX_MEMO: usize = 1 << 20;
/// Values created or copied from the memo, in all: bounds the work a hostile stream can ask for.
const MAX_NODES: u64 = 20_000_000;
const MAX_DEPTH: u32 = 32;
const MAX_DIMS: usize = 16;
/// The memory a parse may take: this many times its input, plus `BUDGET_FLOOR`, and never more than
/// `BUDGET_CAP` (a real state dict's pickle needs about one to three times its size).
const BUDGET_PER_INPUT_BYTE: u64 = 4;
const BUDGET_FLOOR: u64 = 16 << 20;
const BUDGET_CAP: u64 = 160 << 20;
/// Parses that may run at once in this process (each within its budget).
const MAX_PARSES: usize = 2;

/// The byte budget of a parse of `len` bytes.
fn budget(len: usize) -> u64 {
    (len as u64).saturating_mul(BUDGET_PER_INPUT_BYTE).saturating_add(BUDGET_FLOOR).min(BUDGET_CAP)
}

/// What one value costs in memory, not counting what it shares.
const VALUE_BYTES: u64 = std::mem::size_of::<V>() as u64;

/// Lets at most `MAX_PARSES` parses run at once; the others wait for a slot.
struct Slot;
static SLOTS: (std::sync::Mutex<usize>, std::sync::Condvar) = (std::sync::Mutex::new(0), std::sync::Condvar::new());
impl Slot {
    fn take() -> Slot {
        let (lock, freed) = &SLOTS;
        let mut busy = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *busy >= MAX_PARSES {
            busy = freed.wait(busy).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *busy += 1;
        Slot
    }
}
impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, freed) = &SLOTS;
        *lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
        freed.notify_one();
    }
}

/// A tensor of the state dict: where its bytes are in which storage, and how they are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    /// The storage's key: its bytes are the archive entry `data/<key>`.
    pub storage: String,
    pub(crate) dtype: Dtype,
    /// The storage's length in elements.
    pub storage_numel: u64,
    /// The tensor's first element within the storage, in elements.
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

impl TensorRef {
    /// Whether the elements are stored row-major without gaps (what can be read as one byte range).
    pub fn is_contiguous(&self) -> bool {
        let mut want = 1u64;
        for (d, s) in self.shape.iter().zip(&self.stride).rev() {
            if *d != 1 && *s != want {
                return false;
            }
            want = want.saturating_mul(*d);
        }
        true
    }

    pub fn numel(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |n, d| n.checked_mul(*d))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(Dtype),
}

#[derive(Debug, Clone, PartialEq)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits (only its presence matters).
    BigInt,
    Float(f64),
    /// Shared: the memo hands out the same string, not a copy.
    Str(Rc<str>),
    Bytes(usize),
    /// Containers carry their nesting depth.
    Tuple(Vec<V>, u32),
    List(Vec<V>, u32),
    Dict(Vec<(V, V)>, u32),
    Global(Global),
    Storage {
        dtype: Dtype,
        key: String,
        numel: u64,
    },
    Tensor(Box<TensorRef>),
}

impl V {
    fn depth(&self) -> u32 {
        match self {
            V::Tuple(_, d) | V::List(_, d) | V::Dict(_, d) => *d,
            _ => 0,
        }
    }
    fn nodes(&self) -> u64 {
        match self {
            V::Tuple(v, _) | V::List(v, _) => 1 + v.iter().map(V::nodes).sum::<u64>(),
            V::Dict(v, _) => 1 + v.iter().map(|(k, x)| k.nodes() + x.nodes()).sum::<u64>(),
            // The boxed TensorRef and its shape and stride.
            V::Tensor(_) => 4,
            _ => 1,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            V::None => "None",
            V::Bool(_) => "a bool",
            V::Int(_) | V::BigInt => "an int",
            V::Float(_) => "a float",
            V::Str(_) => "a str",
            V::Bytes(_) => "bytes",
            V::Tuple(..) => "a tuple",
            V::List(..) => "a list",
            V::Dict(..) => "a dict",
            V::Global(_) => "a class or function",
            V::Storage { .. } => "a storage",
            V::Tensor(_) => "a tensor",
        }
    }
}

fn container_depth(items: &[V]) -> u32 {
    1 + items.iter().map(V::depth).max().unwrap_or(0)
}

/// The globals a state dict may name; the error for any other names it.
fn global(module: &str, name: &str) -> Result<Global, PickleError> {
    let storage = |d: &str| {
        Dtype::parse(d)
            .map(Global::Storage)
            .ok_or_else(|| PickleError::new(Why::Unsupported, format!("unknown dtype {d}")))
    };
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Ok(Global::RebuildParameter),
        ("torch", "BFloat16Storage") => storage("BF16"),
        ("torch", "HalfStorage") => storage("F16"),
        ("torch", "FloatStorage") => storage("F32"),
        ("torch", "DoubleStorage") => storage("F64"),
        ("torch", "LongStorage") => storage("I64"),
        ("torch", "IntStorage") => storage("I32"),
        ("torch", "ShortStorage") => storage("I16"),
        ("torch", "CharStorage") => storage("I8"),
        ("torch", "ByteStorage") => storage("U8"),
        ("torch", "BoolStorage") => storage("BOOL"),
        _ => Err(PickleError::new(
            Why::Unsupported,
            format!(
                "the pickle calls {module}.{name}, which a state dict never needs; refused without running it (only \
                 collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and torch storage \
                 types are allowed, as torch.load(weights_only=True) allows)"
            ),
        )),
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, V>,
    nodes: u64,
    /// Bytes of memory the values alive now (on the stack, in the memo, the strings made) take, and the most
    /// they may.
    bytes: u64,
    budget: u64,
}

/// Why a pickle could not be read, by kind: a caller reading a file's start in growing pieces takes `EndsEarly`
/// as "read more"; the rest are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The bytes ended before the pickle did (a prefix that is too short).
    EndsEarly,
    /// Past one of the reader's caps (size, values, depth, memo, memory budget).
    Limit,
    /// An opcode, global or layout a state dict does not use.
    Unsupported,
    /// Not a well-formed state-dict pickle.
    Malformed,
}

/// A pickle that could not be read: what kind of failure, and the message for the user.
#[derive(Debug, PartialEq, Eq)]
pub struct PickleError {
    pub why: Why,
    pub message: String,
}

impl PickleError {
    fn new(why: Why, message: impl Into<String>) -> PickleError {
        PickleError { why, message: message.into() }
    }
    /// Its bytes ended before the pickle did.
    pub fn ran_out(&self) -> bool {
        self.why == Why::EndsEarly
    }
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for PickleError {
    fn from(message: String) -> Self {
        PickleError::new(Why::Malformed, message)
    }
}

impl From<&str> for PickleError {
    fn from(message: &str) -> Self {
        PickleError::new(Why::Malformed, message)
    }
}

/// The state dict a `data.pkl` holds: its tensors by name, in pickle order (non-tensor entries are skipped).
pub fn state_dict(data: &[u8]) -> Result<Vec<(String, TensorRef)>, PickleError> {
    let (top, _) = load(data, 0)?;
    tensors(top)
}

/// One pickle starting at `at`: its value and where it ends.
fn load(data: &[u8], at: usize) -> Result<(V, usize), PickleError> {
    if data.len() as u64 > MAX_PICKLE {
        let m = format!("the pickle is {} bytes, more than the {MAX_PICKLE} allowed", data.len());
        return Err(PickleError::new(Why::Limit, m));
    }
    let _slot = Slot::take();
    let mut r = Reader::new(data, at, budget(data.len()));
    let top = r.run().map_err(|e| PickleError::new(e.why, format!("{e} (at byte {} of the pickle)", r.pos)))?;
    Ok((top, r.pos))
}

/// A legacy (pre-1.6, non-zip) `torch.save` file's start: the state dict, the storages' keys in the order their
/// bytes follow, and where those bytes begin. Each storage is an 8-byte little-endian element count, then its
/// elements.
#[derive(Debug)]
pub struct Legacy {
    pub tensors: Vec<(String, TensorRef)>,
    pub storage_order: Vec<String>,
    pub data_start: u64,
}

/// The legacy format's magic number, as the first pickle writes it (protocol 2, LONG1 of 10 bytes).
pub const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

/// Reads the five pickles a legacy file starts with: magic number, protocol version, system info, the state
/// dict, the storage keys. `Err` has `ran_out` when `data` is a prefix too short to hold them all.
pub fn legacy(data: &[u8]) -> Result<Legacy, PickleError> {
    if !data.starts_with(LEGACY_MAGIC) {
        return Err("not a legacy torch.save file (no magic number)".into());
    }
    let (_, at) = load(data, 0)?;
    let (version, at) = load(data, at)?;
    if version != V::Int(1001) {
        return Err(format!("legacy protocol version {version:?}, not 1001").into());
    }
    let (info, at) = load(data, at)?;
    if let V::Dict(items, _) = &info {
        let little = items.iter().find(|(k, _)| matches!(k, V::Str(s) if &**s == "little_endian")).map(|(_, v)| v);
        if little != Some(&V::Bool(true)) {
            let m = "a big-endian (or unknown byte order) legacy file; only little-endian storages are read";
            return Err(PickleError::new(Why::Unsupported, m));
        }
    }
    let (main, at) = load(data, at)?;
    let (keys, at) = load(data, at)?;
    let V::List(keys, _) = keys else { return Err("the legacy storage keys are not a list".into()) };
    let storage_order = keys
        .into_iter()
        .map(|k| match k {
            V::Str(s) => Ok(s.to_string()),
            other => Err(PickleError::from(format!("a legacy storage key is {}", other.kind()))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Legacy { tensors: tensors(main)?, storage_order, data_start: at as u64 })
}

fn tensors(top: V) -> Result<Vec<(String, TensorRef)>, PickleError> {
    let V::Dict(items, _) = top else {
        return Err(format!("the pickle holds {}, not a state dict", top.kind()).into());
    };
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in items {
        match (k, v) {
            (V::Str(k), V::Tensor(t)) => {
                // torch keeps the last of two equal keys, gamma-run would read the first: refused instead.
                if !seen.insert(k.clone()) {
                    return Err(format!("the state dict holds {k:?} twice").into());
                }
                out.push((k.to_string(), *t));
            }
            (V::Str(_), _) => {}
            (k, _) => return Err(format!("a state dict key is {}, not a str", k.kind()).into()),
        }
    }
    Ok(out)
}

impl<'a> Reader<'a> {
    /// A reader of `data` from byte `at`, with a memory budget of `budget` bytes.
    fn new(data: &'a [u8], at: usize, budget: u64) -> Reader<'a> {
        Reader {
            data,
            pos: at,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: Default::default(),
            nodes: 0,
            bytes: 0,
            budget,
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let Some(end) = self.pos.checked_add(n).filter(|e| *e <= self.data.len()) else {
            return Err(PickleError::new(Why::EndsEarly, "the pickle ends early"));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn le(&mut self, n: usize) -> Result<u64, PickleError> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
    }
    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().take(256).position(|b| *b == b'\n') else {
            let why = if rest.len() < 256 { Why::EndsEarly } else { Why::Malformed };
            return Err(PickleError::new(why, "a GLOBAL name without an end"));
        };
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "a GLOBAL name that is not UTF-8")?.to_string();
        self.pos += n + 1;
        Ok(s)
    }
    fn push(&mut self, v: V) -> Result<(), PickleError> {
        if v.depth() > MAX_DEPTH {
            return Err(PickleError::new(Why::Limit, format!("values nested more than {MAX_DEPTH} deep")));
        }
        self.charge(1)?;
        self.alloc(v.nodes().saturating_mul(VALUE_BYTES))?;
        self.stack.push(v);
        Ok(())
    }
    /// Gives back the memory of values leaving the stack (dropped, or charged again where they go).
    fn free(&mut self, v: &V) {
        self.bytes = self.bytes.saturating_sub(v.nodes().saturating_mul(VALUE_BYTES));
    }
    fn pop(&mut self) -> Result<V, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        let Some(v) = (self.stack.len() > floor).then(|| self.stack.pop()).flatten() else {
            return Err("the stack is empty".into());
        };
        self.free(&v);
        Ok(v)
    }
    fn pop_mark(&mut self) -> Result<Vec<V>, PickleError> {
        let m = self.marks.pop().ok_or("no MARK to pop to")?;
        let items = self.stack.split_off(m);
        items.iter().for_each(|v| self.free(v));
        Ok(items)
    }
    /// Moves `items` into the container on top of the stack (SETITEMS with `dict`, APPENDS without).
    fn add_to_top(&mut self, items: Vec<V>, dict: bool) -> Result<(), PickleError> {
        self.alloc(items.iter().map(V::nodes).sum::<u64>().saturating_mul(VALUE_BYTES))?;
        if dict { Self::set_items(self.top_mut()?, items) } else { Self::append(self.top_mut()?, items) }
    }
    fn top_mut(&mut self) -> Result<&mut V, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        let above_mark = self.stack.len() > floor;
        self.stack.last_mut().filter(|_| above_mark).ok_or_else(|| "the stack is empty".into())
    }
    /// Counts `n` values made or copied, before they are, against the value cap (the work a stream may ask for).
    fn charge(&mut self, n: u64) -> Result<(), PickleError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(PickleError::new(Why::Limit, format!("more than {MAX_NODES} values")));
        }
        Ok(())
    }
    /// Counts `n` bytes of memory against the parse's budget, before they are allocated.
    fn alloc(&mut self, n: u64) -> Result<(), PickleError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.budget {
            return Err(PickleError::new(
                Why::Limit,
                format!(
                    "reading it would take more than {} MiB of memory (its budget: {BUDGET_PER_INPUT_BYTE} × its size + \
                 {} MiB, at most {} MiB)",
                    self.budget >> 20,
                    BUDGET_FLOOR >> 20,
                    BUDGET_CAP >> 20
                ),
            ));
        }
        Ok(())
    }
    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        // Charged before the copy is made, so a hostile stream cannot ask for an enormous one.
        let n = self.stack.last().ok_or("memoizing an empty stack")?.nodes();
        self.charge(n)?;
        self.alloc(n.saturating_mul(VALUE_BYTES))?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(PickleError::new(Why::Limit, format!("more than {MAX_MEMO} memo entries")));
        }
        let v = self.stack.last().expect("checked").clone();
        if let Some(old) = self.memo.insert(key, v) {
            self.free(&old);
        }
        Ok(())
    }
    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let n = self.memo.get(&key).ok_or_else(|| format!("memo entry {key} was never stored"))?.nodes();
        self.charge(n)?;
        let v = self.memo.get(&key).expect("checked").clone();
        self.push(v)
    }
    fn int(v: &V, what: &str) -> Result<u64, PickleError> {
        match v {
            V::Int(i) if *i >= 0 => Ok(*i as u64),
            other => Err(format!("{what} is {}, not a non-negative int", other.kind()).into()),
        }
    }
    fn ints(v: &V, what: &str) -> Result<Vec<u64>, PickleError> {
        let V::Tuple(items, _) = v else { return Err(format!("{what} is {}, not a tuple", v.kind()).into()) };
        if items.len() > MAX_DIMS {
            return Err(format!("{what} has {} dimensions", items.len()).into());
        }
        items.iter().map(|i| Self::int(i, what)).collect()
    }
    fn str_of(bytes: &[u8]) -> Result<Rc<str>, PickleError> {
        std::str::from_utf8(bytes).map(Rc::from).map_err(|_| "a string that is not UTF-8".into())
    }

    fn reduce(f: V, args: V) -> Result<V, PickleError> {
        let V::Tuple(args, _) = args else { return Err(format!("REDUCE with {} for arguments", args.kind()).into()) };
        match f {
            V::Global(Global::OrderedDict) if args.is_empty() => Ok(V::Dict(Vec::new(), 1)),
            V::Global(Global::RebuildTensor) => {
                // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
                if args.len() < 4 {
                    return Err("_rebuild_tensor_v2 with fewer than 4 arguments".into());
                }
                let V::Storage { dtype, key, numel } = &args[0] else {
                    return Err(format!("_rebuild_tensor_v2 of {}, not a storage", args[0].kind()).into());
                };
                let t = TensorRef {
                    storage: key.clone(),
                    dtype: *dtype,
                    storage_numel: *numel,
                    offset: Self::int(&args[1], "a storage offset")?,
                    shape: Self::ints(&args[2], "a tensor's size")?,
                    stride: Self::ints(&args[3], "a tensor's stride")?,
                };
                if t.shape.len() != t.stride.len() {
                    return Err("a tensor's size and stride differ in length".into());
                }
                Ok(V::Tensor(Box::new(t)))
            }
            V::Global(Global::RebuildParameter) => match args.into_iter().next() {
                Some(t @ V::Tensor(_)) => Ok(t),
                _ => Err("_rebuild_parameter of something that is not a tensor".into()),
            },
            V::Global(g) => Err(format!("{g:?} called with arguments a state dict does not use").into()),
            other => Err(format!("REDUCE calls {}, which is not callable here", other.kind()).into()),
        }
    }

    fn run(&mut self) -> Result<V, PickleError> {
        loop {
            let op = self.u8()?;
            match op {
                op::PROTO => {
                    let p = self.u8()?;
                    if !(2..=5).contains(&p) {
                        return Err(format!("pickle protocol {p}").into());
                    }
                }
                op::FRAME => {
                    self.take(8)?; // FRAME: a length hint
                }
                op::STOP => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                op::MARK => {
                    if self.marks.len() >= MAX_DEPTH as usize {
                        return Err(format!("MARKs nested more than {MAX_DEPTH} deep").into());
                    }
                    self.marks.push(self.stack.len());
                }
                op::EMPTY_DICT => self.push(V::Dict(Vec::new(), 1))?,
                op::EMPTY_LIST => self.push(V::List(Vec::new(), 1))?,
                op::EMPTY_TUPLE => self.push(V::Tuple(Vec::new(), 1))?,
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    let d = container_depth(&items);
                    self.push(V::Tuple(items, d))?;
                }
                op::TUPLE1..=op::TUPLE3 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let d = container_depth(&items);
                    self.push(V::Tuple(items, d))?;
                }
                op::BINPUT => {
                    let k = u64::from(self.u8()?);
                    self.memo_put(k)?;
                }
                op::LONG_BINPUT => {
                    let k = self.le(4)?;
                    self.memo_put(k)?;
                }
                op::MEMOIZE => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                op::BINGET => {
                    let k = u64::from(self.u8()?);
                    self.memo_get(k)?;
                }
                op::LONG_BINGET => {
                    let k = self.le(4)?;
                    self.memo_get(k)?;
                }
                op::BININT => {
                    let v = self.le(4)? as u32 as i32;
                    self.push(V::Int(i64::from(v)))?;
                }
                op::BININT1 => {
                    let v = self.u8()?;
                    self.push(V::Int(i64::from(v)))?;
                }
                op::BININT2 => {
                    let v = self.le(2)?;
                    self.push(V::Int(v as i64))?;
                }
                op::LONG1 => {
                    let n = usize::from(self.u8()?);
                    if n > 8 {
                        // Only the legacy format's magic number is this long; its value is not needed.
                        self.take(n)?;
                        self.push(V::BigInt)?;
                        continue;
                    }
                    let raw = self.le(n)?;
                    // Two's complement of n bytes.
                    let v = if n == 0 {
                        0
                    } else if n < 8 && raw & (1 << (8 * n - 1)) != 0 {
                        (raw as i64) - (1i64 << (8 * n))
                    } else {
                        raw as i64
                    };
                    self.push(V::Int(v))?;
                }
                op::NONE => self.push(V::None)?,
                op::NEWTRUE => self.push(V::Bool(true))?,
                op::NEWFALSE => self.push(V::Bool(false))?,
                op::BINFLOAT => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    self.push(V::Float(v))?;
                }
                op::BINUNICODE | op::SHORT_BINUNICODE | op::BINUNICODE8 => {
                    let n = match op {
                        op::BINUNICODE => self.le(4)?,
                        op::SHORT_BINUNICODE => u64::from(self.u8()?),
                        _ => self.le(8)?,
                    };
                    let n = usize::try_from(n).map_err(|_| "a string too long")?;
                    self.alloc(n as u64)?;
                    let s = Self::str_of(self.take(n)?)?;
                    self.push(V::Str(s))?;
                }
                op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 => {
                    let n = match op {
                        op::SHORT_BINBYTES => u64::from(self.u8()?),
                        op::BINBYTES => self.le(4)?,
                        _ => self.le(8)?,
                    };
                    let n = usize::try_from(n).map_err(|_| "bytes too long")?;
                    self.take(n)?;
                    self.push(V::Bytes(n))?;
                }
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(V::Global(global(&module, &name)?))?;
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (V::Str(m), V::Str(n)) = (&module, &name) else {
                        return Err("STACK_GLOBAL of values that are not strings".into());
                    };
                    self.push(V::Global(global(m, n)?))?;
                }
                op::BINPERSID => {
                    let pid = self.pop()?;
                    let V::Tuple(items, _) = &pid else { return Err("a persistent id that is not a tuple".into()) };
                    let storage = match items.as_slice() {
                        [V::Str(tag), V::Global(Global::Storage(dtype)), V::Str(key), V::Str(_location), numel]
                        | [
                            V::Str(tag),
                            V::Global(Global::Storage(dtype)),
                            V::Str(key),
                            V::Str(_location),
                            numel,
                            V::None,
                        ] if &**tag == "storage" => V::Storage {
                            dtype: *dtype,
                            key: key.to_string(),
                            numel: Self::int(numel, "a storage's size")?,
                        },
                        _ => return Err("a persistent id that is not ('storage', type, key, location, size)".into()),
                    };
                    self.push(storage)?;
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = Self::reduce(f, args)?;
                    self.push(v)?;
                }
                op::BUILD => {
                    // BUILD: an OrderedDict's `_metadata` or a tensor's state; state dicts need neither.
                    let _state = self.pop()?;
                    match self.top_mut()? {
                        V::Dict(..) | V::Tensor(_) => {}
                        other => return Err(format!("BUILD on {}", other.kind()).into()),
                    }
                }
                op::SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.add_to_top(vec![k, v], true)?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    self.add_to_top(items, true)?;
                }
                op::APPEND => {
                    let v = self.pop()?;
                    self.add_to_top(vec![v], false)?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.add_to_top(items, false)?;
                }
                other => {
                    let m = format!("pickle opcode 0x{other:02x}, which a state dict does not use");
                    return Err(PickleError::new(Why::Unsupported, m));
                }
            }
        }
    }

    fn set_items(target: &mut V, items: Vec<V>) -> Result<(), PickleError> {
        let V::Dict(entries, depth) = target else { return Err(format!("SETITEMS on {}", target.kind()).into()) };
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            *depth = (*depth).max(1 + k.depth().max(v.depth()));
            if *depth > MAX_DEPTH {
                return Err(PickleError::new(Why::Limit, format!("values nested more than {MAX_DEPTH} deep")));
            }
            entries.push((k, v));
        }
        Ok(())
    }

    fn append(target: &mut V, items: Vec<V>) -> Result<(), PickleError> {
        let V::List(entries, depth) = target else { return Err(format!("APPENDS on {}", target.kind()).into()) };
        for v in items {
            *depth = (*depth).max(1 + v.depth());
            if *depth > MAX_DEPTH {
                return Err(PickleError::new(Why::Limit, format!("values nested more than {MAX_DEPTH} deep")));
            }
            entries.push(v);
        }
        Ok(())
    }
}

/// The pickle opcodes a state dict uses, by their names in CPython's `pickletools` (anything else is refused).
mod op {
    pub(super) const PROTO: u8 = 0x80;
    pub(super) const FRAME: u8 = 0x95;
    pub(super) const STOP: u8 = b'.';
    pub(super) const MARK: u8 = b'(';
    pub(super) const EMPTY_DICT: u8 = b'}';
    pub(super) const EMPTY_LIST: u8 = b']';
    pub(super) const EMPTY_TUPLE: u8 = b')';
    pub(super) const TUPLE: u8 = b't';
    pub(super) const TUPLE1: u8 = 0x85;
    pub(super) const TUPLE3: u8 = 0x87;
    pub(super) const BINPUT: u8 = b'q';
    pub(super) const LONG_BINPUT: u8 = b'r';
    pub(super) const MEMOIZE: u8 = 0x94;
    pub(super) const BINGET: u8 = b'h';
    pub(super) const LONG_BINGET: u8 = b'j';
    pub(super) const BININT: u8 = b'J';
    pub(super) const BININT1: u8 = b'K';
    pub(super) const BININT2: u8 = b'M';
    pub(super) const LONG1: u8 = 0x8a;
    pub(super) const NONE: u8 = b'N';
    pub(super) const NEWTRUE: u8 = 0x88;
    pub(super) const NEWFALSE: u8 = 0x89;
    pub(super) const BINFLOAT: u8 = b'G';
    pub(super) const BINUNICODE: u8 = b'X';
    pub(super) const SHORT_BINUNICODE: u8 = 0x8c;
    pub(super) const BINUNICODE8: u8 = 0x8d;
    pub(super) const SHORT_BINBYTES: u8 = b'C';
    pub(super) const BINBYTES: u8 = b'B';
    pub(super) const BINBYTES8: u8 = 0x8e;
    pub(super) const GLOBAL: u8 = b'c';
    pub(super) const STACK_GLOBAL: u8 = 0x93;
    pub(super) const BINPERSID: u8 = b'Q';
    pub(super) const REDUCE: u8 = b'R';
    pub(super) const BUILD: u8 = b'b';
    pub(super) const SETITEM: u8 = b's';
    pub(super) const SETITEMS: u8 = b'u';
    pub(super) const APPEND: u8 = b'a';
    pub(super) const APPENDS: u8 = b'e';
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message, for tests that read it (the kind is checked where it decides something).
    fn state_dict(data: &[u8]) -> Result<Vec<(String, TensorRef)>, String> {
        super::state_dict(data).map_err(|e| e.to_string())
    }

    #[test]
    fn errors_say_their_kind() {
        let why = |data: &[u8]| super::state_dict(data).unwrap_err().why;
        assert_eq!(why(b"\x80\x02}"), Why::EndsEarly);
        assert_eq!(why(b"\x80\x02\xff."), Why::Unsupported);
        assert_eq!(why(b"\x80\x02cbuiltins\neval\n."), Why::Unsupported);
        assert_eq!(why(b"\x80\x02]."), Why::Malformed, "a list, not a state dict");
        assert_eq!(why(&memo_flood()), Why::Limit, "past the memory budget");
    }

    /// The pickle of `{"w": tensor}` as torch.save writes it (protocol 2), for a [2, 3] bf16 tensor at offset 4.
    fn one_tensor() -> Vec<u8> {
        let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00wq\x02".to_vec();
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04");
        p.extend_from_slice(
            b"ctorch\nBFloat16Storage\nq\x05X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpuq\x07K\x0atq\x08Q",
        );
        p.extend_from_slice(b"K\x04K\x02K\x03\x86q\tK\x03K\x01\x86q\n\x89h\x00)Rq\x0btq\x0cRq\ru.");
        p
    }

    #[test]
    fn reads_a_state_dict() {
        let sd = state_dict(&one_tensor()).unwrap();
        assert_eq!(sd.len(), 1);
        let (k, t) = &sd[0];
        assert_eq!(k, "w");
        assert_eq!((t.storage.as_str(), t.dtype, t.storage_numel, t.offset), ("0", Dtype::Bf16, 10, 4));
        assert_eq!((t.shape.clone(), t.stride.clone(), t.is_contiguous()), (vec![2, 3], vec![3, 1], true));
        let transposed = TensorRef { shape: vec![3, 2], stride: vec![1, 3], ..t.clone() };
        assert!(!transposed.is_contiguous());
    }

    #[test]
    fn refuses_what_a_state_dict_never_needs() {
        let err = state_dict(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.").unwrap_err();
        assert!(err.contains("os.system") && err.contains("refused without running it"), "{err}");
        assert!(state_dict(b"\x80\x02cbuiltins\neval\n.").unwrap_err().contains("builtins.eval"));
        // STACK_GLOBAL is checked the same way.
        assert!(state_dict(b"\x80\x04\x8c\x02os\x8c\x06system\x93.").unwrap_err().contains("os.system"));
        // Truncated, empty, not a dict, unknown opcode, unbalanced.
        let good = one_tensor();
        assert!(state_dict(&good[..good.len() / 2]).unwrap_err().contains("ends early"));
        assert!(state_dict(b"").is_err());
        assert!(state_dict(b"\x80\x02K\x01.").unwrap_err().contains("not a state dict"));
        assert!(state_dict(b"\x80\x02i.").unwrap_err().contains("opcode"));
        assert!(state_dict(b"\x80\x02t.").unwrap_err().contains("MARK"));
        assert!(state_dict(b"\x80\x02h\x05.").unwrap_err().contains("memo"));
    }

    /// A list of one 4 MiB string fetched back from the memo a million times.
    fn memo_flood() -> Vec<u8> {
        let mut p = b"\x80\x02]q\x00(X\x00\x00\x40\x00".to_vec();
        p.extend(std::iter::repeat_n(b'a', 4 << 20));
        p.extend_from_slice(b"q\x01");
        for _ in 0..1_000_000 {
            p.extend_from_slice(b"h\x01");
        }
        p.extend_from_slice(b"e.");
        p
    }

    #[test]
    fn a_key_stored_twice_and_a_memo_flood_are_refused() {
        // {"w": t, "w": t}: torch keeps the last, so which one is meant is not the reader's to guess.
        let one = one_tensor();
        let mut twice = one[..one.len() - 2].to_vec();
        twice.extend_from_slice(b"X\x01\x00\x00\x00wh\x0du.");
        assert!(state_dict(&twice).unwrap_err().contains("twice"), "{:?}", state_dict(&twice));
        // A 4 MiB string copied from the memo over and over: stopped by its cost, not by running out of memory.
        let p = memo_flood();
        let err = state_dict(&p).unwrap_err();
        assert!(err.contains("values") || err.contains("MiB of memory"), "{err}");
    }

    // One test per cap (issue 30): each fails if its cap is dropped.

    #[test]
    fn the_memo_cap_refuses_one_entry_more() {
        // None, then 2^20 + 1 LONG_BINPUTs under distinct keys.
        let mut p = b"\x80\x02N".to_vec();
        for k in 0..=(MAX_MEMO as u32) {
            p.push(b'r');
            p.extend_from_slice(&k.to_le_bytes());
        }
        p.push(b'.');
        // (The byte budget would stop this stream first; the memo cap is checked without it.)
        let run = |data: &[u8]| {
            let mut r = Reader::new(data, 0, u64::MAX);
            r.run().map(|_| r.memo.len())
        };
        let err = run(&p).unwrap_err();
        assert_eq!(err, PickleError::new(Why::Limit, format!("more than {MAX_MEMO} memo entries")));
        // One fewer is within the cap.
        let fewer = [&p[..3], &p[3 + 5..]].concat();
        assert_eq!(run(&fewer), Ok(MAX_MEMO));
    }

    #[test]
    fn the_size_cap_refuses_a_pickle_one_byte_too_long() {
        let mut p = one_tensor();
        p.resize(MAX_PICKLE as usize + 1, b'.');
        let err = state_dict(&p).unwrap_err();
        assert!(err.contains(&format!("more than the {MAX_PICKLE} allowed")), "{err}");
        p.truncate(MAX_PICKLE as usize);
        assert_eq!(state_dict(&p).unwrap().len(), 1, "a pickle at the cap is read");
    }

    #[test]
    fn the_value_cap_refuses_one_value_more() {
        // MAX_NODES Nones fit (each is one value); one more does not. Through `state_dict` the byte budget (40
        // bytes a value against 4 bytes of budget per input byte) would trip first, so the reader runs here with
        // no budget, and only the value cap can stop it.
        let n = MAX_NODES as usize + 1;
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat_n(b'N', n));
        p.push(b'.');
        let mut r = Reader::new(&p, 0, u64::MAX);
        let err = r.run().unwrap_err();
        assert_eq!(err, PickleError::new(Why::Limit, format!("more than {MAX_NODES} values")));
        assert_eq!(r.stack.len(), MAX_NODES as usize);
    }

    #[test]
    fn the_byte_budget_refuses_before_allocating() {
        // A 4 MiB string fetched from the memo a million times shares one copy: cheap in memory, but every fetch is
        // still a value; a list that holds them all trips the budget (or the value cap) without taking gigabytes.
        let p = memo_flood();
        let err = state_dict(&p).unwrap_err();
        assert!(err.contains("MiB of memory"), "{err}");
        // A string longer than the budget is refused before it is copied.
        let mut r = Reader::new(b"\x80\x02X\x00\x00\x00\x10", 0, 1 << 20);
        let err = r.run().unwrap_err();
        assert!(err.why == Why::Limit && err.message.contains("MiB of memory"), "{err}");
        assert_eq!(budget(0), BUDGET_FLOOR);
        assert_eq!(budget(usize::MAX), BUDGET_CAP);
    }

    #[test]
    fn the_depth_cap_refuses_one_level_more() {
        let nested = |levels: usize| {
            let mut p = b"\x80\x02N".to_vec();
            p.extend(std::iter::repeat_n(0x85u8, levels));
            p.push(b'.');
            p
        };
        let err = state_dict(&nested(MAX_DEPTH as usize + 1)).unwrap_err();
        assert!(err.contains(&format!("nested more than {MAX_DEPTH} deep")), "{err}");
        assert!(state_dict(&nested(MAX_DEPTH as usize)).unwrap_err().contains("not a state dict"));
        // MARKs count too.
        let mut marks = b"\x80\x02".to_vec();
        marks.extend(std::iter::repeat_n(b'(', MAX_DEPTH as usize + 1));
        assert!(state_dict(&marks).unwrap_err().contains(&format!("MARKs nested more than {MAX_DEPTH}")));
    }

    #[test]
    fn many_keys_are_checked_for_duplicates_in_linear_time() {
        // 200,000 tensors: comparing each key with every earlier one (2·10^10 comparisons) would take minutes.
        let n = 200_000u32;
        let mut p = b"\x80\x02}q\x00(".to_vec();
        let storage = b"ctorch\nBFloat16Storage\nq\x01";
        for i in 0..n {
            let key = format!("t{i}");
            p.push(b'X');
            p.extend_from_slice(&(key.len() as u32).to_le_bytes());
            p.extend_from_slice(key.as_bytes());
            p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage");
            if i == 0 {
                p.extend_from_slice(storage);
            } else {
                p.extend_from_slice(b"h\x01");
            }
            p.extend_from_slice(b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00K\x01\x85K\x01\x85\x89)tR");
        }
        p.extend_from_slice(b"u.");
        let t = std::time::Instant::now();
        let sd = state_dict(&p).unwrap();
        assert_eq!(sd.len(), n as usize);
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "{:?} for {n} keys", t.elapsed());
        // And a duplicate among them is still found.
        let mut dup = p[..p.len() - 2].to_vec();
        dup.extend_from_slice(b"X\x02\x00\x00\x00t7ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storageh\x01");
        dup.extend_from_slice(b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00K\x01\x85K\x01\x85\x89)tRu.");
        assert!(state_dict(&dup).unwrap_err().contains("\"t7\" twice"));
    }

    #[test]
    fn a_legacy_prefix_too_short_says_it_ran_out_and_a_damaged_one_does_not() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/torch-bin/llama-legacy-bf16/pytorch_model.bin");
        let file = std::fs::read(path).unwrap();
        let whole = legacy(&file).unwrap();
        // Every prefix that cuts the pickles short asks for more (the reader's grow-and-retry loop relies on it).
        for cut in [LEGACY_MAGIC.len(), 40, whole.data_start as usize / 2, whole.data_start as usize - 1] {
            let e = legacy(&file[..cut]).unwrap_err();
            assert!(e.ran_out(), "cut at {cut}: {e}");
        }
        // A damaged byte inside (an opcode no state dict uses) is not a short read.
        let mut bad = file[..whole.data_start as usize].to_vec();
        let at = LEGACY_MAGIC.len() + 1;
        bad[at] = b'i';
        let e = legacy(&bad).unwrap_err();
        assert!(!e.ran_out(), "{e}");
    }

    #[test]
    fn caps_nesting_and_work() {
        // 100 nested 1-tuples: refused at the depth cap, not a stack overflow.
        let mut p = b"\x80\x02N".to_vec();
        p.extend(std::iter::repeat_n(0x85u8, 100));
        p.push(b'.');
        assert!(state_dict(&p).unwrap_err().contains("nested"));
        // Doubling a list through the memo: bounded by the value budget.
        let mut p = b"\x80\x02]q\x00".to_vec();
        for _ in 0..40 {
            p.extend_from_slice(b"(h\x00h\x00tq\x00");
        }
        p.push(b'.');
        let err = state_dict(&p).unwrap_err();
        assert!(err.contains("nested") || err.contains("values") || err.contains("MiB of memory"), "{err}");
    }
}
