#!/usr/bin/env python3
"""An independent numpy reference for gamma-run's `token_stats` frame: recomputes every tensor of
stats.safetensors from W and compares.

    python3 examples/python/token_stats_check.py tensors/m/W.safetensors tensors/m/stats.safetensors
    python3 examples/python/token_stats_check.py --selftest      # checks this script itself (numpy only)

Needs numpy only: both files are parsed from their raw bytes (8-byte little-endian header length N, N bytes of
JSON {name: {dtype, shape, data_offsets: [begin, end]}}, then the data, offsets relative to its start), and bf16
is handled as 16-bit patterns, so neither safetensors nor ml_dtypes is needed.

What is checked (W: bf16 [V, d]; the stats file's tensors, in this file order):
  duplicate_of        I64 [V]      first earlier row with the same 2·d bytes, else −1 (+0/−0 and NaN payloads
                                   differ as bytes do)
  exponent_histogram  I64 [2, 256] elements by sign bit and biased exponent
  distinct_values     I64 []       distinct 16-bit patterns in all of W
  mean                F64 [d]      column means: float64 sums over 256-row chunks in row order, the chunk sums
                                   added in chunk order, then / V — compared bit for bit
  norm                F32|F64 [V]  sqrt(Σ x²) over the exact reals, correctly rounded (ties to even); NaN for a
                                   row with a NaN, else +Inf for a row with ±Inf
  centered_norm       F32|F64 [V]  sqrt(Σ (x − mean)²), each term the float64 square of the float64 difference,
                                   their exact sum's root correctly rounded; one ulp either way is allowed.
                                   A row with a NaN: NaN; with ±Inf: IEEE through the mean (CENTERED_INF_ROW_IS_INF below);
                                   a finite row follows IEEE through a non-finite mean (a NaN mean column
                                   gives NaN, an infinite one +Inf)
  max_abs             F32 [V]      largest |x| over the row's non-NaN values; NaN when all are NaN
  zeros, subnormals, nonfinite  I32 [V]  elements that are ±0; exponent 0 with a non-zero mantissa; exponent 255
  column_distinct     I32 [d]      distinct 16-bit patterns per column
Float tensors compare bit for bit, any NaN matching any NaN. A `layout` line checks that the tensors are stored
in that order, back to back, filling the file.

Output: one line per check (`ok  norm`, or `MISMATCH norm: 3 rows differ, first at row 17: got … want …`), then
`N passed, M failed`. Exit 0 when all match, 1 on any mismatch, 2 on bad input (unreadable or malformed files,
W not a bf16 matrix).

Norms are exact, not merely close: each row's float64 sum of squares carries a proven error bound, and only the
rows whose rounded result that bound leaves in doubt (about one in 10⁵ for f32; every row for f64 output) are
summed again exactly with Python integers and rooted with math.isqrt. W is processed in row blocks, so memory
stays near the size of the file. V = 4096, d = 256 takes a fraction of a second (f64 norms: about a second);
Qwen3-4B's W (151936 × 2560) about 10 s for f32 norms, minutes for f64.
"""
import contextlib
import io
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np

# The stats file's tensors, in file order: (name, allowed dtypes, shape with "V"/"d" placeholders).
SPEC = [
    ("duplicate_of", ("I64",), ("V",)),
    ("exponent_histogram", ("I64",), (2, 256)),
    ("distinct_values", ("I64",), ()),
    ("mean", ("F64",), ("d",)),
    ("norm", ("F32", "F64"), ("V",)),
    ("centered_norm", ("F32", "F64"), ("V",)),
    ("max_abs", ("F32",), ("V",)),
    ("zeros", ("I32",), ("V",)),
    ("subnormals", ("I32",), ("V",)),
    ("nonfinite", ("I32",), ("V",)),
    ("column_distinct", ("I32",), ("d",)),
]

# safetensors dtype names → little-endian numpy dtypes (BF16 as its raw 16-bit patterns).
DTYPES = {
    "BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2", "F16": "<f2", "BF16": "<u2",
    "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8",
}

MEAN_CHUNK_ROWS = 256  # the mean's chunk, fixed by the spec

# centered_norm of a row holding ±Inf and no NaN. gamma-run's rule (README, "token_stats"): the IEEE result through
# the mean (False): that row's infinity meets an infinite or NaN mean in its column (an infinity in W always makes
# its column's mean non-finite), inf − inf or x − NaN is NaN, so the row's centred norm is NaN. True would check the
# other reading (+Inf, as for norm).
CENTERED_INF_ROW_IS_INF = False


class BadInput(Exception):
    """A file that cannot be read as the safetensors file it should be (exit 2)."""


# ---------------------------------------------------------------------------------------------------------------
# Reading and writing safetensors from raw bytes
# ---------------------------------------------------------------------------------------------------------------

def read_safetensors(path):
    """(entries, data_len): entries maps name → dict(dtype, shape, begin, end, array), in header order; array is a
    read-only numpy view of the tensor's bytes (BF16 as uint16 bit patterns)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BadInput(f"{path}: {e.strerror or e}")
    if len(raw) < 8:
        raise BadInput(f"{path}: {len(raw)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise BadInput(f"{path}: header length {n} runs past the end of the file ({len(raw)} bytes)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadInput(f"{path}: the header is not JSON: {e}")
    if not isinstance(header, dict):
        raise BadInput(f"{path}: the header is not a JSON object")
    data = memoryview(raw)[8 + n:]
    entries = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = e["dtype"], [int(s) for s in e["shape"]], e["data_offsets"]
        except (TypeError, KeyError, ValueError) as err:
            raise BadInput(f"{path}: tensor {name!r} has a malformed header entry ({err!r}): {e!r}")
        if dtype not in DTYPES:
            raise BadInput(f"{path}: tensor {name!r} has an unknown dtype {dtype!r}")
        npdt = np.dtype(DTYPES[dtype])
        count = math.prod(shape)
        if any(s < 0 for s in shape) or not (0 <= begin <= end <= len(data)) or end - begin != count * npdt.itemsize:
            raise BadInput(f"{path}: tensor {name!r}: shape {shape} × {npdt.itemsize} bytes does not fit "
                           f"data_offsets [{begin}, {end}] within {len(data)} data bytes")
        arr = np.frombuffer(data, dtype=npdt, count=count, offset=begin).reshape(shape)
        entries[name] = dict(dtype=dtype, shape=shape, begin=begin, end=end, array=arr)
    return entries, len(data)


def write_safetensors(path, tensors):
    """Writes [(name, dtype, array)] in that order, back to back (the self-test's files)."""
    header, blobs, at = {}, [], 0
    for name, dtype, arr in tensors:
        b = np.ascontiguousarray(arr, dtype=np.dtype(DTYPES[dtype])).tobytes()
        header[name] = {"dtype": dtype, "shape": list(np.shape(arr)), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # pad the header so the data starts 8-byte aligned, as safetensors writers do
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load_w(path):
    """W's bit patterns as a uint16 [V, d] array."""
    entries, _ = read_safetensors(path)
    if "W" not in entries:
        raise BadInput(f"{path}: no tensor named W (found {', '.join(entries) or 'none'})")
    w = entries["W"]
    if w["dtype"] != "BF16" or len(w["shape"]) != 2 or min(w["shape"]) < 1:
        raise BadInput(f"{path}: W is {w['dtype']} {w['shape']}, expected a non-empty BF16 matrix [V, d]")
    return w["array"]


# ---------------------------------------------------------------------------------------------------------------
# The reference
# ---------------------------------------------------------------------------------------------------------------

def bf16_to_f32(bits):
    """bf16 bit patterns → float32 values (exact: bf16 is the top half of a float32)."""
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32)


def bf16_to_f64(bits):
    return bf16_to_f32(bits).astype(np.float64)


# Output formats for the norms: precision p (bits), smallest normal exponent, the exponent where +Inf begins.
FORMATS = {"F32": (24, -126, 128, np.float32), "F64": (53, -1022, 1024, np.float64)}


def exact_sum(terms):
    """The exact sum of finite float64 values, as (n, e) with sum = n / 2**e (n a Python int)."""
    n = 0
    for t in terms.tolist():
        if t:
            num, den = t.as_integer_ratio()  # den is a power of two, at most 2**1074
            n += num << (1074 - (den.bit_length() - 1))
    return n, 1074


def round_sqrt(n, e, fmt):
    """sqrt(n / 2**e) for an integer n ≥ 0, correctly rounded (to nearest, ties to even) in `fmt`, as a Python
    float holding the rounded value (or inf past the format's largest finite value)."""
    p, emin, emax, _ = FORMATS[fmt]
    if n == 0:
        return 0.0
    if e % 2:
        n, e = n << 1, e + 1
    # Scale so the integer root r = isqrt(n·4^s) carries at least p + 66 bits; then t = sqrt(n·4^s) / 2^m with
    # r = floor(sqrt(n·4^s)), and `sticky` says whether the root is inexact.
    s = max(0, (2 * (p + 66) - n.bit_length()) // 2 + 1)
    nn = n << (2 * s)
    r = math.isqrt(nn)
    sticky = r * r != nn
    m = e // 2 + s
    # t lies in [2^k, 2^(k+1)); its ulp in the format is 2^q (fixed at the subnormal ulp below the normals).
    k = r.bit_length() - 1 - m
    q = max(k, emin) - (p - 1)
    drop = m + q  # bits of r below the ulp (≥ 66 by the scaling above)
    mant, rem, half = r >> drop, r & ((1 << drop) - 1), 1 << (drop - 1)
    if rem > half or (rem == half and (sticky or mant & 1)):
        mant += 1
    if mant.bit_length() + q > emax:  # mant·2^q ≥ 2^emax: rounds to infinity
        return math.inf
    return math.ldexp(mant, q)  # exact: mant has at most p + 1 bits


def sqrt_of_sums(terms, fmt):
    """Per row of `terms` (float64, finite, ≥ 0): sqrt of the row's exact sum, correctly rounded in `fmt`.

    F32 fast path: s = the float64 sum of the row, in any order. For non-negative terms |s − S| ≤ γ(n−1)·S with
    γ(k) = k·2^-53 / (1 − k·2^-53) (the terms here never underflow or overflow float64), so margin = (n+4)·2^-52
    exceeds that bound with room for the roundings of s·(1 ± margin) and of their float64 roots: those roots lie
    below and above sqrt(S). Rounding to f32 is monotone, so where both round to the same f32, that is sqrt(S)'s
    correctly rounded value. The other rows, and every row for F64 (whose ulp is finer than the bound), are
    summed exactly with integers and rooted with math.isqrt."""
    rows, n = terms.shape
    out = np.empty(rows, dtype=FORMATS[fmt][3])
    if fmt == "F32":
        margin = (n + 4) * 2.0 ** -52
        with np.errstate(over="ignore"):  # sums past the f32 range round to inf at both ends, as they must
            s = terms.sum(axis=1)
            lo = np.sqrt(s * (1 - margin)).astype(np.float32)
            hi = np.sqrt(s * (1 + margin)).astype(np.float32)
        out[:] = lo
        doubtful = np.flatnonzero(lo.view(np.uint32) != hi.view(np.uint32))
    else:
        doubtful = range(rows)
    for i in doubtful:
        out[i] = round_sqrt(*exact_sum(terms[i]), fmt)
    return out


def column_means(u):
    """The mean row, accumulated exactly as the spec says: float64 column sums over 256-row chunks in row order,
    the chunk sums added to a running total in chunk order, then divided by V."""
    v, d = u.shape
    total = np.zeros(d)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and ±Inf propagate as IEEE says
        for c0 in range(0, v, MEAN_CHUNK_ROWS):
            chunk = bf16_to_f64(u[c0:c0 + MEAN_CHUNK_ROWS])
            s = np.zeros(d)
            for row in chunk:  # one row at a time: the order is the spec's, not numpy's pairwise summation
                s += row
            total += s
        return total / v


def duplicates(u):
    """duplicate_of: rows viewed as opaque byte strings, sorted stably (equal rows keep their index order, so a
    group's first row is its smallest index), neighbours in that order compared byte for byte."""
    v, d = u.shape
    rows = np.ascontiguousarray(u).view(np.dtype((np.void, 2 * d))).reshape(v)
    order = np.argsort(rows, kind="stable")
    new_group = np.ones(v, dtype=bool)
    for b0 in range(0, v - 1, 4096):  # in blocks: never a sorted copy of all of W
        b1 = min(v - 1, b0 + 4096)
        new_group[b0 + 1:b1 + 1] = rows[order[b0 + 1:b1 + 1]] != rows[order[b0:b1]]
    firsts = order[new_group]                          # the first row of each group, in sorted order
    first_of = firsts[np.cumsum(new_group) - 1]        # per sorted position: its group's first row
    out = np.full(v, -1, dtype=np.int64)
    out[order] = first_of
    out[out == np.arange(v)] = -1                      # a group's first row is −1 itself
    return out


def distinct_counts(u):
    """(distinct_values, column_distinct): for a band of columns, a table of (column, pattern) marks every pair
    seen; its marks are counted per column, and their union over all columns counted once."""
    v, d = u.shape
    band = 64
    per_column = np.empty(d, dtype=np.int32)
    anywhere = np.zeros(65536, dtype=bool)
    for j0 in range(0, d, band):
        j1 = min(d, j0 + band)
        seen = np.zeros((j1 - j0, 65536), dtype=bool)
        seen[np.arange(j1 - j0), u[:, j0:j1]] = True
        per_column[j0:j1] = np.count_nonzero(seen, axis=1)
        anywhere |= seen.any(axis=0)
    return np.array(np.count_nonzero(anywhere), dtype=np.int64), per_column


def centered_terms(x, mean):
    """The float64 squares (x − mean)², row by row."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = x - mean
        return diff * diff


def reference(u, norm_dtype="F32", centered_dtype=None):
    """Every tensor of stats.safetensors for W's bit patterns `u` (uint16 [V, d]), as {name: numpy array}."""
    centered_dtype = centered_dtype or norm_dtype
    v, d = u.shape
    u = np.ascontiguousarray(u)
    mean = column_means(u)
    mean_nan = bool(np.isnan(mean).any())
    mean_inf = bool(np.isinf(mean).any())
    per_row = {k: [] for k in ("norm", "centered_norm", "max_abs", "zeros", "subnormals", "nonfinite")}
    histogram = np.zeros(512, dtype=np.int64)
    block = max(1, (1 << 21) // d)  # ~2M elements at a time: float64 temporaries of ~16 MiB
    for r0 in range(0, v, block):
        b = u[r0:r0 + block]
        histogram += np.bincount((b >> 7).ravel(), minlength=512)  # index sign·256 + exponent
        exp, mant = (b >> 7) & 0xFF, b & 0x7F
        is_nan = (exp == 0xFF) & (mant != 0)
        is_inf = (exp == 0xFF) & (mant == 0)
        per_row["zeros"].append(((b & 0x7FFF) == 0).sum(axis=1, dtype=np.int32))
        per_row["subnormals"].append(((exp == 0) & (mant != 0)).sum(axis=1, dtype=np.int32))
        per_row["nonfinite"].append((exp == 0xFF).sum(axis=1, dtype=np.int32))
        # max_abs: for non-NaN values |x| orders as the 15 low bits do; NaNs count as +0, an all-NaN row is NaN.
        mag = np.where(is_nan, 0, b & 0x7FFF).max(axis=1)
        max_abs = bf16_to_f32(mag)
        max_abs[is_nan.all(axis=1)] = np.nan
        per_row["max_abs"].append(max_abs)
        row_nan = is_nan.any(axis=1)
        row_inf = is_inf.any(axis=1) & ~row_nan
        special = row_nan | row_inf
        x = bf16_to_f64(np.where(is_nan | is_inf, 0, b))  # non-finite entries zeroed; their rows are overridden
        # norm: bf16 squares are exact in float64 (at most 16 significant bits, exponents −266 … 256).
        norm = sqrt_of_sums(x * x, norm_dtype)
        norm[row_inf], norm[row_nan] = np.inf, np.nan
        per_row["norm"].append(norm)
        # centered_norm: rows with non-finite values by the row rule; finite rows through the mean as IEEE says.
        sq = centered_terms(x, mean)
        cen = np.empty(len(b), dtype=FORMATS[centered_dtype][3])
        ieee_nan = np.isnan(sq).any(axis=1) if mean_nan else np.zeros(len(b), dtype=bool)
        ieee_inf = np.isinf(sq).any(axis=1) & ~ieee_nan if mean_inf else np.zeros(len(b), dtype=bool)
        finite = ~(special | ieee_nan | ieee_inf)
        cen[finite] = sqrt_of_sums(sq[finite], centered_dtype)
        cen[ieee_inf] = np.inf
        cen[ieee_nan] = np.nan
        if CENTERED_INF_ROW_IS_INF:
            cen[row_inf] = np.inf  # the row's own values decide first
        cen[row_nan] = np.nan
        per_row["centered_norm"].append(cen)
    distinct, per_column = distinct_counts(u)
    stats = {
        "duplicate_of": duplicates(u),
        "exponent_histogram": histogram.reshape(2, 256),
        "distinct_values": distinct,
        "mean": mean,
    }
    for k in ("norm", "centered_norm", "max_abs", "zeros", "subnormals", "nonfinite"):
        stats[k] = np.concatenate(per_row[k])
    stats["column_distinct"] = per_column
    return stats


# ---------------------------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------------------------

UNITS = {"V": "rows", "d": "columns"}  # how a 1-D tensor's index is named in messages
SPEC_UNITS = {name: (shape[0] if len(shape) == 1 else "") for name, _, shape in SPEC}


def show(x):
    """A value for a message: floats with their bit pattern."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        bits = x.view(np.uint32 if x.dtype.itemsize == 4 else np.uint64)
        return f"{x.item()!r} (0x{int(bits):0{2 * x.dtype.itemsize}x})"
    return repr(x.item())


def ordered(bits):
    """Float bit patterns → integers in the floats' order (neighbouring floats differ by 1, ±0 both map to 0)."""
    s = bits.view(np.int32 if bits.dtype.itemsize == 4 else np.int64).astype(np.int64)
    magnitude = np.int64((1 << (8 * bits.dtype.itemsize - 1)) - 1)
    return np.where(s < 0, -(s & magnitude), s)


def compare(name, got, want, unit, tolerance_ulps=0):
    """(ok, line) for one tensor."""
    got, want = np.asarray(got), np.asarray(want)
    extra = ""
    if got.dtype.kind == "f":
        ui = np.uint32 if got.dtype.itemsize == 4 else np.uint64
        gb, wb = got.view(ui), want.view(ui)
        both_nan = np.isnan(got) & np.isnan(want)
        exact = (gb == wb) | both_nan
        bad = ~exact
        if tolerance_ulps:
            # Magnitudes stay below 2^63, so a difference that wraps (opposite signs, both huge) is still ≥ 2.
            dist = np.abs(ordered(gb) - ordered(wb))
            near = ~exact & ~np.isnan(got) & ~np.isnan(want) & (dist <= tolerance_ulps)
            bad = ~exact & ~near
            extra = f" ({int(exact.sum())} exact, {int(near.sum())} within {tolerance_ulps} ulp)"
    else:
        bad = got != want
    if got.ndim == 0:
        return (True, f"ok  {name}") if not bad else (False, f"MISMATCH {name}: got {show(got)} want {show(want)}")
    idx = np.argwhere(bad)
    if len(idx) == 0:
        return True, f"ok  {name}{extra}"
    first = tuple(int(i) for i in idx[0])
    where = f"{unit[:-1]} {first[0]}" if got.ndim == 1 else f"[{', '.join(map(str, first))}]"
    return False, (f"MISMATCH {name}: {len(idx)} {unit} differ, first at {where}: "
                   f"got {show(got[first])} want {show(want[first])}{extra}")


def check(w_path, stats_path, out=sys.stdout):
    """Compares the stats file with the reference; prints the lines; returns the exit code."""
    try:
        u = load_w(w_path)
        entries, data_len = read_safetensors(stats_path)
    except BadInput as e:
        print(f"bad input: {e}", file=sys.stderr)
        return 2
    v, d = u.shape
    results = []
    # Layout: the spec's tensors, in the spec's order, back to back, filling the data section.
    names = [n for n, _, _ in SPEC]
    by_offset = sorted(entries, key=lambda n: (entries[n]["begin"], entries[n]["end"]))
    ends = [entries[n]["end"] for n in by_offset]
    contiguous = (not by_offset or entries[by_offset[0]]["begin"] == 0) and all(
        entries[a]["end"] == entries[b]["begin"] for a, b in zip(by_offset, by_offset[1:]))
    if by_offset == names and contiguous and (ends[-1] if ends else 0) == data_len:
        results.append((True, "ok  layout"))
    else:
        results.append((False, f"MISMATCH layout: tensors by offset {by_offset}{'' if contiguous else ' (with gaps)'}, "
                               f"data {data_len} bytes; expected {names} back to back"))
    # The dtypes of norm and centered_norm follow the frame's dtype parameter: take them from the file.
    dt = lambda n, default="F32": entries[n]["dtype"] if n in entries and entries[n]["dtype"] in ("F32", "F64") else default
    want = reference(u, norm_dtype=dt("norm"), centered_dtype=dt("centered_norm"))
    for name, dtypes, shape in SPEC:
        shape = [v if s == "V" else d if s == "d" else s for s in shape]
        e = entries.get(name)
        if e is None:
            results.append((False, f"MISMATCH {name}: missing from {stats_path}"))
        elif e["dtype"] not in dtypes or e["shape"] != shape:
            results.append((False, f"MISMATCH {name}: {e['dtype']} {e['shape']}, expected {'|'.join(dtypes)} {shape}"))
        else:
            unit = UNITS.get(SPEC_UNITS[name], "entries")
            results.append(compare(name, e["array"], want[name], unit, tolerance_ulps=1 if name == "centered_norm" else 0))
    extra = sorted(set(entries) - set(names))
    if extra:
        results.append((False, f"MISMATCH extra tensors: {', '.join(extra)}"))
    for _, line in results:
        print(line, file=out)
    failed = sum(not ok for ok, _ in results)
    print(f"{len(results) - failed} passed, {failed} failed", file=out)
    return 1 if failed else 0



# ---------------------------------------------------------------------------------------------------------------
# Self-test: planted matrices, checked against brute force in plain Python
# ---------------------------------------------------------------------------------------------------------------

def bf(x):
    """The bf16 bit pattern of a float that bf16 represents exactly (the self-test plants only such values)."""
    b = struct.unpack("<I", struct.pack("<f", x))[0]
    assert b & 0xFFFF == 0 and struct.unpack("<f", struct.pack("<I", b))[0] == x, x
    return b >> 16


@np.errstate(over="ignore")  # nextafter(largest finite, inf) is inf, as meant
def brute_round_sqrt(s, fmt):
    """Correctly rounded sqrt of a Fraction s ≥ 0, by a method independent of round_sqrt: start near it and
    step to neighbouring floats while the exact midpoint, squared, says the root lies beyond."""
    from fractions import Fraction
    _, _, emax, npt = FORMATS[fmt]
    if s == 0:
        return npt(0.0)
    f = npt(math.sqrt(float(s)))
    big = npt(np.finfo(npt).max)
    up = lambda a: np.nextafter(a, npt(np.inf))
    down = lambda a: np.nextafter(a, npt(0))
    # Treat +inf as the value 2^emax for the midpoint with the largest finite value (the overflow threshold).
    val = lambda a: Fraction(2) ** emax if np.isinf(a) else Fraction(float(a))
    if np.isinf(f):
        f = big  # step up to inf below if the root lies past the overflow threshold
    while True:
        if not np.isinf(f) and (val(f) + val(up(f))) ** 2 / 4 < s:
            f = up(f)
        elif val(down(f)) < val(f) and (val(down(f)) + val(f)) ** 2 / 4 > s:
            f = down(f)
        else:
            break
    # Exactly halfway: ties to even (the even neighbour has an even bit pattern).
    for g in (up(f), down(f)):
        if g != f and (val(f) + val(g)) ** 2 / 4 == s and int(np.array(f).view(np.uint32 if fmt == "F32" else np.uint64)) & 1:
            return g
    return f


def brute_force(u, norm_dtype):
    """Every statistic the slow, obvious way (Python ints, floats and Fractions): for small matrices only."""
    from fractions import Fraction
    v, d = u.shape
    rows = [tuple(int(b) for b in r) for r in u]
    val = lambda b: float(bf16_to_f32(np.uint16(b)))
    is_nan = lambda b: (b >> 7) & 0xFF == 0xFF and b & 0x7F
    is_inf = lambda b: (b >> 7) & 0xFF == 0xFF and not b & 0x7F
    out = {"duplicate_of": [next((j for j in range(i) if rows[j] == rows[i]), -1) for i in range(v)]}
    hist = [0] * 512
    for r in rows:
        for b in r:
            hist[b >> 7] += 1
    out["exponent_histogram"] = np.array(hist).reshape(2, 256)
    out["distinct_values"] = len({b for r in rows for b in r})
    total = [0.0] * d
    for c0 in range(0, v, MEAN_CHUNK_ROWS):
        s = [0.0] * d
        for r in rows[c0:c0 + MEAN_CHUNK_ROWS]:
            for j in range(d):
                s[j] += val(r[j])
        for j in range(d):
            total[j] += s[j]
    mean = []
    for j in range(d):
        mean.append(total[j] / v)
    out["mean"] = mean

    def norm_of(terms, r, inf_row_is_inf=True):
        if any(is_nan(b) for b in r):
            return math.nan
        if any(is_inf(b) for b in r):
            return math.inf if inf_row_is_inf else math.nan  # (see CENTERED_INF_ROW_IS_INF)
        if any(math.isnan(t) for t in terms):
            return math.nan
        if any(math.isinf(t) for t in terms):
            return math.inf
        return brute_round_sqrt(sum((Fraction(t) for t in terms), Fraction(0)), norm_dtype)

    out["norm"] = [norm_of([val(b) * val(b) if not (is_nan(b) or is_inf(b)) else 0.0 for b in r], r) for r in rows]
    cen = []
    for r in rows:
        terms = []
        for j, b in enumerate(r):
            x = val(b) if not (is_nan(b) or is_inf(b)) else 0.0
            try:
                dlt = x - mean[j]
                terms.append(dlt * dlt)
            except OverflowError:
                terms.append(math.inf)
        cen.append(norm_of(terms, r, CENTERED_INF_ROW_IS_INF))
    out["centered_norm"] = cen
    mx = []
    for r in rows:
        finite = [abs(val(b)) for b in r if not is_nan(b)]
        mx.append(max(finite) if finite else math.nan)
    out["max_abs"] = mx
    out["zeros"] = [sum(b & 0x7FFF == 0 for b in r) for r in rows]
    out["subnormals"] = [sum((b >> 7) & 0xFF == 0 and b & 0x7F != 0 for b in r) for r in rows]
    out["nonfinite"] = [sum((b >> 7) & 0xFF == 0xFF for b in r) for r in rows]
    out["column_distinct"] = [len({r[j] for r in rows}) for j in range(d)]
    return out


def planted(finite_only):
    """A small W [40, 8] with planted cases; `finite_only` leaves out NaN and ±Inf (which make the mean, and so
    the centred norms, non-finite), so the centred norms get exercised."""
    rng = np.random.default_rng(7)
    d = 8
    base = rng.standard_normal((40, d)).astype(np.float32) * 0.05
    u = (base.view(np.uint32) >> 16).astype(np.uint16)  # truncate float32 to bf16
    for r in (10, 25):
        u[r] = u[3]                                      # a cluster: rows 3, 10, 25
    u[6] = u[5]                                          # a pair
    u[7] = 0; u[20] = 0                                  # all-(+0) rows: 20 duplicates 7
    u[8] = 0; u[8, 2] = 0x8000                           # a ±0 mix: the same values as row 7, other bytes
    u[9] = 0x8000                                        # all −0
    u[17, :3] = (0x0001, 0x807F, 0x0040)                 # subnormals
    u[18] = [bf(2.0 ** 24), bf(2.0 ** 12), bf(2.0 ** 12), bf(1.0), 0, 0, 0, 0]  # norm exactly 2^24 + 1: a tie
    u[19] = u[18]; u[19, 4] = bf(2.0 ** -20)             # just past the tie: rounds up (fsum + sqrt gets it wrong)
    u[21] = u[18]; u[21, 4] = 0x0001                     # past the tie by 2^-266 in the sum
    u[22] = 0x7F7F                                       # the largest bf16 everywhere: f32 norm overflows to +Inf
    u[23] = 0; u[23, :2] = 0x0001                        # a norm in f32's subnormal range: √2 · 2^-133
    u[24] = 0xFF7F                                       # the most negative bf16
    u[26] = 0; u[26, 0] = bf(3.0); u[26, 1] = bf(4.0)    # norm exactly 5
    u[27, :] = bf(1.0)                                   # norm √8
    if not finite_only:
        u[11] = u[4]; u[11, 0] = 0x7FC0                  # a quiet NaN
        u[12] = u[11]; u[12, 0] = 0x7FC1                 # another payload: not a duplicate of 11
        u[13] = u[11]                                    # the same payload: a duplicate of 11
        u[14] = 0xFFC0; u[14, 3] = 0x7F81                # only NaNs (max_abs NaN)
        u[15, 1] = 0x7F80; u[15, 2] = 0xFF80             # +Inf and −Inf
        u[16, 5] = 0xFF80                                # −Inf only
    return u


def selftest():
    """Planted files through the reference (twice), against brute force; then the comparison itself: a correct
    stats file passes, altered ones fail, malformed ones are bad input."""
    failures = []

    def expect(cond, what):
        print(f"{'ok  ' if cond else 'FAIL'} {what}")
        if not cond:
            failures.append(what)

    def same(a, b):
        a, b = np.asarray(a), np.asarray(b, dtype=np.asarray(a).dtype)
        if a.dtype.kind == "f":
            return a.shape == b.shape and bool(np.all((a.view(np.uint8) == b.view(np.uint8)).reshape(*a.shape, -1).all(-1)
                                                     | (np.isnan(a) & np.isnan(b))))
        return a.shape == b.shape and bool(np.all(a == b))

    rng = np.random.default_rng(11)
    random = (rng.standard_normal((700, 5)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    random[::7] = random[1]                              # many duplicates; V > 256: three mean chunks, one short
    # A column whose mean depends on the summation order: 2^60, ones, −2^60 at row 300, ones. In row order the
    # ones before row 300 are lost (399 / 700); in 256-row chunks those of chunk 1 are lost instead (188 / 700).
    random[:, 0] = bf(1.0)
    random[0, 0], random[300, 0] = bf(2.0 ** 60), bf(-(2.0 ** 60))
    cases = {
        "planted, finite": planted(True),
        "planted, NaN and ±Inf": planted(False),
        "random 700 × 5": random,
        "V = 1, d = 1": np.array([[bf(-1.5)]], dtype=np.uint16),
        "V = 1, d = 1, −0": np.array([[0x8000]], dtype=np.uint16),
        "V = 1, d = 1, NaN": np.array([[0x7FC3]], dtype=np.uint16),
        "V = 3, d = 1, ±Inf": np.array([[0x7F80], [0xFF80], [0x3F80]], dtype=np.uint16),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for label, u in cases.items():
            v, d = u.shape
            wpath = os.path.join(tmp, "W.safetensors")
            write_safetensors(wpath, [("W", "BF16", u)])
            back = load_w(wpath)
            expect(same(back, u), f"{label}: W round-trips through the raw reader")
            for fmt in ("F32", "F64"):
                a, b = reference(back, fmt), reference(back, fmt)
                expect(all(same(a[k], b[k]) for k in a), f"{label}, {fmt}: two runs agree bit for bit")
                bf_ = brute_force(back, fmt)
                for k in a:
                    expect(same(a[k], bf_[k]), f"{label}, {fmt}: {k} equals brute force")
                expect(int(a["exponent_histogram"].sum()) == v * d, f"{label}, {fmt}: the histogram sums to V·d")
                # The comparison: the reference's own file passes …
                spath = os.path.join(tmp, "stats.safetensors")
                dtype_of = lambda k: {np.dtype("<i8"): "I64", np.dtype("<i4"): "I32", np.dtype("<f4"): "F32",
                                      np.dtype("<f8"): "F64"}[a[k].dtype]
                good = [(k, dtype_of(k), a[k]) for k, _, _ in SPEC]
                write_safetensors(spath, good)
                buf = io.StringIO()
                code = check(wpath, spath, out=buf)
                expect(code == 0 and buf.getvalue().endswith(f"{len(SPEC) + 1} passed, 0 failed\n"),
                       f"{label}, {fmt}: the reference's own stats file passes")
                # … and altered ones fail, each on the tensor altered (the finite file: its means and centred
                # norms are numbers, so an ulp changes them).
                def altered(name, change, expect_code, what, tensors=None):
                    t = [(k, dt, change(x.copy()) if k == name else x) for k, dt, x in (tensors or good)]
                    write_safetensors(spath, t)
                    buf = io.StringIO()
                    with contextlib.redirect_stderr(io.StringIO()):
                        code = check(wpath, spath, out=buf)
                    lines = buf.getvalue()
                    ok = code == expect_code and (expect_code == 0 or f"MISMATCH {name}" in lines)
                    expect(ok, f"{label}, {fmt}: {what} → exit {expect_code}" + ("" if ok else f"\n{lines}"))

                def bump(x, i, ulps):
                    ui = np.uint32 if x.dtype.itemsize == 4 else np.uint64
                    x.view(ui)[i] += ulps
                    return x

                if label == "planted, NaN and ±Inf":
                    altered("max_abs", lambda x: np.where(np.isnan(x), 0, x).astype(np.float32), 1, "NaN max_abs as 0")
                    altered("norm", lambda x: np.where(np.isnan(x), np.inf, x).astype(x.dtype), 1, "NaN norm as +Inf")
                if label != "planted, finite":
                    continue
                altered("norm", lambda x: bump(x, 0, 1), 1, "norm one ulp off")
                altered("centered_norm", lambda x: bump(x, 5, 1), 0, "centered_norm one ulp off")
                altered("centered_norm", lambda x: bump(x, 5, 2), 1, "centered_norm two ulps off")
                altered("mean", lambda x: bump(x, 2, 1), 1, "mean one ulp off")
                altered("duplicate_of", lambda x: np.where(x == 3, -1, x), 1, "a duplicate missed")
                altered("max_abs", lambda x: bump(x, 4, 1), 1, "max_abs one ulp off")
                altered("zeros", lambda x: x + (np.arange(len(x)) == 7), 1, "a zero count off by one")
                altered("distinct_values", lambda x: x + 1, 1, "distinct values off by one")
                layout = [good[1], good[0]] + good[2:]
                write_safetensors(spath, layout)
                buf = io.StringIO()
                expect(check(wpath, spath, out=buf) == 1 and "MISMATCH layout" in buf.getvalue(),
                       f"{label}, {fmt}: tensors out of order → MISMATCH layout")
                write_safetensors(spath, good[:-1])
                buf = io.StringIO()
                expect(check(wpath, spath, out=buf) == 1 and "MISMATCH column_distinct: missing" in buf.getvalue(),
                       f"{label}, {fmt}: a missing tensor → MISMATCH")
                write_safetensors(spath, good)
                raw = open(spath, "rb").read()
                open(spath, "wb").write(raw[:-4])
                with contextlib.redirect_stderr(io.StringIO()):
                    expect(check(wpath, spath, out=io.StringIO()) == 2, f"{label}, {fmt}: a truncated file → exit 2")
        # Planted values, stated outright (f32).
        u = planted(False)
        s = reference(u, "F32")
        dup = s["duplicate_of"]
        expect(list(dup[[3, 10, 25, 6, 20, 8, 9, 11, 12, 13]]) == [-1, 3, 3, 5, 7, -1, -1, -1, -1, 11],
               "planted: duplicate groups, ±0 and NaN payloads by bytes")
        n = s["norm"]
        expect(n[18] == np.float32(2.0 ** 24), "planted: a norm exactly between two f32s rounds to even")
        expect(n[19] == np.float32(2.0 ** 24 + 2) and n[21] == np.float32(2.0 ** 24 + 2),
               "planted: a norm just past the tie rounds up (even by 2^-266 in the sum)")
        expect(np.isinf(n[22]) and n[26] == 5 and n[27] == np.float32(math.sqrt(8)), "planted: overflow, 5, √8")
        expect(n[23] == np.float32(math.sqrt(2) * 2.0 ** -133), "planted: a norm in f32's subnormal range")
        expect(np.isnan(n[11]) and np.isinf(n[15]) and np.isinf(n[16]) and np.isnan(s["max_abs"][14])
               and np.isinf(s["max_abs"][16]), "planted: NaN and ±Inf rows")
        expect(list(s["subnormals"][[17]]) == [3] and s["nonfinite"][15] == 2 and s["zeros"][8] == 8,
               "planted: per-row counts")
        expect(reference(random)["mean"][0] == 188 / 700, "random: the mean is summed in 256-row chunks")
        expect(reference(u, "F64")["norm"][22] == math.sqrt(8) * float(bf16_to_f32(np.uint16(0x7F7F))),
               "planted: the f64 norm does not overflow")
    print(f"self-test: {'passed' if not failures else f'{len(failures)} FAILED'}")
    return 1 if failures else 0


def main(argv):
    if argv == ["--selftest"]:
        return selftest()
    if len(argv) != 2 or any(a.startswith("-") for a in argv):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    return check(argv[0], argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
