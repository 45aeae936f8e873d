//! Object storage for sinks: a local path, `file://`, or `memory://NAME` (in-process, for tests),
//! through `object_store`. Files are put under `_pending/` and then renamed into place, so readers
//! never see a partial file.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use anyhow::{Context, Result, bail};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

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

/// A folder in an object store.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    rt: tokio::runtime::Handle,
    /// What to show users (never contains credentials).
    pub display: String,
}

impl Storage {
    /// Opens `url`: a local path (created if missing), `file:///abs/path` or `memory://name`.
    pub fn open(url: &str, rt: tokio::runtime::Handle) -> Result<Storage> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("memory://") {
            let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok(Storage {
                store: memory_store(name),
                prefix: Path::from(prefix.trim_matches('/')),
                rt,
                display: format!("memory://{rest}"),
            });
        }
        let local = if let Some(rest) = url.strip_prefix("file://") {
            rest.to_string()
        } else if url.contains("://") {
            let scheme = url.split("://").next().unwrap_or_default();
            bail!(
                "unsupported storage scheme `{scheme}://` (supported: local paths, file://, memory://)"
            );
        } else {
            url.to_string()
        };
        std::fs::create_dir_all(&local)
            .with_context(|| format!("cannot create output folder `{local}`"))?;
        let abs =
            std::fs::canonicalize(&local).with_context(|| format!("cannot resolve `{local}`"))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)
            .with_context(|| format!("cannot open `{}`", abs.display()))?;
        Ok(Storage {
            store: Arc::new(store),
            prefix: Path::default(),
            rt,
            display: abs.display().to_string(),
        })
    }

    fn full(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// Writes `bytes` to `rel` atomically: put under `_pending/`, then rename into place.
    pub fn publish(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let pending = self.full(&format!("_pending/{}.inprogress", rel.replace('/', "__")));
        let target = self.full(rel);
        let store = Arc::clone(&self.store);
        self.rt.block_on(async move {
            store
                .put(&pending, PutPayload::from(bytes))
                .await
                .with_context(|| format!("writing `{pending}`"))?;
            store
                .rename(&pending, &target)
                .await
                .with_context(|| format!("publishing `{target}`"))?;
            Ok::<_, anyhow::Error>(())
        })?;
        Ok(())
    }

    /// Writes `bytes` under `_pending/` only (published later by [`Storage::promote`]); returns
    /// the pending name.
    pub fn write_pending(&self, rel: &str, bytes: Vec<u8>) -> Result<String> {
        let name = format!("_pending/{}.inprogress", rel.replace('/', "__"));
        self.put(&name, bytes)?;
        Ok(name)
    }

    /// Publishes a pending file under its final name. Idempotent: when the pending file is gone
    /// and the final one exists, it was published before.
    pub fn promote(&self, pending: &str, fin: &str) -> Result<()> {
        let store = Arc::clone(&self.store);
        let (from, to) = (self.full(pending), self.full(fin));
        self.rt.block_on(async move {
            match store.rename(&from, &to).await {
                Ok(()) => Ok(()),
                Err(object_store::Error::NotFound { .. }) if store.head(&to).await.is_ok() => {
                    Ok(())
                }
                Err(e) => Err(anyhow::Error::new(e).context(format!("publishing `{to}`"))),
            }
        })
    }

    /// Writes one object (atomically: the store's put is all or nothing).
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let store = Arc::clone(&self.store);
        let path = self.full(rel);
        self.rt.block_on(async move {
            store
                .put(&path, PutPayload::from(bytes))
                .await
                .with_context(|| format!("writing `{path}`"))
        })?;
        Ok(())
    }

    pub fn delete(&self, rel: &str) -> Result<()> {
        let store = Arc::clone(&self.store);
        let path = self.full(rel);
        self.rt.block_on(async move {
            store
                .delete(&path)
                .await
                .with_context(|| format!("deleting `{path}`"))
        })?;
        Ok(())
    }

    /// Every object under the folder (relative names), for tests and tools.
    pub fn list(&self) -> Result<Vec<String>> {
        self.list_under("")
    }

    /// Every object under the subfolder `rel` (names relative to the folder).
    pub fn list_under(&self, rel: &str) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let store = Arc::clone(&self.store);
        let prefix = self.full(rel);
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(async move { store.list(Some(&prefix)).try_collect().await })?;
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

    /// Reads one object.
    pub fn get(&self, rel: &str) -> Result<bytes::Bytes> {
        let store = Arc::clone(&self.store);
        let path = self.full(rel);
        Ok(self
            .rt
            .block_on(async move { store.get(&path).await?.bytes().await })?)
    }
}
