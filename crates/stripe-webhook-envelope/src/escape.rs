//! JSON strings: writing arbitrary UTF-8 text as one, byte-wise, with no raw `\n` or `\r` in the
//! output; and decoding one the scanner validated.

use std::borrow::Cow;

use crate::swar;

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

/// Appends `text` to `out` as a JSON string literal, quotes included.
///
/// `"` and `\` are escaped, as are all control characters (`\n`, `\r`, `\t`, `\b`, `\f`,
/// others as `\u00XX`). Everything else, including non-ASCII UTF-8 and U+2028/U+2029, is
/// copied unchanged, so the output never contains a raw `\n` or `\r`.
///
/// Runs of plain bytes are copied eight at a time into a pre-sized buffer (each byte of
/// JSON text needs at most two output bytes; the rare six-byte `\u00XX` grows it).
pub(crate) fn json_string_into(out: &mut Vec<u8>, text: &str) {
    let text = text.as_bytes();
    let n = text.len();
    let mut w = out.len();
    // Invariant: out.len() >= w + 2 * (n - i) + 9 (room for 8-byte stores and the closing quote).
    out.resize(w + 2 * n + 10, 0);
    out[w] = b'"';
    w += 1;
    let mut i = 0;
    while i < n {
        let x = swar::load(text, i);
        let m = swar::string_specials(x);
        out[w..w + 8].copy_from_slice(&x.to_le_bytes());
        // Zero padding past the end counts as special, so `k` never passes the end.
        let k = if m == 0 { 8 } else { swar::first(m) }.min(n - i);
        i += k;
        w += k;
        if m == 0 || i == n {
            continue;
        }
        let b = text[i];
        match ESCAPE[usize::from(b)] {
            b'u' => {
                let need = w + 6 + 2 * (n - i - 1) + 9;
                if out.len() < need {
                    out.resize(need, 0);
                }
                out[w..w + 6].copy_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
                w += 6;
            }
            e => {
                out[w] = b'\\';
                out[w + 1] = e;
                w += 2;
            }
        }
        i += 1;
    }
    out[w] = b'"';
    out.truncate(w + 1);
}

/// The text a JSON string token (quotes included) stands for. The token must have been
/// validated by the scanner (escapes well formed, surrogates paired); the result borrows from
/// the token when it has no escapes. (Given anything else it does not panic: what it cannot
/// decode becomes U+FFFD.)
pub(crate) fn decode_json_string(token: &str) -> Cow<'_, str> {
    let inner = token
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(token);
    let Some(first) = inner.find('\\') else {
        return Cow::Borrowed(inner);
    };
    let mut out = String::with_capacity(inner.len());
    out.push_str(&inner[..first]);
    let mut rest = &inner[first..];
    while let Some(escape) = rest.strip_prefix('\\') {
        let unit = |at: usize| {
            escape
                .get(at..at + 4)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        };
        let (c, len) = match escape.as_bytes().first() {
            Some(b'"') => ('"', 1),
            Some(b'\\') => ('\\', 1),
            Some(b'/') => ('/', 1),
            Some(b'b') => ('\u{8}', 1),
            Some(b'f') => ('\u{c}', 1),
            Some(b'n') => ('\n', 1),
            Some(b'r') => ('\r', 1),
            Some(b't') => ('\t', 1),
            Some(b'u') => match unit(1) {
                Some(high @ 0xD800..=0xDBFF) => match unit(7) {
                    Some(low @ 0xDC00..=0xDFFF) if escape.get(5..7) == Some("\\u") => (
                        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                            .unwrap_or(char::REPLACEMENT_CHARACTER),
                        11,
                    ),
                    _ => (char::REPLACEMENT_CHARACTER, 5),
                },
                Some(unit) => (
                    char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER),
                    5,
                ),
                None => (char::REPLACEMENT_CHARACTER, 1),
            },
            _ => (char::REPLACEMENT_CHARACTER, 0),
        };
        out.push(c);
        // Escapes are ASCII, so `len` stays on a character boundary unless the token is not
        // one the scanner accepted; then the rest is cut at the next boundary.
        let mut next = len.min(escape.len());
        while !escape.is_char_boundary(next) {
            next += 1;
        }
        let after = &escape[next..];
        let plain = after.find('\\').unwrap_or(after.len());
        out.push_str(&after[..plain]);
        rest = &after[plain..];
    }
    Cow::Owned(out)
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
        assert_eq!(decode_json_string(&encoded), all);
    }

    #[test]
    fn decodes_every_escape_like_serde_json() {
        let tokens: [&str; 6] = [
            "\"\"",
            "\"plain Zo\u{eb} \u{1f600}\"",
            r#""a\"b\\c\/d\be\ff\ng\rh\ti""#,
            r#""\u0069d \u00E9 \u2028 \u0000 \uFFFF""#,
            r#""pair \uD83D\uDE00 and \ud800\udc00 end""#,
            r#""\\u0041 is not an escape""#,
        ];
        for token in tokens {
            let expected: String = serde_json::from_str(token).unwrap();
            assert_eq!(decode_json_string(token), expected, "{token}");
        }
        assert!(matches!(
            decode_json_string("\"no escapes\""),
            Cow::Borrowed("no escapes")
        ));
        // Not a token the scanner accepts: no panic.
        for bad in ["\"\\", "\"\\u12\"", "\"\\uD800x\"", "\"\\q\"", "x"] {
            let _ = decode_json_string(bad);
        }
    }
}
