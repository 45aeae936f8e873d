//! Membership from Kubernetes: the pods of a StatefulSet are the processes of the cluster.
//!
//! Process `i` is pod `NAME-i` (its index from the `apps.kubernetes.io/pod-index` label through
//! the downward API, else the hostname's ordinal); its peers are
//! `NAME-0.SERVICE.NAMESPACE.svc:PORT` … for as many pods as the StatefulSet's `spec.replicas`,
//! which is watched through the Kubernetes API: `kubectl scale` rescales the running pipeline.
//! A scale-up is taken on only once the new pods answer on their cluster port (so the pause is
//! short); a scale-down at once (the departing pods keep running until the final checkpoint, as
//! their grace period allows).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

/// Where this pod stands, from its environment.
#[derive(Debug, Clone)]
pub struct PodIdentity {
    pub statefulset: String,
    pub service: String,
    pub namespace: String,
    pub index: usize,
    pub port: u16,
    /// The cluster domain suffix of service names (`svc`, or `svc.cluster.local`).
    pub domain: String,
}

impl PodIdentity {
    /// Reads the pod's identity: `TICKFLOW_POD_INDEX` (the pod-index label) or the hostname's
    /// ordinal; `TICKFLOW_STATEFULSET` or the hostname without it; `TICKFLOW_SERVICE` (default:
    /// the StatefulSet's name); `POD_NAMESPACE` or the service account's namespace file.
    pub fn from_env(port: u16) -> Result<PodIdentity, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let hostname = var("HOSTNAME")
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_default();
        let (host_set, host_index) = match hostname.rsplit_once('-') {
            Some((set, n)) if n.parse::<usize>().is_ok() => (Some(set.to_string()), n.parse().ok()),
            _ => (None, None),
        };
        let index = match var("TICKFLOW_POD_INDEX") {
            Some(v) => v.trim().parse::<usize>().map_err(|_| {
                format!("TICKFLOW_POD_INDEX: `{v}` is not a pod index (a whole number)")
            })?,
            None => host_index.ok_or_else(|| {
                format!(
                    "--kubernetes: cannot tell this pod's index: set TICKFLOW_POD_INDEX from the `apps.kubernetes.io/pod-index` label (downward API), or run in a StatefulSet pod (hostname NAME-ORDINAL; this one is `{hostname}`)"
                )
            })?,
        };
        let statefulset = var("TICKFLOW_STATEFULSET").or(host_set).ok_or_else(|| {
            format!(
                "--kubernetes: cannot tell the StatefulSet's name: set TICKFLOW_STATEFULSET (the hostname `{hostname}` is not NAME-ORDINAL)"
            )
        })?;
        let service = var("TICKFLOW_SERVICE").unwrap_or_else(|| statefulset.clone());
        let namespace = var("POD_NAMESPACE")
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .ok_or_else(|| {
                "--kubernetes: cannot tell the namespace: set POD_NAMESPACE from metadata.namespace (downward API)".to_string()
            })?;
        let domain = var("TICKFLOW_CLUSTER_DOMAIN").unwrap_or_else(|| "svc".into());
        Ok(PodIdentity {
            statefulset,
            service,
            namespace,
            index,
            port,
            domain,
        })
    }

    /// The cluster addresses of the first `replicas` pods.
    pub fn peers(&self, replicas: usize) -> Vec<String> {
        (0..replicas)
            .map(|i| {
                format!(
                    "{}-{i}.{}.{}.{}:{}",
                    self.statefulset, self.service, self.namespace, self.domain, self.port
                )
            })
            .collect()
    }
}

/// The StatefulSet's replica count as last taken on, kept current by a watch.
pub struct KubeMembership {
    pub pod: PodIdentity,
    replicas: Arc<Mutex<usize>>,
    /// Runs the watch for the life of the process (runs come and go with rescales).
    _rt: tokio::runtime::Runtime,
}

impl KubeMembership {
    /// Reads the StatefulSet once (a missing one, or a service account without the Role, is an
    /// error now, in words) and keeps watching it.
    pub fn start(pod: PodIdentity) -> Result<KubeMembership, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tickflow-kube")
            .enable_all()
            .build()
            .map_err(|e| format!("--kubernetes: starting the API client: {e}"))?;
        let (name, ns) = (pod.statefulset.clone(), pod.namespace.clone());
        let (client, replicas) = rt.block_on(async {
            let config = kube::Config::infer().await.map_err(|e| {
                format!("--kubernetes: no Kubernetes API credentials (in-cluster service account or KUBECONFIG): {e}")
            })?;
            let server = config.cluster_url.to_string();
            let client = kube::Client::try_from(config).map_err(|e| {
                format!("--kubernetes: cannot make a client for the Kubernetes API at {server}: {}", causes(&e))
            })?;
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
            // An API server that does not answer yet is waited for (a minute); a refusal is not.
            let started = std::time::Instant::now();
            let sts = loop {
                match api.get(&name).await {
                    Ok(sts) => break sts,
                    Err(e)
                        if !matches!(e, kube::Error::Api(_))
                            && started.elapsed() < Duration::from_secs(60) =>
                    {
                        tracing::warn!(error = %e, "the Kubernetes API does not answer (retrying)");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) if !matches!(e, kube::Error::Api(_)) => {
                        return Err(format!(
                            "--kubernetes: the Kubernetes API at {server} did not answer for {} s: {}",
                            started.elapsed().as_secs(),
                            causes(&e)
                        ));
                    }
                    Err(e) => return Err(explain(&e, &name, &ns)),
                }
            };
            Ok::<_, String>((client, replicas_of(&sts)))
        })?;
        let replicas = Arc::new(Mutex::new(replicas));
        let watched = Arc::clone(&replicas);
        let peers = pod.clone();
        rt.spawn(async move {
            let api: Api<StatefulSet> = Api::namespaced(client, &ns);
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            let mut stream = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(sts) => {
                        let want = replicas_of(&sts);
                        let have = *watched.lock().unwrap_or_else(|e| e.into_inner());
                        tracing::debug!(statefulset = %name, replicas = want, "StatefulSet seen");
                        if want > have {
                            // Scale-up: wait (bounded) until the new pods listen.
                            tracing::info!(statefulset = %name, from = have, to = want, "replicas raised: waiting for the new pods to listen");
                            let new = peers.peers(want);
                            wait_listening(&new[have..], Duration::from_secs(300)).await;
                        }
                        if want != have {
                            tracing::info!(statefulset = %name, from = have, to = want, "replicas changed");
                        }
                        *watched.lock().unwrap_or_else(|e| e.into_inner()) = want;
                    }
                    Err(e) => tracing::warn!(statefulset = %name, error = %e, "watching the StatefulSet (retrying)"),
                }
            }
        });
        Ok(KubeMembership {
            pod,
            replicas,
            _rt: rt,
        })
    }

    /// The peers of the replica count as last taken on.
    pub fn current(&self) -> Vec<String> {
        self.pod
            .peers(*self.replicas.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn replicas_of(sts: &StatefulSet) -> usize {
    sts.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize
}

/// An API error in words, naming what to grant.
/// An error with every cause below it (`client error (Connect): tcp connect error: Connection
/// refused (os error 111)`), each said once.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    text
}

fn explain(e: &kube::Error, name: &str, ns: &str) -> String {
    if let kube::Error::Api(status) = e {
        match status.code {
            403 => {
                return format!(
                    "--kubernetes: the service account may not read StatefulSet `{name}` in namespace `{ns}` ({}): grant get, list and watch on it (deploy/k8s/base/rbac.yaml)",
                    status.message
                );
            }
            404 => {
                return format!(
                    "--kubernetes: there is no StatefulSet `{name}` in namespace `{ns}` (set TICKFLOW_STATEFULSET)"
                );
            }
            401 => {
                return format!(
                    "--kubernetes: the Kubernetes API refused the credentials ({})",
                    status.message
                );
            }
            _ => {}
        }
    }
    format!("--kubernetes: reading StatefulSet `{name}` in namespace `{ns}`: {e}")
}

/// Waits until every address accepts a TCP connection (a new pod listens), at most `limit`.
async fn wait_listening(addrs: &[String], limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    for addr in addrs {
        while tokio::time::Instant::now() < deadline {
            let attempt =
                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr));
            if let Ok(Ok(_)) = attempt.await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API server that does not answer is reported with what failed underneath (the
    /// connection refused), not only kube's `client error (Connect)`.
    #[test]
    fn an_unreachable_api_is_explained_down_to_its_cause() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(async {
            let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
            let client = kube::Client::try_from(config).unwrap();
            let api: Api<StatefulSet> = Api::namespaced(client, "default");
            api.get("tickflow").await.unwrap_err()
        });
        let text = causes(&err);
        assert!(text.starts_with(&err.to_string()), "{text}");
        assert!(text.contains("Connection refused"), "{text}");
    }

    #[test]
    fn peers_are_the_statefulset_pods_behind_the_headless_service() {
        let pod = PodIdentity {
            statefulset: "tickflow".into(),
            service: "tickflow".into(),
            namespace: "markets".into(),
            index: 1,
            port: 7000,
            domain: "svc".into(),
        };
        assert_eq!(
            pod.peers(2),
            [
                "tickflow-0.tickflow.markets.svc:7000",
                "tickflow-1.tickflow.markets.svc:7000"
            ]
        );
    }
}
