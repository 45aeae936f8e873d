//! A lost peer ends the process at once, with a message naming it.
//!
//! Timely's answer to a broken connection is a panic in its network thread, then "MergeQueue
//! poisoned" panics in every worker, and a process that never finishes joining its threads. Its
//! authors intend "everything panics"; we turn that into one clear line and a non-zero exit, so
//! Kubernetes (or whoever started us) restarts the process and it resumes from the last
//! checkpoint. A frozen peer (SIGSTOP, a link that went down without a reset) sends nothing at
//! all: every process sends a heartbeat each second, and one that has not been heard from for
//! `peer_timeout` is taken as lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ClusterConfig;
use super::handshake::PeerActivity;
use crate::base::time::now_ms;

/// The exit code of a process whose cluster broke (a peer lost or frozen).
pub const EXIT_PEER_LOST: i32 = 3;

/// Replaces the panic hook for the rest of the process: any panic ends the process (a worker
/// that panicked leaves the cluster broken), a panic of a network thread names its peer.
pub fn install_panic_hook(cfg: &ClusterConfig) {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some((cfg.process, cfg.peers.clone()));
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // NB: both network threads of a lost peer panic at once, and each reads the peer
            // list: a failed `try_lock` is the other one reading, so try again (never block: a
            // panic while the list is being replaced must still end the process).
            let mut current = None;
            for _ in 0..200 {
                match CURRENT.try_lock() {
                    Ok(c) => {
                        current = c.clone();
                        break;
                    }
                    Err(std::sync::TryLockError::Poisoned(c)) => {
                        current = c.into_inner().clone();
                        break;
                    }
                    Err(std::sync::TryLockError::WouldBlock) => {
                        std::thread::sleep(std::time::Duration::from_millis(1))
                    }
                }
            }
            let (me, peers) = current.unwrap_or_default();
            on_panic(info, me, &peers, &default)
        }));
    });
}

/// The cluster the panic hook names peers from (it changes with a rescale).
static CURRENT: std::sync::Mutex<Option<(usize, Vec<String>)>> = std::sync::Mutex::new(None);
static HOOK: std::sync::Once = std::sync::Once::new();

type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

fn on_panic(info: &std::panic::PanicHookInfo<'_>, me: usize, peers: &[String], default: &Hook) {
    {
        let thread = std::thread::current().name().unwrap_or("").to_string();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let peer = thread
            .strip_prefix("timely:recv-")
            .or_else(|| thread.strip_prefix("timely:send-"))
            .and_then(|p| p.parse::<usize>().ok());
        if let Some(p) = peer {
            let cause = msg
                .strip_prefix("timely communication error: ")
                .unwrap_or(&msg);
            eprintln!(
                "error: process {me} lost process {p} ({}): {cause}; the cluster stops (restart it to resume from the last checkpoint)",
                peers.get(p).map(String::as_str).unwrap_or("?")
            );
            std::process::exit(EXIT_PEER_LOST);
        }
        if msg.contains("MergeQueue poisoned") || msg.contains("timely communication error") {
            eprintln!(
                "error: process {me}: the cluster's connections broke ({msg}); the cluster stops"
            );
            std::process::exit(EXIT_PEER_LOST);
        }
        default(info);
        eprintln!("error: process {me}: a thread panicked; the cluster stops");
        std::process::exit(101);
    }
}

/// Watches every peer's last bytes; exits when one has been silent for `cfg.peer_timeout` since
/// its first heartbeat. Before that (it is still building its dataflow, connecting to its
/// sources, reading back its state) it has `cfg.join_timeout` from the cluster's formation.
pub fn spawn(cfg: &ClusterConfig, activity: Arc<PeerActivity>) {
    let (peers, me, limit) = (cfg.peers.clone(), cfg.process, cfg.peer_timeout);
    let startup = cfg.join_timeout.as_millis() as i64;
    let _ = std::thread::Builder::new()
        .name("tickflow-watchdog".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(250));
                if activity.disarmed.load(Ordering::Acquire) {
                    return;
                }
                let now = now_ms();
                for (p, last) in activity.last_read.iter().enumerate() {
                    if p == me {
                        continue;
                    }
                    if !activity.heard[p].load(Ordering::Acquire) {
                        if now - activity.formed_ms > startup {
                            eprintln!(
                                "error: process {me}: process {p} ({}) joined but has not started within {:.0} s (--join-timeout); the cluster stops",
                                peers[p],
                                startup as f64 / 1000.0
                            );
                            std::process::exit(EXIT_PEER_LOST);
                        }
                        continue;
                    }
                    let silent = now - last.load(Ordering::Relaxed);
                    if silent > limit.as_millis() as i64 {
                        eprintln!(
                            "error: process {me}: process {p} ({}) has sent nothing for {:.1} s (heartbeats come every second): it is frozen or the network to it is down; the cluster stops",
                            peers[p],
                            silent as f64 / 1000.0
                        );
                        std::process::exit(EXIT_PEER_LOST);
                    }
                }
            }
        });
}
