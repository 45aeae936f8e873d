//! A fast path for Finnhub trade frames and trade objects: any key order, compact or with JSON
//! whitespace between tokens (as Python's `json.dumps` and pretty printers write them), extra keys
//! of any JSON value (skipped, as the general parser ignores them), escapes in strings (decoded),
//! and every trade valid. Anything else — a repeated known key, an escape inside a key, a `msg`
//! in a trade frame, an invalid trade, a number outside what serde_json accepts, nesting deeper
//! than [`MAX_SKIP_DEPTH`] — makes it give up, and the caller parses the frame with the general
//! parser instead. So the fast path never decides anything the general parser would decide
//! differently; it only decides faster.

use std::borrow::Cow;

use compact_str::CompactString;

use super::protocol::{MAX_SYMBOL_BYTES, MAX_TS, MAX_VALUE, ValidTrade, valid_symbol};

/// Powers of ten a double holds exactly (10^0 ..= 10^15 are all the fast path of
/// [`Cursor::float`] needs: at most 16 characters, so at most 14 decimals).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Deepest nesting of an extra key's value the fast path skips (serde_json allows 128).
const MAX_SKIP_DEPTH: usize = 32;

/// `LENIENT`: JSON whitespace between tokens is skipped; without it (the canonical frames of the
/// live feed, tried first) whitespace makes the parse give up, at no cost per token.
struct Cursor<'a, const LENIENT: bool> {
    b: &'a [u8],
    i: usize,
}

impl<'a, const LENIENT: bool> Cursor<'a, LENIENT> {
    // NB: always inlined, so that comparing with a literal is a few word compares, not a call of
    // `memcmp` with a length unknown at compile time.
    #[inline(always)]
    fn eat(&mut self, lit: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + lit.len())? == lit {
            self.i += lit.len();
            Some(())
        } else {
            None
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips JSON whitespace (space, tab, line feed, carriage return: nothing else).
    #[inline]
    fn ws(&mut self) {
        if !LENIENT {
            return;
        }
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// `lit` after optional whitespace.
    #[inline]
    fn token(&mut self, lit: &[u8]) -> Option<()> {
        self.ws();
        self.eat(lit)
    }

    /// A JSON string; returns its contents, borrowed unless it holds escapes (decoded). Gives up
    /// on control characters, invalid UTF-8 and lone surrogates, as serde_json refuses them.
    #[inline]
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b"\"")?;
        let start = self.i;
        let len = memchr::memchr(b'"', &self.b[start..])?;
        let s = &self.b[start..start + len];
        if s.iter().any(|&c| c == b'\\' || c < 0x20) {
            return self.escaped(start).map(Cow::Owned);
        }
        self.i = start + len + 1;
        if s.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            Some(Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(s) }))
        } else {
            std::str::from_utf8(s).ok().map(Cow::Borrowed)
        }
    }

    /// The rest of a string from `start` (its first byte after the quote), which holds escapes.
    #[cold]
    fn escaped(&mut self, start: usize) -> Option<String> {
        let mut out = String::new();
        let mut i = start;
        loop {
            let len = memchr::memchr2(b'"', b'\\', &self.b[i..])?;
            out.push_str(utf8(&self.b[i..i + len])?);
            i += len;
            if self.b[i] == b'"' {
                self.i = i + 1;
                return Some(out);
            }
            let esc = *self.b.get(i + 1)?;
            i += 2;
            out.push(match esc {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hi = hex4(self.b.get(i..i + 4)?)?;
                    i += 4;
                    match hi {
                        0xD800..=0xDBFF => {
                            if self.b.get(i..i + 2)? != b"\\u" {
                                return None;
                            }
                            let lo = hex4(self.b.get(i + 2..i + 6)?)?;
                            if !(0xDC00..=0xDFFF).contains(&lo) {
                                return None;
                            }
                            i += 6;
                            char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                        }
                        _ => char::from_u32(hi)?,
                    }
                }
                _ => return None,
            });
        }
    }

    /// A trade's key: its letter when it has one letter, 0 for any other key without escapes (a
    /// key with one could spell a known key: the general parser decides).
    #[inline(always)]
    fn letter_key(&mut self) -> Option<u8> {
        self.eat(b"\"")?;
        let start = self.i;
        match self.b.get(start..start + 2) {
            Some(&[k @ 0x20..=0x7f, b'"']) if k != b'\\' && k != b'"' => {
                self.i = start + 2;
                Some(k)
            }
            _ => self.long_key(start).map(|_| 0),
        }
    }

    /// A key without escapes, as bytes.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.eat(b"\"")?;
        self.long_key(self.i)
    }

    #[inline(never)]
    fn long_key(&mut self, start: usize) -> Option<&'a [u8]> {
        if let Some(end) = self.printable_end(start) {
            self.i = end + 1;
            return Some(&self.b[start..end]);
        }
        let len = memchr::memchr2(b'"', b'\\', &self.b[start..])?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        utf8(&self.b[start..start + len]).map(str::as_bytes)
    }

    /// Skips any JSON value serde_json would accept where it ignores one (an extra key's value),
    /// giving up on what it might refuse. (Out of line: the canonical frames never need it.)
    #[inline(never)]
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_SKIP_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.skip_string()?;
                    self.token(b":")?;
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => self.list(|c| c.skip_value(depth + 1)),
            b't' => self.eat(b"true"),
            b'f' => self.eat(b"false"),
            b'n' => self.eat(b"null"),
            _ => self.number().map(drop),
        }
    }

    /// Skips a string, checking what serde_json checks where it ignores one: no control
    /// characters, escapes of the right form (a `\u` escape's code point is not checked), and,
    /// stricter than it, valid UTF-8.
    fn skip_string(&mut self) -> Option<()> {
        if self.printable().is_some() {
            return Some(()); // the usual case, scanned inline
        }
        self.eat(b"\"")?;
        loop {
            let len = memchr::memchr2(b'"', b'\\', &self.b[self.i..])?;
            utf8(&self.b[self.i..self.i + len])?;
            self.i += len + 1;
            if self.b[self.i - 1] == b'"' {
                return Some(());
            }
            match *self.b.get(self.i)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                b'u' => {
                    hex4(self.b.get(self.i + 1..self.i + 5)?)?;
                    self.i += 5;
                }
                _ => return None,
            }
        }
    }

    /// A JSON number (strict grammar); returns its text.
    #[inline]
    fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        let b = self.b;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while matches!(b.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let digits = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        self.i = i;
        // SAFETY: the grammar above matched only ASCII digits, signs, dots and exponents.
        Some(unsafe { std::str::from_utf8_unchecked(&b[start..i]) })
    }

    /// A JSON number as the nearest double. Prices and volumes (no exponent, at most 16
    /// characters, digits below 2^53 once the point is dropped) take Clinger's fast path — the
    /// digits as an integer, exactly representable, divided by an exact power of ten, one
    /// correctly rounded operation, so exactly what `parse` gives — read in the same pass that
    /// checks the grammar; anything else is parsed by the standard library.
    #[inline]
    fn float(&mut self) -> Option<f64> {
        let (b, start) = (self.b, self.i);
        let neg = b.get(start) == Some(&b'-');
        let first = start + neg as usize;
        let mut i = first;
        let mut m = 0u64;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                // At most 16 digits are summed before the length check below: no overflow.
                while let Some(&d @ b'0'..=b'9') = b.get(i) {
                    m = m.wrapping_mul(10).wrapping_add((d - b'0') as u64);
                    i += 1;
                }
            }
            _ => return None,
        }
        let mut scale = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let digits = i;
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                m = m.wrapping_mul(10).wrapping_add((d - b'0') as u64);
                i += 1;
            }
            if i == digits {
                return None;
            }
            scale = i - digits;
        }
        if i - first <= 16 && m < 1 << 53 && !matches!(b.get(i), Some(b'e' | b'E')) {
            self.i = i;
            // Whole numbers (most volumes) need no division.
            let x = if scale == 0 {
                m as f64
            } else {
                m as f64 / POW10[scale]
            };
            return Some(if neg { -x } else { x });
        }
        self.parsed_float()
    }

    /// A number [`Self::float`]'s fast path does not take, by the standard library.
    #[cold]
    #[inline(never)]
    fn parsed_float(&mut self) -> Option<f64> {
        let x: f64 = self.number()?.parse().ok()?;
        x.is_finite().then_some(x)
    }

    /// A timestamp: digits only (at most 15, no sign, fraction or exponent), read in one pass.
    /// A leading zero ends the number, as in JSON's grammar: `012` gives up at the `1`.
    #[inline]
    fn millis(&mut self) -> Option<i64> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let mut t = 0i64;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                // Eight digits at a time while they last (a millisecond timestamp has 13).
                while let Some(eight) = b.get(i..i + 8).and_then(eight_digits) {
                    t = t.wrapping_mul(100_000_000).wrapping_add(eight as i64);
                    i += 8;
                }
                while let Some(&d @ b'0'..=b'9') = b.get(i) {
                    t = t.wrapping_mul(10).wrapping_add((d - b'0') as i64);
                    i += 1;
                }
            }
            _ => return None,
        }
        if i - start > 15 || matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.i = i;
        Some(t)
    }

    /// A valid symbol (see [`valid_symbol`]). Printable ASCII without escapes, what the feed
    /// sends, is scanned inline and needs only its length checked; anything else goes through
    /// [`Self::string`] and [`valid_symbol`].
    #[inline]
    fn symbol(&mut self) -> Option<CompactString> {
        let b = self.b;
        if b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let mut j = start;
        // Eight bytes at a time up to the first one that is not printable ASCII or is a quote
        // or a backslash; the byte loop below decides what that byte is.
        while let Some(w) = b.get(j..j + 8).and_then(|w| w.try_into().ok()) {
            match special_byte(u64::from_le_bytes(w)) {
                Some(k) => {
                    j += k;
                    break;
                }
                None => j += 8,
            }
        }
        while let Some(&c) = b.get(j) {
            match c {
                b'"' => {
                    if j == start || j - start > MAX_SYMBOL_BYTES {
                        return None;
                    }
                    self.i = j + 1;
                    // SAFETY: the bytes before the quote are printable ASCII.
                    return Some(CompactString::from(unsafe {
                        std::str::from_utf8_unchecked(&b[start..j])
                    }));
                }
                b'\\' | 0..0x20 | 0x7f.. => break,
                _ => j += 1,
            }
        }
        let s = self.string()?;
        valid_symbol(&s).then(|| CompactString::from(s.as_ref()))
    }

    /// Trade conditions: `null` or a list of strings, joined with commas (a comma before each
    /// string once the codes so far are not empty, as the general parser joins them).
    #[inline]
    fn conditions(&mut self) -> Option<CompactString> {
        let start = self.i;
        if let Some(codes) = self.short_conditions() {
            return Some(codes);
        }
        self.i = start;
        let mut codes = CompactString::default();
        if self.eat(b"null").is_none() {
            self.list(|c| {
                if !codes.is_empty() {
                    codes.push(',');
                }
                codes.push_str(&c.short_string()?);
                Some(())
            })?;
        }
        Some(codes)
    }

    /// [`Self::conditions`] when they are few and short (24 bytes joined) and of printable
    /// ASCII without escapes, as the feed sends them: joined in a buffer on the stack in one
    /// pass. `None` for anything else, which the caller parses again from the start.
    #[inline]
    fn short_conditions(&mut self) -> Option<CompactString> {
        const CAP: usize = 24;
        if self.eat(b"null").is_some() {
            return Some(CompactString::default());
        }
        let (mut buf, mut n) = ([0u8; CAP], 0);
        self.list(|c| {
            let text = c.printable()?;
            let comma = usize::from(n > 0);
            if n + comma + text.len() > CAP {
                return None;
            }
            if comma == 1 {
                buf[n] = b',';
            }
            n += comma;
            buf[n..n + text.len()].copy_from_slice(text);
            n += text.len();
            Some(())
        })?;
        // SAFETY: the buffer holds printable ASCII and commas.
        Some(CompactString::from(unsafe {
            std::str::from_utf8_unchecked(&buf[..n])
        }))
    }

    /// A string of printable ASCII without escapes, scanned inline: its bytes. `None` for
    /// anything else.
    #[inline]
    fn printable(&mut self) -> Option<&'a [u8]> {
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let end = self.printable_end(start)?;
        self.i = end + 1;
        Some(&self.b[start..end])
    }

    /// Where the closing quote is of a string of printable ASCII without escapes whose text
    /// starts at `start`; `None` if it has anything else.
    #[inline]
    fn printable_end(&self, start: usize) -> Option<usize> {
        let b = self.b;
        let mut j = start;
        loop {
            match *b.get(j)? {
                b'"' => return Some(j),
                b'\\' | 0..0x20 | 0x7f.. => return None,
                _ => j += 1,
            }
        }
    }

    /// A short string: printable ASCII without escapes (symbols, condition codes) scanned
    /// inline, anything else through [`Self::string`].
    #[inline]
    fn short_string(&mut self) -> Option<Cow<'a, str>> {
        match self.printable() {
            // SAFETY: printable ASCII is valid UTF-8.
            Some(s) => Some(Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(s) })),
            None => self.string(),
        }
    }

    /// A JSON array, `item` parsing each element.
    #[inline]
    fn list(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b"[")?;
        self.ws();
        if self.peek()? != b']' {
            loop {
                item(self)?;
                self.ws();
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                    }
                    b']' => break,
                    _ => return None,
                }
            }
        }
        self.eat(b"]")
    }

    /// Whether a compact parse that gave up here would get further skipping whitespace.
    fn at_whitespace(&self) -> bool {
        matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r'))
    }
}

/// The index of the first of eight bytes (little-endian in `w`) that is a quote, a backslash, a
/// control character, DEL or not ASCII; `None` when all eight are other printable ASCII.
#[inline]
fn special_byte(w: u64) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte that is zero: exact for the lowest such byte (a borrow only
    // reaches bytes above it), which is all that is used.
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let found = zero(w ^ (ONES * b'"' as u64))
        | zero(w ^ (ONES * b'\\' as u64))
        | zero(w ^ (ONES * 0x7f))
        // Below 0x20: subtracting 0x20 borrows out of the byte (exact for the lowest, as above).
        | (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
        // 0x80 and above.
        | (w & HIGH);
    (found != 0).then(|| found.trailing_zeros() as usize / 8)
}

/// The value of eight ASCII digits (`None` if any byte is not one), in a few word operations.
#[inline]
fn eight_digits(b: &[u8]) -> Option<u64> {
    let w = u64::from_le_bytes(b.try_into().ok()?);
    // Every byte is 0x30..=0x39: its high nibble is 3, and adding 6 keeps it 3.
    if w & 0xF0F0_F0F0_F0F0_F0F0 != 0x3030_3030_3030_3030
        || w.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0 != 0x3030_3030_3030_3030
    {
        return None;
    }
    // Pairs, then quads, then the eight (the first byte is the most significant digit).
    let d = w - 0x3030_3030_3030_3030;
    let d = (d * 10 + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let d = (d * 100 + (d >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((d * 10_000 + (d >> 32)) & 0xFFFF_FFFF)
}

/// `s` as text when it is UTF-8 without control characters.
#[inline]
fn utf8(s: &[u8]) -> Option<&str> {
    if s.iter().any(|&c| c < 0x20) {
        return None;
    }
    if s.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(s) })
    } else {
        std::str::from_utf8(s).ok()
    }
}

/// Four hex digits of a `\u` escape.
fn hex4(h: &[u8]) -> Option<u32> {
    h.iter().try_fold(0u32, |acc, &d| {
        Some(acc * 16 + (d as char).to_digit(16)?)
    })
}

/// Parses a trade frame the fast path takes, appending its trades to `out`. Returns `None` (with
/// `out` as it was) when the frame is not one (see the module's comment) or any trade is
/// invalid. The compact form is tried first; only a frame where it stopped at whitespace is
/// parsed again.
pub fn parse_trade_frame(text: &[u8], out: &mut Vec<ValidTrade>) -> Option<usize> {
    let mark = out.len();
    let mut compact = Cursor::<false> { b: text, i: 0 };
    if let Some(n) = frame(&mut compact, out) {
        return Some(n);
    }
    out.truncate(mark);
    if !compact.at_whitespace() {
        return None;
    }
    let n = frame(&mut Cursor::<true> { b: text, i: 0 }, out);
    if n.is_none() {
        out.truncate(mark);
    }
    n
}

/// [`parse_trade_frame`], compact or lenient; on `None`, `out` may hold some of the trades.
fn frame<const LENIENT: bool>(c: &mut Cursor<'_, LENIENT>, out: &mut Vec<ValidTrade>) -> Option<usize> {
    let text = c.b;
    let mark = out.len();
    c.token(b"{")?;
    let mut listed = false;
    let mut typed = false;
    // `data` and `type`, in either order, once each; other keys' values are skipped (`msg`, a
    // field of the general parser's frame, is left to it).
    loop {
        c.ws();
        if !listed && c.eat(b"\"data\"").is_some() {
            c.token(b":")?;
            c.ws();
            c.list(|c| {
                out.push(any_trade(c)?);
                Some(())
            })?;
            listed = true;
        } else if !typed && c.eat(b"\"type\"").is_some() {
            c.token(b":")?;
            c.token(b"\"trade\"")?;
            typed = true;
        } else {
            if matches!(c.key()?, b"data" | b"type" | b"msg") {
                return None;
            }
            c.token(b":")?;
            c.ws();
            c.skip_value(0)?;
        }
        c.ws();
        match c.peek()? {
            b',' => c.i += 1,
            b'}' => {
                c.i += 1;
                break;
            }
            _ => return None,
        }
    }
    c.ws();
    if !typed || !listed || c.i != text.len() {
        return None;
    }
    Some(out.len() - mark)
}

/// Parses one canonical, valid trade object (a Kafka record value); `None` means "use the
/// general parser".
pub fn parse_trade_object(bytes: &[u8]) -> Option<ValidTrade> {
    let mut compact = Cursor::<false> { b: bytes, i: 0 };
    if let Some(t) = object(&mut compact) {
        return Some(t);
    }
    if !compact.at_whitespace() {
        return None;
    }
    object(&mut Cursor::<true> { b: bytes, i: 0 })
}

fn object<const LENIENT: bool>(c: &mut Cursor<'_, LENIENT>) -> Option<ValidTrade> {
    c.ws();
    let t = any_trade(c)?;
    c.ws();
    (c.i == c.b.len()).then_some(t)
}

/// A trade object: in the usual layout through [`trade_in_order`], otherwise (or when that
/// stops) parsed again from its start by [`trade`].
#[inline]
fn any_trade<const LENIENT: bool>(c: &mut Cursor<LENIENT>) -> Option<ValidTrade> {
    let start = c.i;
    if let Some(t) = trade_in_order(c) {
        return Some(t);
    }
    c.i = start;
    trade(c)
}

/// A trade in the layout the feed and most producers write: keys `c` (optional), `p`, `s`, `t`,
/// `v` in this order, separated as compact JSON does (`,` and `:`) or, when `LENIENT`, as
/// Python's `json.dumps` does (`, ` and `: `). Each key with its separators is one literal
/// compared at once, instead of a key read, matched and checked against repeats. `None` when the
/// trade is laid out otherwise, or is one [`trade`] gives up on too: the caller parses it again
/// with [`trade`], which decides.
#[inline]
fn trade_in_order<const LENIENT: bool>(c: &mut Cursor<LENIENT>) -> Option<ValidTrade> {
    let conditions = if c
        .eat(if LENIENT { b"{\"c\": " } else { b"{\"c\":" })
        .is_some()
    {
        let codes = c.conditions()?;
        c.eat(if LENIENT { b", \"p\": " } else { b",\"p\":" })?;
        codes
    } else {
        c.eat(if LENIENT { b"{\"p\": " } else { b"{\"p\":" })?;
        CompactString::default()
    };
    let price = c.float()?;
    c.eat(if LENIENT { b", \"s\": " } else { b",\"s\":" })?;
    let symbol = c.symbol()?;
    c.eat(if LENIENT { b", \"t\": " } else { b",\"t\":" })?;
    let ts = c.millis()?;
    c.eat(if LENIENT { b", \"v\": " } else { b",\"v\":" })?;
    let volume = c.float()?;
    c.eat(b"}")?;
    valid(price, symbol, ts, volume, conditions)
}

/// The trade, if its values are valid (the symbol is checked by [`Cursor::symbol`]).
#[inline]
fn valid(
    price: f64,
    symbol: CompactString,
    ts: i64,
    volume: f64,
    conditions: CompactString,
) -> Option<ValidTrade> {
    (price > 0.0
        && price <= MAX_VALUE
        && (0.0..=MAX_VALUE).contains(&volume)
        && (0..=MAX_TS).contains(&ts))
    .then_some(ValidTrade {
        symbol,
        price,
        volume,
        ts,
        conditions,
    })
}

#[inline]
fn trade<const LENIENT: bool>(c: &mut Cursor<LENIENT>) -> Option<ValidTrade> {
    c.eat(b"{")?;
    let (mut p, mut s, mut t, mut v, mut cond): (
        Option<f64>,
        Option<CompactString>,
        Option<i64>,
        Option<f64>,
        Option<CompactString>,
    ) = (None, None, None, None, None);
    loop {
        c.ws();
        let key = c.letter_key()?;
        c.token(b":")?;
        c.ws();
        match key {
            b'p' if p.is_none() => p = Some(c.float()?),
            b'v' if v.is_none() => v = Some(c.float()?),
            b's' if s.is_none() => s = Some(c.symbol()?),
            b't' if t.is_none() => t = Some(c.millis()?),
            b'c' if cond.is_none() => cond = Some(c.conditions()?),
            // A repeated one: the general parser keeps the last, which the fast path leaves to it.
            b'p' | b'v' | b's' | b't' | b'c' => return None,
            _ => c.skip_value(0)?,
        }
        c.ws();
        match c.peek()? {
            b',' => c.i += 1,
            b'}' => {
                c.i += 1;
                break;
            }
            _ => return None,
        }
    }
    valid(p?, s?, t?, v?, cond.unwrap_or_default())
}

/// The fast path's contract, checkable on any bytes: when it accepts `frame`, the general
/// (serde) parser accepts exactly the same trades and nothing invalid. Returns what differs, if
/// anything. The bounded fuzz test in the unit tests and the coverage-guided target in `fuzz/`
/// (`cargo +nightly fuzz run fast_path`) both call it.
pub fn differs_from_general(frame: &[u8]) -> Option<String> {
    let mut fast = Vec::new();
    let accepted = parse_trade_frame(frame, &mut fast);
    // The general path must never panic, whatever the bytes.
    let text = std::str::from_utf8(frame).ok();
    let mut general = Vec::new();
    let mut invalid = Vec::new();
    let kind = text.map(|t| super::protocol::parse_frame(t, |_, v| general.push(v), &mut invalid));
    accepted?;
    match kind {
        Some(Ok(_)) if invalid.is_empty() && general == fast => None,
        _ => Some(format!(
            "the fast path accepted {:?} as {fast:?}; the general parser says {kind:?}, {general:?}, {} invalid",
            String::from_utf8_lossy(frame),
            invalid.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::finnhub::protocol::parse_frame;

    fn fast(text: &str) -> Option<Vec<ValidTrade>> {
        let mut v = Vec::new();
        parse_trade_frame(text.as_bytes(), &mut v).map(|_| v)
    }

    fn general(text: &str) -> Vec<ValidTrade> {
        let mut v = Vec::new();
        let mut bad = Vec::new();
        parse_frame(text, |_, t| v.push(t), &mut bad).unwrap();
        assert!(bad.is_empty());
        v
    }

    #[test]
    fn agrees_with_the_general_parser_on_canonical_frames() {
        for f in [
            r#"{"data":[{"c":["1","12"],"p":189.52,"s":"AAPL","t":1700000000123,"v":100}],"type":"trade"}"#,
            r#"{"data":[{"p":0.1,"s":"BINANCE:BTCUSDT","t":1,"v":0.000123},{"c":null,"p":1e2,"s":"X","t":0,"v":0}],"type":"trade"}"#,
            r#"{"data":[{"c":[],"p":1.5E-3,"s":"Ünï","t":5,"v":2}],"type":"trade"}"#,
            r#"{"data":[],"type":"trade"}"#,
            // As Python's json.dumps writes them, the other key order, pretty-printed.
            r#"{"data": [{"c": ["1", "12"], "p": 189.52, "s": "AAPL", "t": 1700000000123, "v": 100}, {"c": [], "p": 1.5, "s": "X", "t": 5, "v": 2}], "type": "trade"}"#,
            r#"{"type":"trade","data":[{"s":"AAPL","v":1,"t":2,"p":3}]}"#,
            "{\n  \"type\": \"trade\",\n  \"data\": [\n    {\n      \"p\": 3,\r\n\t\"s\": \"AAPL\", \"t\": 2, \"v\": 1\n    }\n  ]\n}\n",
            // Extra keys of any value, escapes in strings.
            r#"{"data":[{"p":1,"s":"A","t":1,"v":1,"x":"XNAS","i":[1,{"a":null,"b":[true,false]}],"q":-1.5e3}],"seq":7,"type":"trade","meta":{"src":"py"}}"#,
            r#"{"data":[{"c":["\u0031","a\"b"],"p":1,"s":"A\"B","t":1,"v":1},{"c":["\u0031","a\"b"],"p":1,"s":"BINANCE:BTC\/USDT","t":1,"v":1},{"p":2,"s":"\u00dcn\u00efcode \ud83d\ude00","t":2,"v":0}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"A","t":1,"v":1,"x":"\ud800 is ignored","y":1e400}],"type":"trade"}"#,
        ] {
            assert_eq!(
                fast(f).unwrap_or_else(|| panic!("the fast path gave up on {f}")),
                general(f),
                "{f}"
            );
        }
        // Not JSON whitespace, a repeated envelope key, `msg`: the general parser decides.
        for f in [
            "{\"data\":[{\"p\":3,\u{a0}\"s\":\"A\",\"t\":2,\"v\":1}],\"type\":\"trade\"}",
            "{\"data\":[],\u{b}\"type\":\"trade\"}",
            r#"{"data":[],"type":"trade","msg":1}"#,
            r#"{"data":[],"type":"trade","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
            r#"{"data":[],"type":"trade","data":[]}"#,
            r#"{"data":[]}"#,
        ] {
            assert!(fast(f).is_none(), "{f}");
        }
    }

    /// Differential fuzzing, bounded: random frames built from the awkward pieces real feeds and
    /// hostile input contain (number forms, escapes, unicode, control characters, key orders,
    /// extra keys, whitespace, truncation). Whenever the fast path accepts a frame, the general
    /// parser must accept exactly the same trades; the fast path may only ever decide faster,
    /// never differently. The seed is in the failure message.
    #[test]
    fn never_decides_differently_from_the_general_parser() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let seed = std::env::var("TICKFLOW_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        let iterations: usize = std::env::var("TICKFLOW_FUZZ_ITERATIONS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30_000);
        let mut rng = SmallRng::seed_from_u64(seed);
        let numbers = [
            "0",
            "1",
            "-1",
            "189.52",
            "0.000123",
            "1e2",
            "1E-3",
            "1.5e+2",
            "-0",
            "-0.0",
            "01",
            "1.",
            ".5",
            "1e400",
            "-1e400",
            "1e-400",
            "1e15",
            "1.0000000000000002e15",
            "999999999999999999999",
            "253402300799999",
            "253402300800000",
            "1700000000123",
            "17000000001.5",
            "9007199254740993",
            "NaN",
            "true",
            "\"1\"",
            "null",
            "1_0",
            "4.9406564584124654e-324",
            "2.2250738585072014e-308",
            "0.1e1",
            "12345678901234567890e-10",
        ];
        let symbols = [
            "\"AAPL\"",
            "\"BINANCE:BTCUSDT\"",
            "\"OANDA:EUR_USD\"",
            "\"\"",
            "\"A\\\"B\"",
            "\"\\u0041\"",
            "\"Ünï\"",
            "\"a b\"",
            "\"\\n\"",
            "\"\u{7f}\"",
            "\"\u{1}\"",
            "1",
            "null",
            "\"SYMBOL_WITH_A_VERY_LONG_NAME_THAT_GOES_ON_AND_ON_AND_ON_PAST_64_BYTES_X\"",
            "\"A/B\"",
            "\"\\/\"",
        ];
        let conditions = [
            None,
            Some("null"),
            Some("[]"),
            Some("[\"1\",\"12\"]"),
            Some("[\"\",\"1\"]"),
            Some("[\"1\",\"\",\"2\",\"\"]"),
            Some("[\"123456789012\",\"123456789012\"]"),
            Some("[\"1\" , \"2\"]"),
            Some("[1]"),
            Some("[\"a\"]"),
            Some("\"1\""),
            Some("[null]"),
            Some("{}"),
            Some("[\"\\u0031\",\"a\\\"b\"]"),
        ];
        // Extra keys (one spelled with an escape is a known key to the general parser) and
        // their values: anything JSON, and things serde_json refuses or only skips.
        let extra_keys = ["x", "xyz", "i", "\\u0070", "\\u0078", "\u{e9}", "", "msg", "data"];
        let extra_values = [
            "1",
            "-1.5e3",
            "1e400",
            "01",
            "-",
            "\"XNAS\"",
            "\"a\\u00e9\\ud83d\\ude00\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "\"\u{1}\"",
            "true",
            "nul",
            "null",
            "[]",
            "[1,]",
            "[true,false,null,[{}]]",
            "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}",
            "{\"a\"}",
            "{\"a\":1,}",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        ];
        let pick = |rng: &mut SmallRng, xs: &[&'static str]| xs[rng.random_range(0..xs.len())];
        let mut accepted = 0;
        for i in 0..iterations {
            let n = rng.random_range(0..4);
            let mut trades = Vec::new();
            for _ in 0..n {
                let mut fields: Vec<(String, String)> = vec![
                    ("p".into(), pick(&mut rng, &numbers).into()),
                    ("s".into(), pick(&mut rng, &symbols).into()),
                    ("t".into(), pick(&mut rng, &numbers).into()),
                    ("v".into(), pick(&mut rng, &numbers).into()),
                ];
                // Mostly well-formed values, so that the fast path accepts often enough.
                if rng.random_bool(0.6) {
                    fields[0].1 = format!(
                        "{}.{}",
                        rng.random_range(1..100_000),
                        rng.random_range(0..100)
                    );
                    fields[1].1 = pick(&mut rng, &symbols[..3]).into();
                    fields[2].1 = rng.random_range(0..1_800_000_000_000i64).to_string();
                    fields[3].1 = rng.random_range(0..10_000).to_string();
                }
                if let Some(c) = conditions[rng.random_range(0..conditions.len())] {
                    fields.insert(0, ("c".into(), c.into()));
                }
                match rng.random_range(0..20) {
                    0 => fields.swap(0, 1),
                    1 | 4 | 5 => fields.insert(
                        rng.random_range(0..=fields.len()),
                        (pick(&mut rng, &extra_keys).into(), pick(&mut rng, &extra_values).into()),
                    ),
                    2 => {
                        fields.remove(rng.random_range(0..fields.len()));
                    }
                    3 => fields.push(("p".into(), "2".into())),
                    _ => {}
                }
                // Now and then a space after every comma, and also after every colon as
                // `json.dumps` writes them (the in-order layouts the fast path tries first).
                let (sep, colon) = match rng.random_range(0..20) {
                    0 => (", ", ":"),
                    1 | 2 => (", ", ": "),
                    _ => (",", ":"),
                };
                let body: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("\"{k}\"{colon}{v}"))
                    .collect();
                trades.push(format!("{{{}}}", body.join(sep)));
            }
            let kind = if rng.random_bool(0.95) {
                "trade"
            } else {
                "news"
            };
            let mut frame = match rng.random_range(0..20) {
                // The envelope's keys in the other order, twice, or with another key.
                0 | 1 => format!("{{\"type\":\"{kind}\",\"data\":[{}]}}", trades.join(",")),
                2 => format!(
                    "{{\"data\":[{}],\"type\":\"{kind}\",\"data\":[]}}",
                    trades.join(",")
                ),
                3 | 4 => format!(
                    "{{\"data\":[{}],\"{}\":{},\"type\":\"{kind}\"}}",
                    trades.join(","),
                    pick(&mut rng, &extra_keys),
                    pick(&mut rng, &extra_values)
                ),
                _ => format!("{{\"data\":[{}],\"type\":\"{kind}\"}}", trades.join(",")),
            };
            // Whitespace between tokens as `json.dumps` and pretty printers write it, and now
            // and then characters that look like whitespace but are not JSON's.
            if rng.random_bool(0.3) {
                let spaces = [" ", " ", "  ", "\t", "\n", "\r\n", " \n  ", "\u{a0}", "\u{b}", "\u{c}"];
                let weird = rng.random_bool(0.1);
                let mut spaced = String::with_capacity(frame.len() * 2);
                for ch in frame.chars() {
                    let space = |rng: &mut SmallRng, out: &mut String| {
                        if rng.random_bool(0.4) {
                            let n = if weird { spaces.len() } else { spaces.len() - 3 };
                            out.push_str(spaces[rng.random_range(0..n)]);
                        }
                    };
                    if matches!(ch, '}' | ']') {
                        space(&mut rng, &mut spaced);
                    }
                    spaced.push(ch);
                    if matches!(ch, '{' | '[' | ',' | ':') {
                        space(&mut rng, &mut spaced);
                    }
                }
                if rng.random_bool(0.3) {
                    spaced = format!(" {spaced}\n");
                }
                frame = spaced;
            }
            match rng.random_range(0..30) {
                0 => {
                    let mut at = rng.random_range(0..frame.len());
                    while !frame.is_char_boundary(at) {
                        at -= 1;
                    }
                    frame.truncate(at)
                }
                1 => frame.push(' '),
                2 => frame = frame.replacen(':', ": ", 1),
                _ => {}
            }
            if fast(&frame).is_some() {
                accepted += 1;
            }
            if let Some(diff) = differs_from_general(frame.as_bytes()) {
                panic!("seed {seed}, frame {i}: {diff}");
            }
        }
        assert!(
            accepted > iterations / 5,
            "seed {seed}: only {accepted} frames took the fast path"
        );
    }

    /// The fast float parse gives the bits the standard library's parse gives, on random
    /// decimals of every length and scale (and the edges of the exact range).
    #[test]
    fn trades_in_the_usual_order_and_their_near_misses_agree_with_the_general_parser() {
        let trades = [
            r#"{"c":["1","12"],"p":189.52,"s":"AAPL","t":1700000000123,"v":100}"#,
            r#"{"c":null,"p":1,"s":"A","t":0,"v":0}"#,
            r#"{"c":["1","","2",""],"p":1,"s":"A","t":0,"v":0}"#,
            r#"{"c":["","1"],"p":1,"s":"A","t":0,"v":0}"#,
            r#"{"c":["123456789012","123456789012"],"p":1,"s":"A","t":0,"v":0}"#,
            r#"{"p":1.5,"s":"BINANCE:BTCUSDT","t":1700000000123,"v":0.25}"#,
            r#"{"c": ["1", "12"], "p": 189.52, "s": "AAPL", "t": 1700000000123, "v": 100}"#,
            r#"{"p": 1.5, "s": "A", "t": 1, "v": 2}"#,
            // Near misses: each must end as the general parser decides.
            r#"{"p":1,"s":"A","t":1,"v":1,"x":2}"#,
            r#"{"p":1,"s":"A","t":1,"v":1,"p":2}"#,
            r#"{"c":[],"c":null,"p":1,"s":"A","t":1,"v":1}"#,
            r#"{"p":-1,"s":"A","t":1,"v":1}"#,
            r#"{"p":1,"s":"","t":1,"v":1}"#,
            r#"{"p":1,"s":"AB","t":1,"v":1}"#,
            r#"{"p":1,"s":"A","t":1.5,"v":1}"#,
            r#"{"p":1,"s":"A","t":01,"v":1}"#,
            r#"{"p":1e2,"s":"A","t":1,"v":1e400}"#,
            r#"{"p":1,"s":"A","t":1,"v":1 }"#,
            r#"{"p": 1,"s":"A","t":1,"v":1}"#,
            r#"{"p":1, "s":"A","t":1,"v":1}"#,
            r#"{"p":1,"s":"A","t":1}"#,
            r#"{"s":"A","p":1,"t":1,"v":1}"#,
        ];
        for t in trades {
            for frame in [
                format!(r#"{{"data":[{t}],"type":"trade"}}"#),
                format!(r#"{{"data": [{t}, {t}], "type": "trade"}}"#),
            ] {
                assert_eq!(differs_from_general(frame.as_bytes()), None, "{frame}");
            }
        }
        // The usual layouts are taken, compact and as json.dumps writes them.
        for t in &trades[..8] {
            let frame = format!(r#"{{"data":[{t}],"type":"trade"}}"#);
            assert!(fast(&frame).is_some_and(|v| v.len() == 1), "{frame}");
        }
    }

    #[test]
    fn special_bytes_are_found_as_a_byte_loop_finds_them() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(16);
        let special = |c: u8| c == b'"' || c == b'\\' || c < 0x20 || c >= 0x7f;
        let edges = [0u8, 0x1f, 0x20, 0x21, b'"', b'#', b'[', b'\\', b']', 0x7e, 0x7f, 0x80, 0xff];
        for _ in 0..300_000 {
            let bytes: [u8; 8] = std::array::from_fn(|_| match rng.random_range(0..4) {
                0 => edges[rng.random_range(0..edges.len())],
                1 => rng.random(),
                _ => rng.random_range(b'A'..=b'Z'),
            });
            let expected = bytes.iter().position(|&c| special(c));
            assert_eq!(special_byte(u64::from_le_bytes(bytes)), expected, "{bytes:?}");
        }
    }

    #[test]
    fn eight_digits_at_once_agree_with_parsing_them_one_by_one() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(24);
        let mut checked = 0;
        for _ in 0..200_000 {
            // Mostly digits, sometimes a neighbour of one ('/', ':'), a letter or a space.
            let bytes: [u8; 8] = std::array::from_fn(|_| match rng.random_range(0..40) {
                0 => b'/',
                1 => b':',
                2 => b' ',
                3 => b'a',
                _ => b'0' + rng.random_range(0..10u8),
            });
            let text = std::str::from_utf8(&bytes).unwrap();
            let expected = text
                .bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| text.parse::<u64>().unwrap());
            assert_eq!(eight_digits(&bytes), expected, "{text}");
            checked += expected.is_some() as usize;
        }
        assert!(checked > 10_000, "enough all-digit cases: {checked}");
        assert_eq!(eight_digits(b"99999999"), Some(99_999_999));
        assert_eq!(eight_digits(b"00000000"), Some(0));
        assert_eq!(eight_digits(b"1234567"), None, "fewer than eight bytes");
    }

    #[test]
    fn floats_are_parsed_exactly_as_the_standard_library_parses_them() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(24);
        let mut texts: Vec<String> = [
            "0", "-0", "0.0", "-0.0", "9007199254740991", "9007199254740992", "9007199254740993",
            "0.1", "0.3", "2.675", "1.005", "0.000000000000001", "123456789012345.6",
            "99999999999999.99", "4503599627370497.5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..200_000 {
            let digits = rng.random_range(1..=17);
            let mut t: String = (0..digits)
                .map(|i| {
                    let d = rng.random_range(if i == 0 && digits > 1 { 1 } else { 0 }..10u8);
                    (b'0' + d) as char
                })
                .collect();
            if digits > 1 && rng.random_bool(0.7) {
                t.insert(rng.random_range(1..digits), '.');
            }
            if rng.random_bool(0.1) {
                t.insert(0, '-');
            }
            texts.push(t);
        }
        for t in texts {
            let mut c = Cursor::<false> { b: t.as_bytes(), i: 0 };
            let got = c.float().unwrap();
            let want: f64 = t.parse().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{t}");
            assert_eq!(c.i, t.len(), "{t}");
        }
    }

    #[test]
    fn gives_up_on_anything_else() {
        for f in [
            r#"{"type":"ping"}"#,
            r#"{"data":[{"p":-1,"s":"A","t":1,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"A","t":1}],"type":"trade"}"#,
            r#"{"data":[{"p":01,"s":"A","t":1,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1e400,"s":"A","t":1,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"A","t":1.5,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"p":2,"s":"A","t":1,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"A","t":1,"v":1,"\u0070":2}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"\ud800","t":1,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"\n","t":1,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"A","t":1,"v":1,"x":01}],"type":"trade"}"#,
            r#"{"data":[{"c":[1],"p":1,"s":"A","t":1,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"A","t":1,"v":1}],"type":"news"}"#,
        ] {
            assert!(fast(f).is_none(), "{f}");
        }
    }
}
