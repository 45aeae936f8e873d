//! The bytes of an output file while it is written: in memory while small, then in an unlinked
//! temporary file (`TMPDIR`), so that a sink's memory does not grow with its files' size
//! (`rolling.max_bytes` is 128 MiB by default, per open file, per worker).
//!
//! A spilled file is uploaded in parts ([`Storage::put_encoded`](super::Storage)); the
//! temporary file stays until the upload succeeded, so an upload that fails can start again.
//! When the temporary folder cannot be written, files stay in memory (with one warning naming
//! the folder): a run does not fail hours in because `/tmp` is read-only.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Set once spilling failed: later files stay in memory without trying again.
static SPILL_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// Bytes kept in memory before a file moves to disk.
pub const SPILL_AT: usize = 4 << 20;

/// [`SPILL_AT`], or `TICKFLOW_SPILL_AT` (bytes; tests set it low so that every file spills).
pub fn spill_at() -> usize {
    static AT: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
        std::env::var("TICKFLOW_SPILL_AT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(SPILL_AT)
    });
    *AT
}

/// A file's bytes as they are written.
pub struct SpillBuffer {
    mem: Vec<u8>,
    file: Option<BufWriter<File>>,
    len: u64,
    spill_at: usize,
}

/// A finished file.
pub enum Encoded {
    Memory(Vec<u8>),
    /// An unlinked temporary file of `len` bytes (deleted when dropped).
    Spilled {
        file: File,
        len: u64,
    },
}

impl Encoded {
    pub fn len(&self) -> u64 {
        match self {
            Encoded::Memory(b) => b.len() as u64,
            Encoded::Spilled { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole file in memory.
    #[cfg(test)]
    fn into_bytes(self) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        match self {
            Encoded::Memory(b) => Ok(b),
            Encoded::Spilled { file, len } => {
                let mut buf = vec![0; len as usize];
                file.read_exact_at(&mut buf, 0)?;
                Ok(buf)
            }
        }
    }
}

impl Default for SpillBuffer {
    fn default() -> Self {
        SpillBuffer::new(spill_at())
    }
}

impl SpillBuffer {
    pub fn new(spill_at: usize) -> SpillBuffer {
        SpillBuffer {
            mem: Vec::new(),
            file: None,
            len: 0,
            spill_at,
        }
    }

    pub fn finish(self) -> io::Result<Encoded> {
        match self.file {
            None => Ok(Encoded::Memory(self.mem)),
            Some(w) => {
                let file = w.into_inner().map_err(|e| e.into_error())?;
                Ok(Encoded::Spilled {
                    file,
                    len: self.len,
                })
            }
        }
    }

    fn spill(&mut self) -> io::Result<()> {
        let file = temp_file()?;
        let mut w = BufWriter::with_capacity(256 << 10, file);
        w.write_all(&self.mem)?;
        self.mem = Vec::new();
        self.file = Some(w);
        Ok(())
    }
}

impl Write for SpillBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.file.is_none() && self.mem.len() + buf.len() > self.spill_at {
            if SPILL_UNAVAILABLE.load(Ordering::Relaxed) {
                self.spill_at = usize::MAX;
            } else if let Err(e) = self.spill() {
                if !SPILL_UNAVAILABLE.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "{e}; output files are kept in memory until they are published instead (set TMPDIR to a writable folder)"
                    );
                }
                self.spill_at = usize::MAX;
            }
        }
        match self.file.as_mut() {
            Some(f) => f.write_all(buf)?,
            None => self.mem.extend_from_slice(buf),
        }
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// A new file in the temporary folder, unlinked at once (it lives as long as its handle).
fn temp_file() -> io::Result<File> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        ".tickflow-spill-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot write an output file's bytes to the temporary folder `{}` (TMPDIR): {e}",
                    dir.display()
                ),
            )
        })?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_stay_in_memory_and_large_ones_spill_with_the_same_bytes() {
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for spill_at in [1_000_000, 1000, 1] {
            let mut b = SpillBuffer::new(spill_at);
            for chunk in data.chunks(777) {
                b.write_all(chunk).unwrap();
            }
            let enc = b.finish().unwrap();
            assert_eq!(
                matches!(enc, Encoded::Spilled { .. }),
                spill_at < data.len(),
                "spill_at {spill_at}"
            );
            assert_eq!(enc.len(), data.len() as u64);
            assert_eq!(enc.into_bytes().unwrap(), data, "spill_at {spill_at}");
        }
    }
}
