//! The one rounding rule: bf16 sources are copied bit for bit; f32 and f16 become bf16 by round-to-nearest-even,
//! exactly as torch's `.to(bfloat16)` does. Every NaN becomes the canonical quiet NaN 0x7FC0 and is counted.

use crate::checkpoint::header::Dtype;

pub(crate) const CANONICAL_NAN: u16 = 0x7FC0;

/// f32 bits → bf16 bits, round to nearest, ties to even (matches `half::bf16::from_f32` for every non-NaN).
#[inline(always)]
fn f32_bits_to_bf16(bits: u32) -> u16 {
    if bits & 0x7FFF_FFFF > 0x7F80_0000 {
        return CANONICAL_NAN;
    }
    let rounding = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// Converts little-endian `src` elements of `dtype` into little-endian bf16 `dst`; returns the number of NaNs.
/// `src.len()` must be a whole number of elements and `dst.len()` the matching number of bf16 bytes.
pub(crate) fn to_bf16(dtype: Dtype, src: &[u8], dst: &mut [u8]) -> u64 {
    match dtype {
        Dtype::Bf16 => {
            dst.copy_from_slice(src);
            bf16_nans(src)
        }
        Dtype::F32 => {
            let mut nans = 0u64;
            for (s, d) in src.chunks_exact(4).zip(dst.chunks_exact_mut(2)) {
                let bits = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                nans += (bits & 0x7FFF_FFFF > 0x7F80_0000) as u64;
                d.copy_from_slice(&f32_bits_to_bf16(bits).to_le_bytes());
            }
            nans
        }
        Dtype::F16 => {
            let mut nans = 0u64;
            for (s, d) in src.chunks_exact(2).zip(dst.chunks_exact_mut(2)) {
                let h = u16::from_le_bytes([s[0], s[1]]);
                nans += (h & 0x7FFF > 0x7C00) as u64;
                let f = half::f16::from_bits(h).to_f32();
                d.copy_from_slice(&f32_bits_to_bf16(f.to_bits()).to_le_bytes());
            }
            nans
        }
        Dtype::Other { name, .. } => unreachable!("W of dtype {name} is refused before conversion"),
    }
}

/// bf16 bits → f32, exactly.
#[inline(always)]
pub(crate) fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// f64 → bf16 with one correct rounding (nearest, ties to even): via f32 rounded to odd, which cannot
/// double-round since f32 keeps more than bf16's 8 bits + 2. NaN → the canonical NaN.
pub(crate) fn f64_to_bf16(x: f64) -> u16 {
    if x.is_nan() {
        return CANONICAL_NAN;
    }
    let f = x as f32;
    let mut bits = f.to_bits();
    if f.is_finite() && f as f64 != x {
        if (f as f64).abs() > x.abs() {
            bits -= 1;
        }
        bits |= 1;
    }
    f32_bits_to_bf16(bits)
}

/// f64 → f32 (nearest, ties to even), NaN → the canonical quiet NaN, so bytes never depend on the platform.
#[inline(always)]
pub(crate) fn f64_to_f32_bits(x: f64) -> u32 {
    if x.is_nan() { 0x7FC0_0000 } else { (x as f32).to_bits() }
}

/// NaNs among little-endian bf16 values (copied as they are: a bf16 source is never rewritten).
pub(crate) fn bf16_nans(bytes: &[u8]) -> u64 {
    // Four lanes per u64 word: a lane is NaN when its magnitude (x & 0x7FFF) exceeds 0x7F80, that is when adding
    // 0x7F carries into bit 15. No lane can carry into the next (0x7FFF + 0x7F < 0x10000).
    const MAGNITUDE: u64 = 0x7FFF_7FFF_7FFF_7FFF;
    const BIAS: u64 = 0x007F_007F_007F_007F;
    const SIGN: u64 = 0x8000_8000_8000_8000;
    let words = bytes.chunks_exact(8);
    let rest = words.remainder();
    let mut nans: u64 = words
        .map(|w| {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            (((w & MAGNITUDE) + BIAS) & SIGN).count_ones() as u64
        })
        .sum();
    nans += rest.chunks_exact(2).filter(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7FFF > 0x7F80).count() as u64;
    nans
}

/// Bytes per source element for the float dtypes W may have.
pub(crate) fn source_width(dtype: Dtype) -> usize {
    (dtype.bits() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_matches_half_on_special_and_random_values() {
        let mut specials: Vec<u32> = vec![
            0,
            0x8000_0000,
            0x0000_0001,
            0x807F_FFFF,
            0x3F80_8000,
            0x3F81_8000,
            0x3F80_8001,
            0x7F7F_FFFF,
            0xFF7F_FFFF,
            0x7F80_0000,
            0xFF80_0000,
            0x7F7F_8000,
            0x0080_0000,
            0x0000_8000,
            0x0001_8000,
        ];
        let mut x = 0x9E37_79B9u32;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            specials.push(x);
        }
        for bits in specials {
            let f = f32::from_bits(bits);
            let mut out = [0u8; 2];
            to_bf16(Dtype::F32, &bits.to_le_bytes(), &mut out);
            let got = u16::from_le_bytes(out);
            if f.is_nan() {
                assert_eq!(got, CANONICAL_NAN);
            } else {
                assert_eq!(got, half::bf16::from_f32(f).to_bits(), "{bits:#010x}");
            }
        }
    }

    #[test]
    fn f16_is_exact_through_f32_and_counts_nans() {
        for h in 0..=u16::MAX {
            let mut out = [0u8; 2];
            let nans = to_bf16(Dtype::F16, &h.to_le_bytes(), &mut out);
            let f = half::f16::from_bits(h).to_f32();
            let got = u16::from_le_bytes(out);
            if f.is_nan() {
                assert_eq!((got, nans), (CANONICAL_NAN, 1));
            } else {
                assert_eq!((got, nans), (half::bf16::from_f32(f).to_bits(), 0), "{h:#06x}");
            }
        }
    }

    #[test]
    fn f64_to_bf16_rounds_once() {
        // Exactly halfway between two bf16 values, plus a nudge the f32 step would lose: must round up.
        let halfway = 1.0 + 2f64.powi(-8);
        assert_eq!(f64_to_bf16(halfway), 0x3F80, "ties to even");
        assert_eq!(f64_to_bf16(halfway + 2f64.powi(-40)), 0x3F81, "above the tie rounds up");
        assert_eq!(f64_to_bf16(halfway - 2f64.powi(-40)), 0x3F80);
        assert_eq!(f64_to_bf16(-(halfway + 2f64.powi(-40))), 0xBF81);
        assert_eq!(f64_to_bf16(1e-300), 0x0000);
        assert_eq!(f64_to_bf16(-1e-300), 0x8000);
        assert_eq!(f64_to_bf16(1e300), 0x7F80);
        assert_eq!(f64_to_bf16(f64::NAN), CANONICAL_NAN);
        let mut x = 0x1234_5678_9ABC_DEF0u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0;
            // Reference: exact decision on the f64 value against the two neighbouring bf16 values.
            let lo = half::bf16::from_bits(f64_to_bf16(v)).to_f64();
            let step = |b: u16| half::bf16::from_bits(b).to_f64();
            let b = f64_to_bf16(v);
            let (down, up) = (step(b.wrapping_sub(1)), step(b.wrapping_add(1)));
            assert!((v - lo).abs() <= (v - down).abs() && (v - lo).abs() <= (v - up).abs(), "{v}");
        }
    }

    #[test]
    fn bf16_is_copied_bit_for_bit() {
        let src = [0x01, 0xFF, 0xC1, 0x7F, 0x80, 0x7F];
        let mut dst = [0u8; 6];
        assert_eq!(to_bf16(Dtype::Bf16, &src, &mut dst), 1);
        assert_eq!(src, dst);
    }

    #[test]
    fn nan_count_matches_the_per_element_rule_for_every_bf16_value() {
        // Every 16-bit pattern once, at every alignment, with an odd tail: the word-at-a-time count must agree.
        let all: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        let slow = |b: &[u8]| b.chunks_exact(2).filter(|e| u16::from_le_bytes([e[0], e[1]]) & 0x7FFF > 0x7F80).count();
        assert_eq!(slow(&all), 2 * 127);
        for skip in 0..4 {
            let piece = &all[2 * skip..all.len() - 2];
            assert_eq!(bf16_nans(piece), slow(piece) as u64, "offset {skip}");
        }
    }
}
