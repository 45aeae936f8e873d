//! Kubernetes for real, without a container engine: a real API server, StatefulSet controller,
//! RBAC and kubectl (deploy/local/kubernetes); the test plays the kubelet, running one tickflow
//! process per pod in the pod's own network namespace on a bridge (pod IP, the headless
//! Service's names in its hosts file, the pod's service-account token as its credentials).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{bin, repo};

const BRIDGE: &str = "tfk8s0";
const HOST_IP: &str = "10.215.0.1";
const API_PORT: u16 = 16443;
const KAFKA_PORT: u16 = 19092;

/// The kubectl that `deploy/local/kubernetes build` made (the API server's own version), else
/// the one on the PATH.
fn kubectl_bin() -> PathBuf {
    let built = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/tickflow/kubernetes-1.34.4/bin/kubectl");
    if built.exists() {
        built
    } else {
        PathBuf::from("kubectl")
    }
}

fn sh(cmd: &mut Command) -> Output {
    cmd.output().expect("runs")
}

fn ip(args: &[&str]) -> bool {
    sh(Command::new("ip").args(args).stderr(Stdio::null()))
        .status
        .success()
}

/// The bridge the pods' network namespaces hang off, the control plane and a Kafka broker on the
/// bridge's address (pods cannot reach the host's loopback). Everything stops on drop.
struct World {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    brokers: String,
}

/// Where this fixture's broker keeps its data (fixed, so that a run killed half-way can be
/// cleaned up by the next one).
const KAFKA_DATA: &str = "/tmp/tickflow-k8s-test-kafka";

/// Processes, namespaces and the bridge a killed earlier run of this test left behind.
fn clean_leftovers() {
    for pattern in [
        format!("--secure-port={API_PORT}"),
        "--listen-client-urls http://127.0.0.1:12379".to_string(),
        KAFKA_DATA.to_string(),
        "-volumes/spec/pipeline.yaml --kubernetes".to_string(),
    ] {
        let _ = Command::new("pkill")
            .args(["-9", "-f", "--", &pattern])
            .status();
    }
    let list = sh(Command::new("ip").args(["netns", "list"]));
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        if let Some(n) = line
            .split_whitespace()
            .next()
            .filter(|n| n.starts_with("tfk-"))
        {
            ip(&["netns", "del", n]);
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(n));
        }
    }
    ip(&["link", "del", BRIDGE]);
    let _ = std::fs::remove_dir_all(KAFKA_DATA);
}

impl World {
    fn start() -> Option<World> {
        clean_leftovers();
        if !ip(&["link", "add", BRIDGE, "type", "bridge"]) && !ip(&["link", "show", BRIDGE]) {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot create a bridge (needs root)"
            );
            eprintln!("skipping: cannot create network devices (needs root)");
            return None;
        }
        ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", BRIDGE]);
        assert!(ip(&["link", "set", BRIDGE, "up"]));
        let dir = tempfile::tempdir().unwrap();
        let out = sh(Command::new(repo().join("deploy/local/kubernetes"))
            .arg("start")
            .env("TICKFLOW_K8S_ADDRESS", HOST_IP)
            .env("TICKFLOW_K8S_PORT", API_PORT.to_string())
            .env("TICKFLOW_K8S_DIR", dir.path().join("k8s"))
            .env("TICKFLOW_ETCD_PORT", "12379"));
        assert!(
            out.status.success(),
            "deploy/local/kubernetes start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kafka = sh(Command::new(repo().join("deploy/local/kafka"))
            .arg("start")
            .env("KAFKA_HOST", HOST_IP)
            .env("KAFKA_PORT", KAFKA_PORT.to_string())
            .env("KAFKA_CONTROLLER_PORT", (KAFKA_PORT + 1).to_string())
            .env("TICKFLOW_KAFKA_DATA", KAFKA_DATA));
        assert!(
            kafka.status.success(),
            "kafka: {}",
            String::from_utf8_lossy(&kafka.stderr)
        );
        let kubeconfig = dir.path().join("k8s/admin.kubeconfig");
        Some(World {
            dir,
            kubeconfig,
            brokers: format!("{HOST_IP}:{KAFKA_PORT}"),
        })
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        sh(Command::new(kubectl_bin())
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig))
    }

    /// kubectl that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply_json(&self, v: &Value, extra: &[&str]) -> Output {
        let args: Vec<&str> = ["apply", "-f", "-"]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        kubectl_with_input(&self.kubeconfig, &args, &v.to_string())
    }
}

/// kubectl with `input` on its standard input.
fn kubectl_with_input(kc: &Path, args: &[&str], input: &str) -> Output {
    crate::support::run_with_input(
        Command::new(kubectl_bin()).args(args).env("KUBECONFIG", kc),
        input.as_bytes(),
    )
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = sh(Command::new(repo().join("deploy/local/kafka"))
            .arg("stop")
            .env("KAFKA_HOST", HOST_IP)
            .env("KAFKA_PORT", KAFKA_PORT.to_string())
            .env("TICKFLOW_KAFKA_DATA", KAFKA_DATA));
        let _ = sh(Command::new(repo().join("deploy/local/kubernetes"))
            .arg("stop")
            .env("TICKFLOW_K8S_DIR", self.dir.path().join("k8s")));
        ip(&["link", "del", BRIDGE]);
    }
}

/// `kubectl kustomize DIR` as a JSON list of objects.
fn render(world: &World, dir: &Path) -> Vec<Value> {
    let yaml = world.ok(&["kustomize", &dir.display().to_string()]);
    let args = ["create", "--dry-run=client", "-o", "json", "-f", "-"];
    let out = kubectl_with_input(&world.kubeconfig, &args, &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One JSON document per object (or a List).
    let mut objs = Vec::new();
    for v in serde_json::Deserializer::from_slice(&out.stdout).into_iter::<Value>() {
        let v = v.unwrap();
        match v["kind"].as_str() {
            Some("List") => objs.extend(v["items"].as_array().unwrap().iter().cloned()),
            _ => objs.push(v),
        }
    }
    objs
}

/// One pod's process, as the kubelet would run its container.
struct PodProcess {
    child: Child,
    log: PathBuf,
    terminated: bool,
}

/// The kubelet of the test: runs, restarts and stops the processes of one namespace's pods.
struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    logs: Arc<Mutex<BTreeMap<String, Vec<PathBuf>>>>,
}

impl Kubelet {
    fn start(world: &World, ns: &str, root: &Path) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let logs: Arc<Mutex<BTreeMap<String, Vec<PathBuf>>>> = Default::default();
        let (kc, ns, root) = (world.kubeconfig.clone(), ns.to_string(), root.to_path_buf());
        let (s, l) = (Arc::clone(&stop), Arc::clone(&logs));
        let thread = std::thread::spawn(move || kubelet_loop(&kc, &ns, &root, &s, &l));
        Kubelet {
            stop,
            thread: Some(thread),
            logs,
        }
    }

    /// Everything pod `name`'s processes wrote to stderr, restarts included.
    fn log(&self, name: &str) -> String {
        let logs = self.logs.lock().unwrap();
        logs.get(name)
            .map(|files| {
                files
                    .iter()
                    .map(|f| std::fs::read_to_string(f).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n--- restart ---\n")
            })
            .unwrap_or_default()
    }

    fn all_logs(&self) -> String {
        let names: Vec<String> = self.logs.lock().unwrap().keys().cloned().collect();
        names
            .iter()
            .map(|n| format!("=== {n}\n{}", self.log(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn kubectl_json(kc: &Path, args: &[&str]) -> Option<Value> {
    let out = sh(Command::new(kubectl_bin())
        .args(args)
        .args(["-o", "json"])
        .env("KUBECONFIG", kc));
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn pod_ip(ordinal: usize) -> String {
    format!("10.215.0.{}", 10 + ordinal)
}

fn kubelet_loop(
    kc: &Path,
    ns: &str,
    root: &Path,
    stop: &AtomicBool,
    logs: &Mutex<BTreeMap<String, Vec<PathBuf>>>,
) {
    let mut running: BTreeMap<String, PodProcess> = BTreeMap::new();
    let mut completed: std::collections::BTreeSet<String> = Default::default();
    let mut netns: BTreeMap<String, String> = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let Some(list) = kubectl_json(kc, &["get", "pods", "-n", ns]) else {
            continue;
        };
        let pods = list["items"].as_array().cloned().unwrap_or_default();
        let present: Vec<String> = pods
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
            .collect();
        for pod in &pods {
            let name = pod["metadata"]["name"].as_str().unwrap().to_string();
            let terminating = !pod["metadata"]["deletionTimestamp"].is_null();
            let exited = running
                .get_mut(&name)
                .map(|p| p.child.try_wait().unwrap().map(|s| (s, p.log.clone())))
                .unwrap_or(None);
            if terminating {
                match running.get_mut(&name) {
                    Some(p) if exited.is_none() => {
                        if !p.terminated {
                            let _ = Command::new("kill")
                                .args(["-TERM", &p.child.id().to_string()])
                                .status();
                            p.terminated = true;
                        }
                    }
                    _ => {
                        // The container is gone: the kubelet confirms the deletion.
                        running.remove(&name);
                        completed.remove(&name);
                        let _ = sh(Command::new(kubectl_bin())
                            .args([
                                "delete",
                                "pod",
                                &name,
                                "-n",
                                ns,
                                "--grace-period=0",
                                "--force",
                            ])
                            .env("KUBECONFIG", kc));
                        if let Some(n) = netns.remove(&name) {
                            ip(&["netns", "del", &n]);
                            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&n));
                        }
                    }
                }
                continue;
            }
            if let Some((status, log)) = exited {
                running.remove(&name);
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if status.success() && text.lines().any(|l| l.starts_with("done: ")) {
                    completed.insert(name.clone());
                }
                // Otherwise restartPolicy Always: start it again below.
            }
            if running.contains_key(&name) || completed.contains(&name) {
                continue;
            }
            let ordinal: usize = name.rsplit('-').next().unwrap().parse().unwrap();
            let n = netns
                .entry(name.clone())
                .or_insert_with(|| make_netns(&name, ordinal, ns))
                .clone();
            if let Some(p) = start_container(kc, ns, pod, &n, root, ordinal) {
                logs.lock()
                    .unwrap()
                    .entry(name.clone())
                    .or_default()
                    .push(p.log.clone());
                let status = json!({"status": {"phase": "Running", "podIP": pod_ip(ordinal),
                    "podIPs": [{"ip": pod_ip(ordinal)}]}});
                let _ = sh(Command::new(kubectl_bin())
                    .args([
                        "patch",
                        "pod",
                        &name,
                        "-n",
                        ns,
                        "--subresource=status",
                        "--type=merge",
                    ])
                    .arg("-p")
                    .arg(status.to_string())
                    .env("KUBECONFIG", kc));
                running.insert(name.clone(), p);
            }
        }
        // Pods deleted while we were not looking.
        for name in running.keys().cloned().collect::<Vec<_>>() {
            if !present.contains(&name) {
                let mut p = running.remove(&name).unwrap();
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
    for (_, mut p) in running {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    for (_, n) in netns {
        ip(&["netns", "del", &n]);
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&n));
    }
}

/// A pod's network namespace: a veth on the bridge with the pod's IP, and a hosts file with
/// the headless Service's pod names.
fn make_netns(pod: &str, ordinal: usize, ns: &str) -> String {
    let n = format!("tfk-{ns}-{ordinal}");
    let (host_end, pod_end) = (
        format!("tfkh{ordinal}{}", &ns[..1]),
        format!("tfkp{ordinal}{}", &ns[..1]),
    );
    ip(&["netns", "del", &n]);
    assert!(ip(&["netns", "add", &n]), "netns {n}");
    ip(&["link", "del", &host_end]);
    assert!(ip(&[
        "link", "add", &host_end, "type", "veth", "peer", "name", &pod_end
    ]));
    assert!(ip(&["link", "set", &host_end, "master", BRIDGE]));
    assert!(ip(&["link", "set", &host_end, "up"]));
    assert!(ip(&["link", "set", &pod_end, "netns", &n]));
    assert!(ip(&[
        "-n",
        &n,
        "addr",
        "add",
        &format!("{}/24", pod_ip(ordinal)),
        "dev",
        &pod_end
    ]));
    assert!(ip(&["-n", &n, "link", "set", &pod_end, "up"]));
    assert!(ip(&["-n", &n, "link", "set", "lo", "up"]));
    let dir = Path::new("/etc/netns").join(&n);
    std::fs::create_dir_all(&dir).unwrap();
    let mut hosts = format!("127.0.0.1 localhost\n{} {pod}\n", pod_ip(ordinal));
    for i in 0..8 {
        hosts.push_str(&format!("{} tickflow-{i}.tickflow.{ns}.svc\n", pod_ip(i)));
    }
    std::fs::write(dir.join("hosts"), hosts).unwrap();
    n
}

/// A kubeconfig holding a token of service account `sa` (what a pod's process authenticates as).
fn service_account_kubeconfig(kc: &Path, ns: &str, sa: &str, path: &Path) {
    let token = sh(Command::new(kubectl_bin())
        .args(["create", "token", sa, "-n", ns, "--duration=1h"])
        .env("KUBECONFIG", kc));
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let admin = std::fs::read_to_string(kc).unwrap();
    let ca = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority: "))
        .unwrap()
        .to_string();
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{HOST_IP}:{API_PORT}\n    certificate-authority: {ca}\nusers:\n- name: pod\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: pod, namespace: {ns}}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
}

/// Runs the pod's container as its process: its args, its environment (values, the downward
/// API, the ConfigMap), its ConfigMap volume, and its service account's token.
fn start_container(
    kc: &Path,
    ns: &str,
    pod: &Value,
    netns: &str,
    root: &Path,
    ordinal: usize,
) -> Option<PodProcess> {
    let name = pod["metadata"]["name"].as_str()?;
    let c = &pod["spec"]["containers"][0];
    let mut env: Vec<(String, String)> = vec![("HOSTNAME".into(), name.into())];
    for from in c["envFrom"].as_array().cloned().unwrap_or_default() {
        let cm = from["configMapRef"]["name"].as_str()?;
        let data = kubectl_json(kc, &["get", "configmap", cm, "-n", ns])?;
        for (k, v) in data["data"].as_object()? {
            env.push((k.clone(), v.as_str()?.to_string()));
        }
    }
    for e in c["env"].as_array().cloned().unwrap_or_default() {
        let k = e["name"].as_str()?.to_string();
        let v = if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else {
            match e["valueFrom"]["fieldRef"]["fieldPath"].as_str()? {
                "metadata.namespace" => ns.to_string(),
                "metadata.labels['apps.kubernetes.io/pod-index']" => {
                    pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"]
                        .as_str()?
                        .to_string()
                }
                other => panic!("unsupported fieldRef {other}"),
            }
        };
        env.push((k, v));
    }
    // The pod's volumes: the spec ConfigMap at its mount path.
    let dir = root.join(format!("{name}-volumes"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for m in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
        let vol = pod["spec"]["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == m["name"])?
            .clone();
        if let Some(cm) = vol["configMap"]["name"].as_str() {
            let data = kubectl_json(kc, &["get", "configmap", cm, "-n", ns])?;
            let target = dir.join(m["name"].as_str()?);
            std::fs::create_dir_all(&target).unwrap();
            for (file, text) in data["data"].as_object()? {
                std::fs::write(target.join(file), text.as_str()?).unwrap();
            }
            mounts.push((m["mountPath"].as_str()?.to_string(), target));
        }
    }
    // In-cluster credentials: the pod's service account token, as a kubeconfig.
    let sa = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    let pod_kc = dir.join("kubeconfig");
    service_account_kubeconfig(kc, ns, sa, &pod_kc);
    let args: Vec<String> = c["args"]
        .as_array()?
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap().to_string();
            mounts
                .iter()
                .find(|(path, _)| a.starts_with(path.as_str()))
                .map(|(path, local)| a.replacen(path.as_str(), &local.display().to_string(), 1))
                .unwrap_or(a)
        })
        .collect();
    let log = root.join(format!("{name}.{}.log", rand::random::<u32>()));
    let child = Command::new("ip")
        .args(["netns", "exec", netns, bin()])
        .args(&args)
        // The test runs the topic to its end rather than forever.
        .arg("--bounded")
        .envs(env)
        .env("KUBECONFIG", &pod_kc)
        .env("RUST_LOG", "info,tickflow::cluster::kubernetes=debug")
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .ok()?;
    let _ = ordinal;
    Some(PodProcess {
        child,
        log,
        terminated: false,
    })
}

/// The base manifests for namespace `ns`: the test's broker, shared output folders under `out`,
/// a fake node name (no scheduler), 1 worker per pod.
fn manifests(world: &World, ns: &str, topic: &str, out: &Path) -> Vec<Value> {
    let mut objs = render(world, &repo().join("deploy/k8s/base"));
    // The ingest job needs a Finnhub token; the test makes its namespaces itself.
    objs.retain(|o| o["kind"] != "Deployment" && o["kind"] != "Namespace");
    for o in &mut objs {
        o["metadata"]["namespace"] = json!(ns);
        if let Some(subjects) = o["subjects"].as_array_mut() {
            for s in subjects {
                s["namespace"] = json!(ns);
            }
        }
        match o["kind"].as_str().unwrap() {
            "ConfigMap"
                if o["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("tickflow-env") =>
            {
                o["data"] = json!({
                    "KAFKA_BROKERS": world.brokers,
                    "TRADES_TOPIC": topic,
                    "OUT_URL": out.display().to_string(),
                    "CHECKPOINT_URL": out.join("checkpoints").display().to_string(),
                    "CHECKPOINT_INTERVAL": "300ms",
                });
            }
            "StatefulSet" => {
                let spec = &mut o["spec"]["template"]["spec"];
                spec["nodeName"] = json!("fake-node");
                spec["terminationGracePeriodSeconds"] = json!(30);
                let args = &mut spec["containers"][0]["args"];
                let n = args.as_array().unwrap().len();
                args[n - 1] = json!("1"); // --workers 1
            }
            _ => {}
        }
    }
    objs
}

fn wait_until(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    logs: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Permissive definitions of the custom resources the GKE overlay uses (Strimzi's Kafka, Managed
/// Prometheus' PodMonitoring): their operators are not here, so their fields are not checked, but
/// their group, version, kind and metadata are.
fn custom_resource_definitions(world: &World) {
    for (group, kind, plural) in [
        ("kafka.strimzi.io", "Kafka", "kafkas"),
        ("kafka.strimzi.io", "KafkaNodePool", "kafkanodepools"),
        ("kafka.strimzi.io", "KafkaTopic", "kafkatopics"),
        (
            "monitoring.googleapis.com",
            "PodMonitoring",
            "podmonitorings",
        ),
    ] {
        let version = if group == "kafka.strimzi.io" {
            "v1beta2"
        } else {
            "v1"
        };
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase()},
                "versions": [{"name": version, "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}}}]}
        });
        let out = world.apply_json(&crd, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    world.ok(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=60s",
    ]);
}

/// Renders an overlay, creates its namespace for real (with its Pod Security labels), then has
/// the API server check every object (`--dry-run=server --validate=strict`); returns the objects
/// as the server would store them, and its warnings.
fn server_validate(world: &World, overlay: &str) -> (Vec<Value>, String) {
    let objs = render(world, &repo().join(overlay));
    for ns in objs.iter().filter(|o| o["kind"] == "Namespace") {
        let out = world.apply_json(ns, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objs});
    let out = world.apply_json(
        &list,
        &["--dry-run=server", "--validate=strict", "-o", "json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{overlay}: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["items"].as_array().cloned().unwrap_or_default(), stderr)
}

/// What every overlay must hold, checked on what the API server accepted.
fn check_structure(overlay: &str, objs: &[Value]) {
    let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
    for want in [
        "StatefulSet",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Deployment",
    ] {
        assert!(kinds.contains(&want), "{overlay}: no {want} in {kinds:?}");
    }
    for o in objs {
        let kind = o["kind"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap_or("");
        assert_ne!(
            kind, "Secret",
            "{overlay}: secrets are not part of the manifests"
        );
        if kind == "StatefulSet" {
            assert_eq!(o["spec"]["podManagementPolicy"], "Parallel", "{overlay}");
            let grace = o["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap();
            assert!(
                grace >= 10 + 20,
                "{overlay}: grace {grace}s is less than the checkpoint interval + drain"
            );
        }
        if kind == "Service" && name == "tickflow" {
            assert_eq!(o["spec"]["clusterIP"], "None", "{overlay}: headless");
            assert_eq!(o["spec"]["publishNotReadyAddresses"], true, "{overlay}");
        }
        if kind == "Role" {
            for rule in o["rules"].as_array().unwrap() {
                assert_eq!(
                    rule["resources"],
                    json!(["statefulsets"]),
                    "{overlay}: {rule}"
                );
                assert_eq!(
                    rule["resourceNames"],
                    json!(["tickflow"]),
                    "{overlay}: {rule}"
                );
                for verb in rule["verbs"].as_array().unwrap() {
                    assert!(
                        ["get", "list", "watch"].contains(&verb.as_str().unwrap()),
                        "{overlay}: {rule}"
                    );
                }
            }
        }
        let Some(pod) = o["spec"]["template"]["spec"].as_object() else {
            continue;
        };
        // The Pod Security "restricted" profile, container by container.
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{overlay} {name}");
        assert_eq!(
            psc["seccompProfile"]["type"], "RuntimeDefault",
            "{overlay} {name}"
        );
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{overlay} {name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{overlay} {name}");
            assert_eq!(
                sc["capabilities"]["drop"],
                json!(["ALL"]),
                "{overlay} {name}"
            );
            assert_eq!(
                c["resources"]["requests"], c["resources"]["limits"],
                "{overlay} {name}: requests = limits"
            );
            // tickflow's probes on the metrics port only: never the cluster port.
            if c["name"] == "tickflow" {
                assert!(
                    !c["readinessProbe"].is_null(),
                    "{overlay} {name}: a readiness probe"
                );
            }
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                if c[probe].is_null() || c["name"] != "tickflow" {
                    continue;
                }
                assert!(c[probe]["tcpSocket"].is_null(), "{overlay} {name} {probe}");
                assert_eq!(
                    c[probe]["httpGet"]["port"], "metrics",
                    "{overlay} {name} {probe}"
                );
            }
            // Secrets come from Secrets, never literal values.
            for e in c["env"].as_array().cloned().unwrap_or_default() {
                let n = e["name"].as_str().unwrap();
                if n.contains("TOKEN") || n.contains("KEY") || n.contains("PASSWORD") {
                    assert!(
                        e["value"].is_null() && !e["valueFrom"]["secretKeyRef"].is_null(),
                        "{overlay} {name}: {n}"
                    );
                }
            }
        }
    }
}

/// Namespace `ns` with the base manifests applied and the kubelet running its pods, once the
/// cluster has taken its first checkpoint; the kubelet and the output folder.
fn deploy(world: &World, ns: &str, topic: &str, root: &Path) -> (Kubelet, PathBuf) {
    world.ok(&["create", "namespace", ns]);
    let output = root.join(format!("{ns}-out"));
    let list =
        json!({"apiVersion": "v1", "kind": "List", "items": manifests(world, ns, topic, &output)});
    let apply = world.apply_json(&list, &[]);
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    let kubelet = Kubelet::start(world, ns, root);
    let chk = output.join("checkpoints");
    wait_until(
        Duration::from_secs(120),
        "a first checkpoint",
        || crate::kafka::latest_checkpoint(&chk) >= 1,
        &|| kubelet.all_logs(),
    );
    (kubelet, output)
}

#[test]
fn kubectl_scale_and_delete_pod_on_a_real_control_plane_give_exactly_the_uninterrupted_output() {
    use crate::kafka;
    let Some(world) = World::start() else { return };

    // The manifests, checked by the API server itself and then structurally.
    custom_resource_definitions(&world);
    for overlay in ["deploy/k8s/base", "deploy/k8s/gke"] {
        let (objs, warnings) = server_validate(&world, overlay);
        assert!(!warnings.contains("Warning"), "{overlay}: {warnings}");
        check_structure(overlay, &objs);
    }
    // A typo a client-side check lets through is refused by the server.
    let mut broken = render(&world, &repo().join("deploy/k8s/base"));
    for o in &mut broken {
        if o["kind"] == "StatefulSet" {
            o["spec"]["replicas"] = json!("two");
        }
    }
    let out = world.apply_json(
        &json!({"apiVersion": "v1", "kind": "List", "items": broken}),
        &["--dry-run=server", "--validate=strict"],
    );
    assert!(!out.status.success(), "replicas: two was accepted");

    // A service account without the Role: a clear error at start, naming what to grant.
    world.ok(&["create", "namespace", "rbac"]);
    world.ok(&["create", "serviceaccount", "nobody", "-n", "rbac"]);
    let kc = world.dir.path().join("nobody.kubeconfig");
    service_account_kubeconfig(&world.kubeconfig, "rbac", "nobody", &kc);
    let out = sh(Command::new(bin())
        .args(["run", "deploy/k8s/base/pipeline.yaml", "--kubernetes"])
        .current_dir(repo())
        .env("KUBECONFIG", &kc)
        .env("HOSTNAME", "tickflow-0")
        .env("POD_NAMESPACE", "rbac"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "the service account may not read StatefulSet `tickflow` in namespace `rbac`"
        ) && stderr.contains("grant get, list and watch"),
        "{stderr}"
    );
    let topic = kafka::create_topic(&world.brokers, 4);
    kafka::produce_trades(&world.brokers, &topic, 1_000_000);
    let root = world.dir.path().join("pods");
    std::fs::create_dir_all(&root).unwrap();
    let (reference, _) = kafka::reference_run(&world.brokers, &topic, &root);
    assert!(reference.len() > 1000);

    let (kubelet, output) = deploy(&world, "scale", &topic, &root);
    let logs = || kubelet.all_logs();
    let chk = output.join("checkpoints");

    // 2 → 3 while the stream runs.
    world.ok(&[
        "scale",
        "statefulset",
        "tickflow",
        "-n",
        "scale",
        "--replicas",
        "3",
    ]);
    wait_until(
        Duration::from_secs(120),
        "the rescale to 3",
        || {
            kubelet
                .log("tickflow-0")
                .contains("rescaled: the new cluster is formed")
        },
        &logs,
    );
    assert!(
        kubelet.log("tickflow-0").contains("processes=3"),
        "{}",
        kubelet.log("tickflow-0")
    );
    let at = kafka::latest_checkpoint(&chk);
    wait_until(
        Duration::from_secs(60),
        "a checkpoint of 3 pods",
        || kafka::latest_checkpoint(&chk) > at,
        &logs,
    );
    // 3 → 1: the departing pods leave after the final checkpoint.
    world.ok(&[
        "scale",
        "statefulset",
        "tickflow",
        "-n",
        "scale",
        "--replicas",
        "1",
    ]);
    wait_until(
        Duration::from_secs(240),
        "the end of the topic",
        || {
            kubelet
                .log("tickflow-0")
                .lines()
                .any(|l| l.starts_with("done: "))
        },
        &logs,
    );
    let log0 = kubelet.log("tickflow-0");
    assert_eq!(
        log0.matches("rescaled: the new cluster is formed").count(),
        2,
        "{log0}"
    );
    assert!(
        !log0.contains("--- restart ---"),
        "pod 0 was never restarted: {log0}"
    );
    assert_same_bars(&output, &reference, &logs);
    drop(kubelet);

    // `kubectl delete pod` of a member mid-run: the cluster stops with a final checkpoint, the
    // controller brings the pod back, and the run resumes: the same output.
    let (kubelet, output) = deploy(&world, "restart", &topic, &root);
    let logs = || kubelet.all_logs();
    world.ok(&[
        "delete",
        "pod",
        "tickflow-1",
        "-n",
        "restart",
        "--wait=false",
    ]);
    wait_until(
        Duration::from_secs(240),
        "the end of the topic after the restart",
        || {
            ["tickflow-0", "tickflow-1"]
                .iter()
                .all(|p| kubelet.log(p).lines().any(|l| l.starts_with("done: ")))
        },
        &logs,
    );
    assert!(
        kubelet.log("tickflow-1").contains("--- restart ---")
            || kubelet.log("tickflow-0").contains("--- restart ---"),
        "{}",
        logs()
    );
    assert_same_bars(&output, &reference, &logs);
}

/// The image's runtime conditions without a container engine: the binary as a non-root user
/// (distroless' `nonroot`, 65532), the root filesystem read-only, only an emptyDir-like `/tmp`
/// writable, no HOME. A root-only assumption or a write outside `/tmp` fails here, not on GKE.
#[test]
fn runs_as_non_root_with_a_read_only_root_and_only_tmp_writable() {
    let probe = sh(Command::new("unshare").args(["--mount", "true"]));
    if !probe.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "unshare --mount needs root"
        );
        eprintln!("skipping: unshare --mount needs root");
        return;
    }
    // The binary where the non-root user can run it (the build folder is root's).
    let dir = Path::new("/var/tmp").join(format!("tickflow-ro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("tickflow");
    std::fs::copy(bin(), &exe).unwrap();
    use std::os::unix::fs::PermissionsExt;
    // The spec and its input beside it: the checkout may itself be under /tmp, which the
    // tmpfs hides.
    std::fs::copy(repo().join("specs/replay.yaml"), dir.join("replay.yaml")).unwrap();
    std::fs::copy(
        repo().join("specs/sample/trades.jsonl"),
        dir.join("trades.jsonl"),
    )
    .unwrap();
    for p in [&dir, &exe] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in ["replay.yaml", "trades.jsonl"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let script = format!(
        r#"set -e
mount --make-rprivate /
mount -o remount,bind,ro /
mount -t tmpfs -o size=256m,mode=1777 tmpfs /tmp
cd {dir}
touch /probe 2>/dev/null && {{ echo "root is writable"; exit 9; }}
run() {{ setpriv --reuid=65532 --regid=65532 --clear-groups --inh-caps=-all env -i PATH=/usr/bin:/bin "$@"; }}
run TRADES_FILE={dir}/trades.jsonl OUT_URL=/tmp/out {exe} run replay.yaml --workers 2
echo "bars: $(find /tmp/out/bars -name '*.parquet' | wc -l)"
echo "owner: $(stat -c %u /tmp/out/bars)"
set +e
run TRADES_FILE={dir}/trades.jsonl OUT_URL=/var/lib/tickflow-out {exe} run replay.yaml
echo "outside tmp: exit $?"
"#,
        dir = dir.display(),
        exe = exe.display()
    );
    let out = sh(Command::new("unshare").args(["--mount", "--", "sh", "-c", &script]));
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let bars: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("bars: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(bars >= 1, "no bars written under /tmp: {stdout}\n{stderr}");
    assert!(stdout.contains("owner: 65532"), "{stdout}");
    // Anywhere else is refused at start, with the folder named, not a panic.
    assert!(stdout.contains("outside tmp: exit 1"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("/var/lib/tickflow-out") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// The bars under `output` are exactly `reference` (the uninterrupted run): no loss, no
/// duplicate; `logs` explains a difference.
fn assert_same_bars(output: &Path, reference: &[String], logs: &dyn Fn() -> String) {
    let bars = crate::kafka::sorted_bars(&output.join("bars_1m"));
    assert_eq!(
        bars.len(),
        reference.len(),
        "duplicates or losses:\n{}",
        logs()
    );
    assert!(bars == reference, "bars differ from the uninterrupted run");
}
