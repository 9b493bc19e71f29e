//! Eight bytes at a time in a `u64` ("SIMD within a register"), portable and safe.
//!
//! Masks have the high bit of each matching byte set. Bytes are loaded little-endian, so the
//! first match in memory is the lowest set bit. Only that first match is exact (a borrow can
//! flag bytes after it), which is all the callers use, via [`first`].

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Eight bytes of `v` from `i`, zero-padded past the end.
#[inline(always)]
pub(crate) fn load(v: &[u8], i: usize) -> u64 {
    match v.get(i..i + 8) {
        Some(s) => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        None => {
            let mut b = [0u8; 8];
            let rest = v.get(i..).unwrap_or_default();
            b[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(b)
        }
    }
}

/// Bytes less than `n` (`n` at most 0x80).
#[inline(always)]
pub(crate) fn less_than(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS
}

/// Bytes equal to `b`.
#[inline(always)]
pub(crate) fn equal(x: u64, b: u8) -> u64 {
    less_than(x ^ (ONES * u64::from(b)), 1)
}

/// Bytes that end a run of string content, and that need escaping in a JSON string:
/// `"`, `\` and control characters.
#[inline(always)]
pub(crate) fn string_specials(x: u64) -> u64 {
    less_than(x, 0x20) | equal(x, b'"') | equal(x, b'\\')
}

/// Index (0 to 7) of the first flagged byte of a non-zero mask.
#[inline(always)]
pub(crate) fn first(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_is_exact() {
        for bytes in [
            *b"abc\"def\\",
            *b"\x00\"\"\"\"\"\"\"",
            *b"aaaaaaa\n",
            *b"\x01\x00\x1f \x7f\xff\x20\x21",
        ] {
            let x = u64::from_le_bytes(bytes);
            let expected = bytes
                .iter()
                .position(|&b| b < 0x20 || b == b'"' || b == b'\\');
            let m = string_specials(x);
            assert_eq!((m != 0).then(|| first(m)), expected, "{bytes:?}");
        }
        assert_eq!(string_specials(u64::from_le_bytes(*b"abcdefgh")), 0);
        assert_eq!(first(equal(u64::from_le_bytes(*b"  x  :  "), b':')), 5);
        assert_eq!(first(less_than(u64::from_le_bytes(*b"ab \ncd  "), 0x21)), 2);
    }

    #[test]
    fn first_match_agrees_with_a_scalar_scan() {
        // A fixed xorshift sequence over bytes biased towards the interesting ones.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let pool = b"\0\x01\x1f\x20\x21\"\\\n\t\x7f\x80\xffa:";
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state
                .to_le_bytes()
                .map(|b| pool[usize::from(b) % pool.len()]);
            let x = u64::from_le_bytes(bytes);
            let scalar = |f: &dyn Fn(u8) -> bool| bytes.iter().position(|&b| f(b));
            let simd = |m: u64| (m != 0).then(|| first(m));
            assert_eq!(
                simd(string_specials(x)),
                scalar(&|b| b < 0x20 || b == b'"' || b == b'\\')
            );
            assert_eq!(
                simd(less_than(x, 0x21) | equal(x, b'"')),
                scalar(&|b| b <= 0x20 || b == b'"')
            );
            assert_eq!(simd(equal(x, b'\\')), scalar(&|b| b == b'\\'));
        }
    }

    #[test]
    fn load_pads_with_zeros() {
        assert_eq!(load(b"abc", 1), u64::from_le_bytes(*b"bc\0\0\0\0\0\0"));
        assert_eq!(load(b"abc", 3), 0);
        assert_eq!(load(b"abcdefghij", 2), u64::from_le_bytes(*b"cdefghij"));
    }
}
