//! Object storage for sinks, dead letters and checkpoints: a local path, `file://`,
//! `gs://BUCKET/PREFIX` (Google Cloud Storage) or `memory://NAME` (in-process, for tests), through
//! `object_store`. Files are put under `_pending/` and then renamed into place, so readers never
//! see a partial file.
//!
//! Remote storage rides out outages: object_store retries each request (429, 5xx, timeouts) with
//! backoff, and when it gives up we wait and try again, for as long as the outage lasts — the
//! worker stops meanwhile, so sources stop reading (backpressure) and nothing is lost. Errors that
//! waiting cannot heal (no such bucket, permission denied, bad credentials) stop the job with a
//! message that says so.

pub mod gcs;
pub mod spill;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use self::spill::Encoded;

static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
    LazyLock::new(Default::default);

/// The in-process store behind `memory://name` (created on first use).
pub fn memory_store(name: &str) -> Arc<InMemory> {
    let mut stores = MEMORY_STORES.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(
        stores
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(InMemory::new())),
    )
}

/// Counts storage retries (for metrics): every failed attempt on remote storage that we retry.
pub static STORAGE_RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A folder in an object store.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    rt: tokio::runtime::Handle,
    /// What to show users (never contains credentials).
    pub display: String,
    /// Remote storage: transient failures are waited out (see the module docs).
    remote: bool,
}

/// Whether waiting may heal `e`. object_store has already retried 429/5xx/timeouts by the time
/// an error reaches us as `Generic`; the other kinds are answers, not outages.
fn transient(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::Generic { .. })
}

/// Where `rel` waits before it is published: `_pending/` + its path flattened, or, when that
/// would make a file name too long for a file system (255 bytes), a hash of the folders and the
/// file's own (unique) name.
fn pending_name(rel: &str) -> String {
    let flat = rel.replace('/', "__");
    if flat.len() <= 200 {
        return format!("_pending/{flat}.inprogress");
    }
    let (dir, file) = rel.rsplit_once('/').unwrap_or(("", rel));
    let hash = crate::base::keys::key_hash(dir);
    format!("_pending/{hash:016x}__{file}.inprogress")
}

/// The size of each part when a spilled file is uploaded (GCS wants at least 5 MiB but the last).
const UPLOAD_PART: u64 = 8 << 20;

/// The longest wait between two attempts during an outage.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Storage {
    /// Opens `url`: a local path (created if missing), `file:///abs/path`, `gs://bucket/prefix`
    /// or `memory://name`.
    pub fn open(url: &str, rt: tokio::runtime::Handle) -> Result<Storage> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("memory://") {
            let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok(Storage {
                store: memory_store(name),
                prefix: Path::from(prefix.trim_matches('/')),
                rt,
                display: format!("memory://{rest}"),
                remote: false,
            });
        }
        if let Some(rest) = url.strip_prefix("gs://") {
            return gcs::open(rest, rt);
        }
        let local = if let Some(rest) = url.strip_prefix("file://") {
            rest.to_string()
        } else if url.contains("://") {
            let scheme = url.split("://").next().unwrap_or_default();
            bail!(
                "unsupported storage scheme `{scheme}://` (supported: local paths, file://, gs://, memory://)"
            );
        } else {
            url.to_string()
        };
        std::fs::create_dir_all(&local)
            .with_context(|| format!("cannot create output folder `{local}`"))?;
        let abs =
            std::fs::canonicalize(&local).with_context(|| format!("cannot resolve `{local}`"))?;
        // A folder that cannot be written is found now, not when the first file is published.
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, Relaxed);
        let probe = abs.join(format!(".tickflow-probe-{}-{n}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .with_context(|| format!("cannot write to the folder `{}`", abs.display()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)
            .with_context(|| format!("cannot open `{}`", abs.display()))?;
        Ok(Storage {
            store: Arc::new(store),
            prefix: Path::default(),
            rt,
            display: abs.display().to_string(),
            remote: false,
        })
    }

    /// A folder of a remote store (see [`super::gcs`]).
    pub(super) fn remote(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        rt: tokio::runtime::Handle,
        display: String,
    ) -> Storage {
        Storage {
            store,
            prefix: Path::from(prefix.trim_matches('/')),
            rt,
            display,
            remote: true,
        }
    }

    /// Runs `op` until it succeeds or fails for a reason waiting cannot heal. Local stores fail
    /// at once.
    fn resilient<T, F, Fut>(&self, what: &str, mut op: F) -> object_store::Result<T>
    where
        F: FnMut(Arc<dyn ObjectStore>) -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut delay = Duration::from_millis(250);
        let mut failures = 0u32;
        loop {
            match self.rt.block_on(op(Arc::clone(&self.store))) {
                Ok(v) => {
                    if failures > 0 {
                        tracing::info!(storage = %self.display, failures, "storage is back: {what} succeeded");
                    }
                    return Ok(v);
                }
                Err(e) if self.remote && transient(&e) => {
                    failures += 1;
                    STORAGE_RETRIES.fetch_add(1, Relaxed);
                    // The first failure, then every tenth: an outage should not flood the log.
                    if failures % 10 == 1 {
                        tracing::warn!(storage = %self.display, failures, error = %e, "storage unavailable: {what}; waiting and retrying (input waits meanwhile)");
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Turns an error that stops the job into a message that says what is wrong.
    fn fatal(&self, e: object_store::Error, what: String) -> anyhow::Error {
        let hint = match &e {
            object_store::Error::PermissionDenied { .. } => Some(
                "permission denied: the credentials in use may not write this bucket (grant roles/storage.objectAdmin)",
            ),
            object_store::Error::Unauthenticated { .. } => {
                Some("not authenticated: check GOOGLE_APPLICATION_CREDENTIALS or Workload Identity")
            }
            _ => None,
        };
        let e = anyhow::Error::new(e).context(what);
        match hint {
            Some(h) => e.context(format!("`{}`: {h}", self.display)),
            None => e,
        }
    }

    fn full(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            // NB: a part that is already a valid segment is kept as is, so that Hive's `%XX`
            // escapes in partition folders reach the store unchanged (`PathPart::from` would
            // escape the `%` once more).
            p = match object_store::path::PathPart::parse(part) {
                Ok(valid) => p.clone().join(valid),
                Err(_) => p.clone().join(part),
            };
        }
        p
    }

    /// Writes `bytes` to `rel` atomically: put under `_pending/`, then rename into place.
    pub fn publish(&self, rel: &str, bytes: Encoded) -> Result<()> {
        let name = pending_name(rel);
        self.put_encoded(&name, bytes)?;
        self.promote(&name, rel)
    }

    /// Writes `bytes` under `_pending/` only (published later by [`Storage::promote`]); returns
    /// the pending name.
    pub fn write_pending(&self, rel: &str, bytes: Encoded) -> Result<String> {
        let name = pending_name(rel);
        self.put_encoded(&name, bytes)?;
        Ok(name)
    }

    /// Writes a finished file: small ones in one put, spilled ones in parts of [`UPLOAD_PART`]
    /// read from disk one at a time (a multipart upload, all or nothing like a put). An upload
    /// that fails for a transient reason starts again from the first part.
    pub fn put_encoded(&self, rel: &str, bytes: Encoded) -> Result<()> {
        let (file, len) = match bytes {
            Encoded::Memory(b) => return self.put(rel, b),
            Encoded::Spilled { file, len } => (Arc::new(file), len),
        };
        let path = self.full(rel);
        let what = format!("writing `{path}`");
        self.resilient(&what, |store| {
            let (path, file) = (path.clone(), Arc::clone(&file));
            async move {
                let mut upload = store.put_multipart(&path).await?;
                let mut offset = 0u64;
                let sent: object_store::Result<()> = async {
                    while offset < len {
                        let n = (len - offset).min(UPLOAD_PART);
                        let mut part = vec![0; n as usize];
                        // NB: a failed read of our own temporary file is not an outage: it is
                        // reported as a kind `resilient` does not retry.
                        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut part, offset)
                            .map_err(|e| object_store::Error::NotSupported {
                                source: format!("reading back the spilled file: {e}").into(),
                            })?;
                        upload.put_part(PutPayload::from(part)).await?;
                        offset += n;
                    }
                    upload.complete().await.map(|_| ())
                }
                .await;
                if sent.is_err() {
                    let _ = upload.abort().await;
                }
                sent
            }
        })
        .map_err(|e| self.fatal(e, what))
    }

    /// Publishes a pending file under its final name. Idempotent: when the pending file is gone
    /// and the final one exists, it was published before.
    pub fn promote(&self, pending: &str, fin: &str) -> Result<()> {
        let (from, to) = (self.full(pending), self.full(fin));
        let what = format!("publishing `{to}`");
        let renamed = self.resilient(&what, |store| {
            let (from, to) = (from.clone(), to.clone());
            async move {
                match store.rename(&from, &to).await {
                    Err(object_store::Error::NotFound { .. }) if store.head(&to).await.is_ok() => {
                        Ok(())
                    }
                    r => r,
                }
            }
        });
        renamed.map_err(|e| self.fatal(e, what))
    }

    /// Writes one object (atomically: the store's put is all or nothing).
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.full(rel);
        let payload = PutPayload::from(bytes);
        let what = format!("writing `{path}`");
        self.resilient(&what, |store| {
            let (path, payload) = (path.clone(), payload.clone());
            async move { store.put(&path, payload).await }
        })
        .map(|_| ())
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } if self.remote => {
                self.fatal(e, format!("{what}: the bucket does not exist"))
            }
            e => self.fatal(e, what),
        })
    }

    /// Writes one object only if none exists at `rel` (a conditional put: object_store's
    /// `PutMode::Create`, `x-goog-if-generation-match: 0` on GCS). Returns false, writing nothing,
    /// when one exists with other bytes; true when it was written (or a retry finds our own).
    pub fn put_new(&self, rel: &str, bytes: Vec<u8>) -> Result<bool> {
        let path = self.full(rel);
        let payload = PutPayload::from(bytes.clone());
        let what = format!("writing `{path}`");
        let written = self.resilient(&what, |store| {
            let (path, payload) = (path.clone(), payload.clone());
            async move {
                let opts = object_store::PutOptions::from(object_store::PutMode::Create);
                match store.put_opts(&path, payload, opts).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        });
        match written {
            Ok(true) => Ok(true),
            // Ours, written by an attempt whose answer was lost?
            Ok(false) => Ok(self.get(rel).map(|b| b[..] == bytes[..]).unwrap_or(false)),
            Err(e) => Err(self.fatal(e, what)),
        }
    }

    pub fn delete(&self, rel: &str) -> Result<()> {
        let path = self.full(rel);
        let what = format!("deleting `{path}`");
        self.resilient(&what, |store| {
            let path = path.clone();
            async move { store.delete(&path).await }
        })
        .map_err(|e| self.fatal(e, what))
    }

    /// Every object under the folder (relative names), for tests and tools.
    pub fn list(&self) -> Result<Vec<String>> {
        self.list_under("")
    }

    /// Every object under the subfolder `rel` (names relative to the folder).
    pub fn list_under(&self, rel: &str) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let prefix = self.full(rel);
        let what = format!("listing `{}/{rel}`", self.display);
        let metas: Vec<object_store::ObjectMeta> = self
            .resilient(&what, |store| {
                let prefix = prefix.clone();
                async move { store.list(Some(&prefix)).try_collect().await }
            })
            .map_err(|e| self.fatal(e, what))?;
        let strip = self.prefix.as_ref().len();
        let mut names: Vec<String> = metas
            .into_iter()
            .map(|m| {
                m.location.as_ref()[strip..]
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// The size of one object in bytes.
    pub fn size(&self, rel: &str) -> Result<u64> {
        let path = self.full(rel);
        let what = format!("reading `{}/{rel}`", self.display);
        self.resilient(&what, |store| {
            let path = path.clone();
            async move { store.head(&path).await.map(|m| m.size) }
        })
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                anyhow::anyhow!("{what}: no such object")
            }
            e => self.fatal(e, what),
        })
    }

    /// The size and ETag of one object (what [`Storage::get_range_of`] pins a reader to).
    pub fn version(&self, rel: &str) -> Result<(u64, Option<String>)> {
        let path = self.full(rel);
        let what = format!("reading `{}/{rel}`", self.display);
        self.resilient(&what, |store| {
            let path = path.clone();
            async move { store.head(&path).await.map(|m| (m.size, m.e_tag)) }
        })
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                anyhow::anyhow!("{what}: no such object")
            }
            e => self.fatal(e, what),
        })
    }

    /// Reads bytes `range` of one object if it is still the version `e_tag` (`Ok(None)` when it
    /// has been replaced since).
    pub fn get_range_of(
        &self,
        rel: &str,
        range: std::ops::Range<u64>,
        e_tag: &str,
    ) -> Result<Option<bytes::Bytes>> {
        let path = self.full(rel);
        let what = format!("reading `{}/{rel}`", self.display);
        let got = self.resilient(&what, |store| {
            let (path, range) = (path.clone(), range.clone());
            let opts = object_store::GetOptions::default()
                .with_range(Some(range))
                .with_if_match(Some(e_tag.to_string()));
            async move { store.get_opts(&path, opts).await?.bytes().await }
        });
        match got {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::Precondition { .. }) => Ok(None),
            Err(e) => Err(self.fatal(e, what)),
        }
    }

    /// Reads bytes `range` of one object.
    pub fn get_range(&self, rel: &str, range: std::ops::Range<u64>) -> Result<bytes::Bytes> {
        let path = self.full(rel);
        let what = format!("reading `{}/{rel}`", self.display);
        self.resilient(&what, |store| {
            let (path, range) = (path.clone(), range.clone());
            async move { store.get_range(&path, range).await }
        })
        .map_err(|e| self.fatal(e, what))
    }

    /// Reads one object.
    pub fn get(&self, rel: &str) -> Result<bytes::Bytes> {
        let path = self.full(rel);
        let what = format!("reading `{path}`");
        self.resilient(&what, |store| {
            let path = path.clone();
            async move { store.get(&path).await?.bytes().await }
        })
        .map_err(|e| self.fatal(e, what))
    }
}

/// The bytes of the file at `url` (a local path, `file://`, `gs://` or `memory://`), refused
/// in words when larger than `max` bytes (`what`: "a table", "a model file").
pub fn read_file(url: &str, max: usize, what: &str) -> Result<Vec<u8>, String> {
    let url = url.trim();
    let too_large = move |size: u64| {
        format!(
            "the file has {:.1} MiB; {what} may have at most {} MiB",
            size as f64 / (1 << 20) as f64,
            max >> 20
        )
    };
    if url.starts_with("gs://") || url.starts_with("memory://") {
        let (folder, file) = url
            .rsplit_once('/')
            .ok_or_else(|| format!("`{url}` names no file"))?;
        // NB: a thread of its own, so reading works from inside a runtime or outside one.
        let (folder, file) = (folder.to_string(), file.to_string());
        return std::thread::scope(|s| {
            s.spawn(move || -> Result<Vec<u8>, String> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                let store =
                    Storage::open(&folder, rt.handle().clone()).map_err(|e| format!("{e:#}"))?;
                let size = store.size(&file).map_err(|e| format!("{e:#}"))?;
                if size as usize > max {
                    return Err(too_large(size));
                }
                Ok(store.get(&file).map_err(|e| format!("{e:#}"))?.to_vec())
            })
            .join()
        })
        .map_err(|_| "reading the file panicked".to_string())?;
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    // NB: the caller names the file.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() as usize > max {
        return Err(too_large(meta.len()));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}
