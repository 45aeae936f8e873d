//! Google Cloud Storage: `gs://BUCKET/PREFIX` through object_store's GCS client (the XML API).
//!
//! Credentials come from where Google's libraries look for them, never from the spec and never
//! printed: `GOOGLE_APPLICATION_CREDENTIALS` / `GOOGLE_SERVICE_ACCOUNT` (a service-account file),
//! `GOOGLE_SERVICE_ACCOUNT_KEY` (its JSON), the gcloud application-default credentials, or the
//! metadata server (Workload Identity on GKE). `GCS_EMULATOR_URL` points every bucket at an
//! emulator instead (`deploy/local/gcs`), without OAuth.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use super::Storage;

/// One client per bucket per process (connections are pooled per client), checked once.
static BUCKETS: LazyLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> =
    LazyLock::new(Default::default);

/// How long object_store retries one request (429, 5xx, timeouts) before the error reaches us
/// (`TICKFLOW_STORAGE_REQUEST_RETRY`, seconds, default 30); [`Storage`] then keeps waiting out
/// an outage mid-run.
fn request_retry() -> Result<Duration> {
    let Ok(v) = std::env::var("TICKFLOW_STORAGE_REQUEST_RETRY") else {
        return Ok(Duration::from_secs(30));
    };
    match v.trim().trim_end_matches('s').parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0. => Ok(Duration::from_secs_f64(s)),
        _ => bail!(
            "TICKFLOW_STORAGE_REQUEST_RETRY: `{v}` is not a positive number of seconds (e.g. 30s)"
        ),
    }
}

fn client(bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    // reqwest is built without a default TLS provider: use the one the rest of tickflow uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.,
        },
        max_retries: 8,
        retry_timeout: request_retry()?,
    };
    let mut options = ClientOptions::new()
        .with_timeout(Duration::from_secs(60))
        .with_connect_timeout(Duration::from_secs(5));
    let mut builder = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry);
    if let Some(url) = std::env::var("GCS_EMULATOR_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        let key = serde_json::json!({
            "gcs_base_url": url.trim().trim_end_matches('/'),
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        });
        builder = builder.with_service_account_key(key.to_string());
        options = options.with_allow_http(true);
    }
    let store = builder
        .with_client_options(options)
        .build()
        .map_err(|e| anyhow::anyhow!("`gs://{bucket}`: cannot set up the GCS client: {e}"))?;
    Ok(Arc::new(store))
}

/// `gs://BUCKET/PATH` of one object → (`BUCKET/FOLDERS`, object name); `None` when the bucket
/// or the object name is missing (`gs://`, `gs://bucket`, `gs:///x`).
pub fn object_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("gs://")?.trim_end_matches('/');
    let (dir, name) = rest.rsplit_once('/')?;
    let bucket = dir.split('/').next().unwrap_or_default();
    (!bucket.is_empty() && !name.is_empty()).then_some((dir, name))
}

/// Opens `gs://` + `rest` for reading only (a replay archive): no write probe, so read-only
/// credentials do; a missing object or permission is reported at the first read.
pub fn open_reader(rest: &str, rt: tokio::runtime::Handle) -> Result<Storage> {
    let rest = rest.trim_end_matches('/');
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("`gs://{rest}`: no bucket name (expected gs://BUCKET/PATH)");
    }
    let existing = BUCKETS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(bucket)
        .cloned();
    let store = match existing {
        Some(store) => store,
        None => client(bucket)?,
    };
    Ok(Storage::remote(store, prefix, rt, format!("gs://{rest}")))
}

/// Opens `gs://` + `rest`. The first open of a bucket writes and deletes a small probe object,
/// so that a missing bucket or missing permission stops the job at start with a clear message.
pub fn open(rest: &str, rt: tokio::runtime::Handle) -> Result<Storage> {
    let rest = rest.trim_end_matches('/');
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("`gs://{rest}`: no bucket name (expected gs://BUCKET/PREFIX)");
    }
    let display = format!("gs://{rest}");
    let mut buckets = BUCKETS.lock().unwrap_or_else(|e| e.into_inner());
    let store = match buckets.get(bucket) {
        Some(store) => Arc::clone(store),
        None => {
            let store = client(bucket)?;
            probe(&store, bucket, prefix, &rt)?;
            buckets.insert(bucket.to_string(), Arc::clone(&store));
            store
        }
    };
    Ok(Storage::remote(store, prefix, rt, display))
}

fn probe(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    prefix: &str,
    rt: &tokio::runtime::Handle,
) -> Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{}-{nanos}", std::process::id());
    let path = Path::from_iter(
        prefix
            .split('/')
            .filter(|p| !p.is_empty())
            .chain(["_tickflow_probe", name.as_str()]),
    );
    let store = Arc::clone(store);
    let result = rt.block_on(async move {
        store.put(&path, PutPayload::from_static(b"probe")).await?;
        store.delete(&path).await
    });
    result.map_err(|e| {
        let why = match &e {
            object_store::Error::NotFound { .. } => "the bucket does not exist".to_string(),
            object_store::Error::PermissionDenied { .. } => {
                "permission denied: the credentials in use may not write this bucket (grant roles/storage.objectAdmin)".to_string()
            }
            object_store::Error::Unauthenticated { .. } => {
                "not authenticated: set GOOGLE_APPLICATION_CREDENTIALS, or run on GKE with Workload Identity".to_string()
            }
            _ => format!("cannot reach it ({e})"),
        };
        anyhow::anyhow!("`gs://{bucket}`: {why}")
    })
}
