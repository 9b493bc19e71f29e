//! Writing arbitrary UTF-8 text as a JSON string, byte-wise, with no raw `\n` or `\r` in the output.

/// For each byte: 0 if it is copied as is, otherwise the character after the `\`
/// (`u` meaning a `\u00XX` escape).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// An upper bound on the escaped length of `len` bytes of typical pretty-printed JSON,
/// used to pre-size buffers (the buffer still grows if the text needs more).
pub(crate) fn estimate(len: usize) -> usize {
    len + len / 4 + 2
}

/// Appends `text` to `out` as a JSON string literal, quotes included.
///
/// `"` and `\` are escaped, as are all control characters (`\n`, `\r`, `\t`, `\b`, `\f`,
/// others as `\u00XX`). Everything else, including non-ASCII UTF-8 and U+2028/U+2029, is
/// copied unchanged, so the output never contains a raw `\n` or `\r`.
pub(crate) fn json_string_into(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.push(b'"');
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let e = ESCAPE[usize::from(b)];
        if e == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[run_start..i]);
        if e == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', e]);
        }
        run_start = i + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = Vec::new();
        json_string_into(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(esc(""), "\"\"");
        assert_eq!(
            esc("a\"b\\c\nd\re\tf\u{8}\u{c}\u{1}\u{1f}"),
            r#""a\"b\\c\nd\re\tf\b\f\u0001\u001f""#
        );
    }

    #[test]
    fn keeps_unicode_and_line_separators_raw() {
        let s = "Zoë Ångström 東京 😀 \u{2028}\u{2029} \u{7f}";
        assert_eq!(esc(s), format!("\"{s}\""));
    }

    #[test]
    fn round_trips_through_serde_json() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let encoded = esc(&all);
        assert!(!encoded.contains(['\n', '\r']));
        assert_eq!(serde_json::from_str::<String>(&encoded).unwrap(), all);
    }
}
