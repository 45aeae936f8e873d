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

    pub fn finish(mut self) -> io::Result<Encoded> {
        match self.file.take() {
            None => Ok(Encoded::Memory(self.mem)),
            Some(w) => match w.into_inner() {
                Ok(file) => Ok(Encoded::Spilled {
                    file,
                    len: self.len,
                }),
                Err(e) => {
                    let (e, w) = e.into_parts();
                    self.file = Some(w);
                    self.unspill(e)?;
                    Ok(Encoded::Memory(self.mem))
                }
            },
        }
    }

    /// Writing to the temporary file failed (the folder filled up after spilling began): the
    /// bytes written so far come back into memory, and the file goes on there.
    fn unspill(&mut self, e: io::Error) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        static WARNED: AtomicBool = AtomicBool::new(false);
        let Some(w) = self.file.take() else {
            return Err(e);
        };
        let (file, buffered) = w.into_parts();
        let buffered = buffered.unwrap_or_default();
        let on_disk = file.metadata()?.len();
        let mut bytes = vec![0; on_disk as usize];
        file.read_exact_at(&mut bytes, 0)?;
        bytes.extend_from_slice(&buffered);
        // A write that failed half-way left a part of its bytes behind: keep what was written.
        if (bytes.len() as u64) < self.len {
            return Err(e);
        }
        bytes.truncate(self.len as usize);
        self.mem = bytes;
        self.spill_at = usize::MAX;
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "writing an output file's bytes to the temporary folder `{}` (TMPDIR) failed: {e}; the file is kept in memory until it is published instead",
                std::env::temp_dir().display()
            );
        }
        Ok(())
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
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.write_all(buf)
        {
            self.unspill(e)?;
        }
        if self.file.is_none() {
            self.mem.extend_from_slice(buf);
        }
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut().map(|f| f.flush()) {
            Some(Err(e)) => self.unspill(e),
            _ => Ok(()),
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

    /// The temporary folder fills up after spilling began (`/dev/full` answers every write
    /// with ENOSPC): the file goes on in memory, every byte kept.
    #[test]
    fn a_full_temporary_folder_after_spilling_began_keeps_the_file_in_memory() {
        let data: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let Ok(full) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/full")
        else {
            return;
        };
        let mut b = SpillBuffer::new(usize::MAX);
        b.file = Some(BufWriter::with_capacity(4096, full));
        for chunk in data.chunks(777) {
            b.write_all(chunk).unwrap();
        }
        b.flush().unwrap();
        let enc = b.finish().unwrap();
        assert!(matches!(enc, Encoded::Memory(_)));
        assert_eq!(enc.into_bytes().unwrap(), data);
    }
}
