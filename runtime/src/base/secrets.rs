//! Secrets never reach a log line. Tokens are registered here when they are read (from the
//! environment or a file) and every log line is written through [`RedactingStderr`], which
//! replaces them by `***` — also in lines logged by libraries (the websocket client logs its
//! request URL, `?token=...`, at trace level).

use std::io::Write;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<Vec<u8>>> = RwLock::new(Vec::new());

/// Shorter values are not treated as secrets (redacting them would garble every line).
pub const MIN_SECRET_LEN: usize = 6;

/// Registers `secret` (and its percent-encoded form, as it appears in URLs) for redaction.
pub fn register(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut encoded = String::with_capacity(secret.len() * 3);
    for b in secret.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for s in [secret.as_bytes().to_vec(), encoded.into_bytes()] {
        if !all.contains(&s) {
            all.push(s);
        }
    }
}

/// `text` with every registered secret replaced by `***`.
pub fn redact(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let all = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = std::borrow::Cow::Borrowed(text);
    for s in all.iter() {
        if memchr::memmem::find(&out, s).is_none() {
            continue;
        }
        let mut replaced = Vec::with_capacity(out.len());
        let mut rest: &[u8] = &out;
        while let Some(i) = memchr::memmem::find(rest, s) {
            replaced.extend_from_slice(&rest[..i]);
            replaced.extend_from_slice(b"***");
            rest = &rest[i + s.len()..];
        }
        replaced.extend_from_slice(rest);
        out = std::borrow::Cow::Owned(replaced);
    }
    out
}

/// A `tracing_subscriber` writer: each log line is collected, redacted, then written to stderr
/// in one piece.
pub struct RedactingStderr;

/// One log line on its way to stderr.
pub struct RedactingLine(Vec<u8>);

impl Write for RedactingLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = std::io::stderr().lock().write_all(&redact(&self.0));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingLine;
    fn make_writer(&'a self) -> RedactingLine {
        RedactingLine(Vec::with_capacity(256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_replaced_raw_and_url_encoded() {
        register("s3cr3t/tok+en");
        register("abc"); // too short: not a secret
        let line = b"GET /?token=s3cr3t%2Ftok%2Ben HTTP/1.1 s3cr3t/tok+en abc";
        assert_eq!(
            &*redact(line),
            b"GET /?token=*** HTTP/1.1 *** abc".as_slice()
        );
    }
}
