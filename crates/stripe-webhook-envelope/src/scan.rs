//! A strict, single-pass, non-allocating JSON validator that reports where the top-level
//! members of an object are, so values can be copied with their original text.
//!
//! Strictness matches RFC 8259 as `serde_json` reads it: no trailing commas, no comments,
//! no leading zeros, no raw control characters in strings, `\u` escapes must form valid
//! UTF-16 (no lone surrogates). Nesting depth is unlimited (the scanner is iterative), so deep
//! input can never overflow the stack.
//!
//! The same pass can write the outputs `encode` needs, so the body is read once: the body
//! escaped as the inside of a JSON string (`raw`), and the `data` member's value without
//! insignificant whitespace. In valid JSON every byte that needs escaping is a token the
//! scanner stops at anyway (a string's quotes, a `\\` escape, or `\n`, `\r`, `\t` between
//! tokens), and every insignificant whitespace run goes through one function: the outputs
//! copy the runs between those places sixteen bytes at a time.

use std::borrow::Cow;

use crate::escape::decode_json_string;
use crate::swar;

/// Where a JSON syntax error is, and what was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// What was expected or found, for the error message.
    pub(crate) what: &'static str,
    /// Byte offset into the body.
    pub(crate) offset: usize,
}

type Result<T> = std::result::Result<T, SyntaxError>;

/// A byte range of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Span {
    pub(crate) fn of(self, body: &[u8]) -> &[u8] {
        &body[self.start..self.end]
    }
}

/// One member of the top-level object: its key token (quotes included) and value token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    pub(crate) key: Span,
    /// Whether the key contains a `\` escape (then it must be decoded before comparing).
    pub(crate) key_escaped: bool,
    pub(crate) value: Span,
}

impl Member {
    /// The key's text in `text` (the scanned body), decoded when it has escapes.
    pub(crate) fn key_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        key_text(text, self.key, self.key_escaped)
    }
}

/// The text of the validated key token `key` of `text`, decoded when `escaped` (as the scanner
/// reports it), else borrowed from between the quotes.
pub(crate) fn key_text(text: &str, key: Span, escaped: bool) -> Cow<'_, str> {
    let token = &text[key.start..key.end];
    if escaped {
        decode_json_string(token)
    } else {
        Cow::Borrowed(&token[1..token.len() - 1])
    }
}

/// What the body's top-level value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TopLevel {
    /// Empty or whitespace only.
    Empty,
    /// A valid JSON object.
    Object,
    /// A valid JSON value of another kind (named for the error message).
    Other(&'static str),
}

const SPACES: u64 = 0x2020_2020_2020_2020;

/// The kind of a JSON value, from its first byte (for error messages).
pub(crate) fn kind_of(first: u8) -> &'static str {
    match first {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

/// Output buffers a scan writes into, kept between scans so they are neither reallocated
/// nor zeroed again: only [`Scratch::raw`] and [`Scratch::data`] are meaningful.
#[derive(Default)]
pub(crate) struct Scratch {
    raw: Vec<u8>,
    raw_len: usize,
    data: Vec<u8>,
    data_len: usize,
}

impl Scratch {
    /// The body escaped as JSON string content (no quotes), if the scan wrote it.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw[..self.raw_len]
    }

    /// The captured `data` value without insignificant whitespace.
    pub(crate) fn data(&self) -> &[u8] {
        &self.data[..self.data_len]
    }

    /// Bytes held.
    pub(crate) fn capacity(&self) -> usize {
        self.raw.capacity() + self.data.capacity()
    }
}

/// Room for a whole 16-byte chunk store at any output position.
const CHUNK: usize = 16;

/// Copies `src[from..to]` to `dst` at `w` and returns the new end `w + (to - from)`.
///
/// Whole 16-byte chunks when `src` has room (so `dst` needs 16 bytes of slack past the
/// result; the extra bytes are overwritten by whatever is written next).
#[inline(always)]
fn copy_run(dst: &mut [u8], w: usize, src: &[u8], from: usize, to: usize) -> usize {
    let n = to - from;
    if to + CHUNK <= src.len() {
        let mut i = 0;
        loop {
            dst[w + i..w + i + CHUNK].copy_from_slice(&src[from + i..from + i + CHUNK]);
            i += CHUNK;
            if i >= n {
                break;
            }
        }
    } else {
        dst[w..w + n].copy_from_slice(&src[from..to]);
    }
    w + n
}

/// Validates `body` (already known to be UTF-8) as one JSON value and, if it is an object,
/// calls `on_member` for each of its members in order.
///
/// On the way it writes into `out`: with `RAW`, the body escaped as JSON string content
/// (exactly what [`crate::escape::json_string_into`] writes between the quotes); and the
/// value of the first top-level member whose key `is_data` accepts, compacted (exactly what
/// [`compact_into`] writes). Both are meaningful only when the scan succeeds.
pub(crate) fn scan_top_level<const RAW: bool>(
    body: &[u8],
    out: &mut Scratch,
    mut is_data: impl FnMut(Span, bool) -> bool,
    mut on_member: impl FnMut(Member) -> std::result::Result<(), crate::EnvelopeError>,
) -> std::result::Result<TopLevel, ScanFailure<crate::EnvelopeError>> {
    // Escaping at most doubles valid JSON (its only control bytes are `\n`, `\r`, `\t`);
    // compaction never grows it. Grown buffers are zeroed once, then reused as they are.
    let raw_need = if RAW { 2 * body.len() + CHUNK } else { 0 };
    if out.raw.len() < raw_need {
        out.raw.resize(raw_need, 0);
    }
    if out.data.len() < body.len() + CHUNK {
        out.data.resize(body.len() + CHUNK, 0);
    }
    out.raw_len = 0;
    out.data_len = 0;
    let mut s = Scanner::<RAW>::new(body, &mut out.raw, &mut out.data);
    let top = s.top_level(&mut is_data, &mut on_member)?;
    if RAW {
        s.raw_w = copy_run(s.raw, s.raw_w, body, s.raw_from, body.len());
    }
    out.raw_len = s.raw_w;
    out.data_len = s.data_w;
    Ok(top)
}

/// Validates `body` (already known to be UTF-8) as one JSON value and, if it is an object,
/// calls `on_member` for each of its members in order, writing nothing: the reader's scan.
/// `on_member` may stop the scan with an error of its own.
pub(crate) fn scan_members<E>(
    body: &[u8],
    mut on_member: impl FnMut(Member) -> std::result::Result<(), E>,
) -> std::result::Result<TopLevel, ScanFailure<E>> {
    let mut s = Scanner::<false>::new(body, &mut [], &mut []);
    s.top_level(&mut |_, _| false, &mut on_member)
}

impl<const RAW: bool> Scanner<'_, '_, RAW> {
    fn top_level<E>(
        &mut self,
        is_data: &mut impl FnMut(Span, bool) -> bool,
        on_member: &mut impl FnMut(Member) -> std::result::Result<(), E>,
    ) -> std::result::Result<TopLevel, ScanFailure<E>> {
        let s = self;
        let body = s.b;
        let mut data_seen = false;
        s.skip_ws();
        let Some(first) = s.peek() else {
            return Ok(TopLevel::Empty);
        };
        let top = if first == b'{' {
            s.pos += 1;
            s.skip_ws();
            if s.peek() == Some(b'}') {
                s.pos += 1;
            } else {
                loop {
                    let (key, key_escaped) = s.string()?;
                    s.skip_ws();
                    s.expect(b':', "expected `:` after an object key")?;
                    s.skip_ws();
                    let start = s.pos;
                    let capture = !data_seen && is_data(key, key_escaped);
                    if capture {
                        data_seen = true;
                        s.in_data = true;
                        s.data_from = start;
                    }
                    s.value()?;
                    if capture {
                        s.in_data = false;
                        s.data_w = copy_run(s.data, s.data_w, body, s.data_from, s.pos);
                    }
                    let value = Span { start, end: s.pos };
                    on_member(Member {
                        key,
                        key_escaped,
                        value,
                    })
                    .map_err(ScanFailure::Member)?;
                    s.skip_ws();
                    match s.peek() {
                        Some(b',') => {
                            s.pos += 1;
                            s.skip_ws();
                        }
                        Some(b'}') => {
                            s.pos += 1;
                            break;
                        }
                        _ => {
                            return Err(s.err("expected `,` or `}` after an object member").into());
                        }
                    }
                }
            }
            TopLevel::Object
        } else {
            s.value()?;
            TopLevel::Other(kind_of(first))
        };
        s.skip_ws();
        if s.pos != body.len() {
            return Err(s.err("trailing characters after the JSON value").into());
        }
        Ok(top)
    }
}

/// Why scanning stopped.
#[derive(Debug)]
pub(crate) enum ScanFailure<E> {
    Syntax(SyntaxError),
    /// The member callback refused the body (e.g. a duplicate field).
    Member(E),
}

impl<E> From<SyntaxError> for ScanFailure<E> {
    fn from(e: SyntaxError) -> Self {
        Self::Syntax(e)
    }
}

/// The scanner, writing `raw` when `RAW`.
struct Scanner<'a, 'o, const RAW: bool> {
    b: &'a [u8],
    pos: usize,
    /// Open containers: `true` for an object, `false` for an array.
    stack: Vec<bool>,
    /// `raw[..raw_w]` is the escaped `b[..raw_from]`.
    raw: &'o mut [u8],
    raw_w: usize,
    raw_from: usize,
    /// While `in_data`, `data[..data_w]` is the compacted `b[capture start..data_from]`.
    data: &'o mut [u8],
    data_w: usize,
    data_from: usize,
    in_data: bool,
}

impl<'a, 'o, const RAW: bool> Scanner<'a, 'o, RAW> {
    /// A scanner at the start of `body`, writing the escaped body into `raw` and the compacted
    /// `data` into `data` (both empty for a scan that writes nothing).
    fn new(body: &'a [u8], raw: &'o mut [u8], data: &'o mut [u8]) -> Self {
        Scanner {
            b: body,
            pos: 0,
            stack: Vec::new(),
            raw,
            raw_w: 0,
            raw_from: 0,
            data,
            data_w: 0,
            data_from: 0,
            in_data: false,
        }
    }
}

impl<const RAW: bool> Scanner<'_, '_, RAW> {
    /// The byte at `at` needs escaping in `raw`: it becomes `\\` and `c`.
    #[inline(always)]
    fn raw_escape(&mut self, at: usize, c: u8) {
        if RAW {
            let w = copy_run(self.raw, self.raw_w, self.b, self.raw_from, at);
            self.raw[w..w + 2].copy_from_slice(&[b'\\', c]);
            self.raw_w = w + 2;
            self.raw_from = at + 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn err(&self, what: &'static str) -> SyntaxError {
        SyntaxError {
            what,
            offset: self.pos,
        }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// Skips insignificant whitespace (every byte up to `' '` is whitespace or invalid here).
    #[inline(always)]
    fn skip_ws(&mut self) {
        match self.b.get(self.pos) {
            Some(&b' ') if self.b.get(self.pos + 1).is_some_and(|&c| c > b' ') => {
                // The single space after a pretty-printed `:`.
                if self.in_data {
                    self.data_w =
                        copy_run(self.data, self.data_w, self.b, self.data_from, self.pos);
                    self.data_from = self.pos + 1;
                }
                self.pos += 1;
            }
            Some(&c) if c <= b' ' => self.skip_ws_run(),
            _ => {}
        }
    }

    #[inline(never)]
    fn skip_ws_run(&mut self) {
        let start = self.pos;
        // Pretty-printed bodies indent with runs of spaces: skip them eight at a time.
        if self.b[self.pos] == b'\n' {
            self.raw_escape(self.pos, b'n');
            self.pos += 1;
            loop {
                let not_space = swar::load(self.b, self.pos) ^ SPACES;
                if not_space != 0 {
                    self.pos += (not_space.trailing_zeros() / 8) as usize;
                    break;
                }
                self.pos += 8;
            }
        }
        while let Some(&c) = self.b.get(self.pos) {
            if c != b' ' {
                let e = match c {
                    b'\n' => b'n',
                    b'\r' => b'r',
                    b'\t' => b't',
                    _ => break,
                };
                self.raw_escape(self.pos, e);
            }
            self.pos += 1;
        }
        if self.in_data && self.pos != start {
            self.data_w = copy_run(self.data, self.data_w, self.b, self.data_from, start);
            self.data_from = self.pos;
        }
    }

    /// One complete value (iteratively: containers push onto `stack`).
    fn value(&mut self) -> Result<()> {
        let base = self.stack.len();
        'value: loop {
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        self.stack.push(true);
                        self.key_colon()?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        self.stack.push(false);
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                None => return Err(self.err("unexpected end of input, expected a value")),
                Some(_) => return Err(self.err("expected a value")),
            }
            // After a complete value: close containers or move to the next element.
            loop {
                if self.stack.len() == base {
                    return Ok(());
                }
                let in_object = self.stack[self.stack.len() - 1];
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        if in_object {
                            self.key_colon()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if in_object => {
                        self.pos += 1;
                        self.stack.pop();
                    }
                    Some(b']') if !in_object => {
                        self.pos += 1;
                        self.stack.pop();
                    }
                    None => return Err(self.err("unexpected end of input inside a container")),
                    Some(_) if in_object => {
                        return Err(self.err("expected `,` or `}` after an object member"));
                    }
                    Some(_) => return Err(self.err("expected `,` or `]` after an array element")),
                }
            }
        }
    }

    /// `"key"` `:` and the whitespace after it, positioned at the member's value.
    fn key_colon(&mut self) -> Result<()> {
        self.string()?;
        self.skip_ws();
        self.expect(b':', "expected `:` after an object key")?;
        self.skip_ws();
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("invalid literal (expected `true`, `false` or `null`)"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.err("invalid number: leading zero"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number: expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number: expected a digit after `.`"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number: expected a digit in the exponent"));
            }
        }
        Ok(())
    }

    /// A string token; returns its span (quotes included) and whether it has escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<(Span, bool)> {
        let start = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a string"));
        }
        self.raw_escape(start, b'"');
        self.pos += 1;
        let mut escaped = false;
        loop {
            let x = swar::load(self.b, self.pos);
            let m = swar::string_specials(x);
            if m == 0 {
                self.pos += 8;
                continue;
            }
            self.pos += swar::first(m);
            // Whether the first special byte is the closing quote, from the masks (no reload):
            // a quote mask can only be wrong after its first match, and no quote precedes.
            if swar::equal(x, b'"') & m & m.wrapping_neg() != 0 {
                self.raw_escape(self.pos, b'"');
                self.pos += 1;
                return Ok((
                    Span {
                        start,
                        end: self.pos,
                    },
                    escaped,
                ));
            }
            match self.b.get(self.pos) {
                None => {
                    return Err(SyntaxError {
                        what: "unterminated string",
                        offset: self.b.len(),
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => return Err(self.err("control character in string (must be escaped)")),
            }
        }
    }

    /// An escape sequence starting at `\`.
    fn escape(&mut self) -> Result<()> {
        self.raw_escape(self.pos, b'\\');
        match self.b.get(self.pos + 1) {
            Some(&c @ (b'"' | b'\\')) => {
                self.raw_escape(self.pos + 1, c);
                self.pos += 2;
                Ok(())
            }
            Some(b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let unit = self.hex4(self.pos + 2)?;
                match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low surrogate.
                        let next = self.pos + 6;
                        if self.b.get(next) == Some(&b'\\') && self.b.get(next + 1) == Some(&b'u') {
                            let low = self.hex4(next + 2)?;
                            if (0xDC00..=0xDFFF).contains(&low) {
                                self.raw_escape(next, b'\\');
                                self.pos = next + 6;
                                return Ok(());
                            }
                        }
                        Err(self.err("lone leading surrogate in `\\u` escape"))
                    }
                    0xDC00..=0xDFFF => Err(self.err("lone trailing surrogate in `\\u` escape")),
                    _ => {
                        self.pos += 6;
                        Ok(())
                    }
                }
            }
            _ => Err(self.err("invalid escape in string")),
        }
    }

    fn hex4(&self, at: usize) -> Result<u16> {
        let digits = self.b.get(at..at + 4).ok_or(SyntaxError {
            what: "invalid `\\u` escape: expected 4 hex digits",
            offset: self.pos,
        })?;
        let mut v: u16 = 0;
        for &d in digits {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => {
                    return Err(SyntaxError {
                        what: "invalid `\\u` escape: expected 4 hex digits",
                        offset: self.pos,
                    });
                }
            };
            v = (v << 4) | u16::from(n);
        }
        Ok(v)
    }
}

/// Appends `value` (a validated JSON value) to `out` without insignificant whitespace.
/// Strings, numbers and literals keep their exact original text.
///
/// Copies eight bytes at a time into a pre-sized buffer: outside strings up to the next
/// whitespace or `"`, inside strings up to the next `"` or `\`.
pub(crate) fn compact_into(out: &mut Vec<u8>, value: &[u8]) {
    if !matches!(value.first(), Some(b'{' | b'[')) {
        // A scalar token has no insignificant whitespace.
        out.extend_from_slice(value);
        return;
    }
    let n = value.len();
    let mut w = out.len();
    // The output is never longer than the input; 8 more bytes for the last store.
    out.resize(w + n + 8, 0);
    let mut i = 0;
    let mut in_string = false;
    while i < n {
        let x = swar::load(value, i);
        let m = if in_string {
            swar::equal(x, b'"') | swar::equal(x, b'\\')
        } else {
            // Outside strings, bytes up to 0x20 can only be whitespace in valid JSON;
            // the zero padding past the end stops the run too.
            swar::less_than(x, 0x21) | swar::equal(x, b'"')
        };
        out[w..w + 8].copy_from_slice(&x.to_le_bytes());
        if m == 0 {
            i += 8;
            w += 8;
            continue;
        }
        let k = swar::first(m);
        i += k;
        w += k;
        if i >= n {
            break;
        }
        match value[i] {
            b'"' => {
                in_string = !in_string;
                w += 1;
                i += 1;
            }
            b'\\' => {
                // An escape: keep both bytes (the second may be `"` or `\`).
                out[w + 1] = value[i + 1];
                w += 2;
                i += 2;
            }
            _ => {
                // Whitespace: skip it, and a run of indentation spaces eight at a time.
                i += 1;
                loop {
                    let not_space = swar::load(value, i) ^ SPACES;
                    if not_space != 0 {
                        i += swar::first(not_space);
                        break;
                    }
                    i += 8;
                }
            }
        }
    }
    out.truncate(w.min(out.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str) -> std::result::Result<TopLevel, SyntaxError> {
        match scan_top_level::<true>(
            s.as_bytes(),
            &mut Scratch::default(),
            |_, _| false,
            |_| Ok(()),
        ) {
            Ok(t) => Ok(t),
            Err(ScanFailure::Syntax(e)) => Err(e),
            Err(ScanFailure::Member(e)) => panic!("{e}"),
        }
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        for ok in [
            "{}",
            " { \"a\" : [ 1 , -0.5e+3 , true , false , null , \"x\\u00e9\\ud83d\\ude00\\n\" , { } , [ ] ] } ",
            "[]",
            "0",
            "-0",
            "1E5",
            "\"\"",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
            assert!(
                serde_json::from_str::<serde_json::Value>(ok).is_ok(),
                "{ok}"
            );
        }
        assert_eq!(check("{}"), Ok(TopLevel::Object));
        assert_eq!(check("[1]"), Ok(TopLevel::Other("an array")));
        assert_eq!(check("  \n"), Ok(TopLevel::Empty));
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for bad in [
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "[1 2]",
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "+1",
            "tru",
            "nul",
            "\"abc",
            "\"a\tb\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "{} {}",
            "{'a':1}",
            "[1]]",
            "{\"a\":1]",
            "[1}",
            "{1:2}",
        ] {
            assert!(check(bad).is_err(), "accepted {bad:?}");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_offsets_point_at_the_problem() {
        assert_eq!(check("{\"a\":1,}").unwrap_err().offset, 7);
        assert_eq!(check("[1 2]").unwrap_err().offset, 3);
        assert_eq!(check("\"abc").unwrap_err().what, "unterminated string");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = "[".repeat(1_000_000) + &"]".repeat(1_000_000);
        assert_eq!(check(&deep), Ok(TopLevel::Other("an array")));
        let unclosed = "[".repeat(1_000_000);
        assert!(check(&unclosed).is_err());
    }

    #[test]
    fn compacts_without_touching_tokens() {
        let mut out = Vec::new();
        compact_into(
            &mut out,
            b"{\n  \"a b\" : [ 1.10 , 1e2,\t\"\\\" x \\\\\" ],\r\n  \"c\": { } }",
        );
        assert_eq!(out, b"{\"a b\":[1.10,1e2,\"\\\" x \\\\\"],\"c\":{}}");
    }

    #[test]
    fn reports_members_in_order() {
        let mut keys = Vec::new();
        let body = br#"{ "id" : "evt_1", "d\u0061ta": {"x": [1]} }"#;
        scan_top_level::<false>(
            body,
            &mut Scratch::default(),
            |_, _| false,
            |m| {
                keys.push((
                    m.key.of(body).to_vec(),
                    m.key_escaped,
                    m.value.of(body).to_vec(),
                ));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(keys[0], (b"\"id\"".to_vec(), false, b"\"evt_1\"".to_vec()));
        assert_eq!(
            keys[1],
            (b"\"d\\u0061ta\"".to_vec(), true, b"{\"x\": [1]}".to_vec())
        );
    }
}
