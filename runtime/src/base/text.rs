//! Untrusted text in messages: what a log line, an error or a dead-letter `detail` may quote of
//! input (symbols, keys, server messages) is bounded and free of control characters, whatever
//! the input was.

use std::fmt::Write;

/// How much of an untrusted value a message quotes.
pub const QUOTE_CHARS: usize = 64;

/// `s` for a message: at most `max` characters (then `…(N bytes)`), control characters escaped.
pub fn quote(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 2) + 16);
    for (n, c) in s.chars().enumerate() {
        if n == max {
            let _ = write!(out, "…({} bytes)", s.len());
            return out;
        }
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_escapes() {
        assert_eq!(quote("AAPL", 64), "AAPL");
        assert_eq!(quote("a\nb\0", 64), "a\\nb\\u{0}");
        let long = "x".repeat(50_000_000);
        let q = quote(&long, 64);
        assert!(q.len() < 100, "{}", q.len());
        assert!(q.ends_with("…(50000000 bytes)"));
    }
}
