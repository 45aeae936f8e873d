//! Cluster mode: one timely computation across processes (pods).
//!
//! Each process runs `threads` workers; process `i` of `n` hosts global workers
//! `i*threads .. (i+1)*threads`. We make the sockets ourselves ([`handshake`]: magic, generation,
//! process count, index) and hand them to timely, because timely has no handshake of its own and
//! panics on a stray or stale connection. State that a single process shares through memory
//! (replay block carries, Kafka watermark alignment, stop requests) travels between processes
//! on a small control dataflow ([`crate::dataflow::control`]). A lost or frozen peer ends the process with a
//! message naming it ([`watchdog`]): a half-dead cluster never lingers.

pub mod fingerprint;
pub mod handshake;
pub mod kubernetes;
pub mod membership;
pub mod outbox;
pub mod watchdog;

use std::time::Duration;

pub use membership::Membership;
pub use outbox::{Control, ControlMsg};

/// Where this process stands in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This process's index into `peers`.
    pub process: usize,
    /// Every process's cluster address (`HOST:PORT`), in process order.
    pub peers: Vec<String>,
    /// Worker threads per process.
    pub threads: usize,
    /// Processes of another generation (another peer list) are refused at the handshake.
    pub generation: u64,
    /// How long to wait for every peer to join.
    pub join_timeout: Duration,
    /// A peer that sends nothing (not even a heartbeat) for this long is taken as lost.
    pub peer_timeout: Duration,
    /// This process's pipeline and flags; a peer that differs is refused at the handshake.
    pub pipeline: fingerprint::Fingerprint,
}

/// How often each process sends a heartbeat to the others.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

impl ClusterConfig {
    /// Checks a `--process`/`--peers` pair; the message names what is wrong.
    pub fn new(process: usize, peers: Vec<String>, threads: usize) -> Result<Self, String> {
        if peers.is_empty() {
            return Err("--peers: expected at least one HOST:PORT".into());
        }
        for (i, p) in peers.iter().enumerate() {
            split_host_port(p).map_err(|e| format!("--peers entry {i} `{p}`: {e}"))?;
            if let Some(j) = peers[..i].iter().position(|q| q == p) {
                return Err(format!(
                    "--peers entries {j} and {i} are both `{p}`: every process needs an address of its own"
                ));
            }
        }
        if process >= peers.len() {
            return Err(format!(
                "--process {process} is out of range: --peers lists {} process(es), so the index is 0 to {}",
                peers.len(),
                peers.len() - 1
            ));
        }
        let generation = generation_of(&peers);
        Ok(ClusterConfig {
            process,
            peers,
            threads,
            generation,
            join_timeout: Duration::from_secs(300),
            peer_timeout: Duration::from_secs(15),
            pipeline: fingerprint::Fingerprint::default(),
        })
    }

    pub fn processes(&self) -> usize {
        self.peers.len()
    }

    /// Worker threads of the whole cluster.
    pub fn total_workers(&self) -> usize {
        self.threads * self.peers.len()
    }

    /// What this process listens on: its own entry's port on every interface (a pod's address is
    /// not loopback).
    pub fn bind_address(&self) -> String {
        let (host, port) =
            split_host_port(&self.peers[self.process]).expect("checked in ClusterConfig::new");
        if host.contains(':') {
            format!("[::]:{port}")
        } else {
            format!("0.0.0.0:{port}")
        }
    }
}

/// Splits `HOST:PORT` (or `[V6]:PORT`).
pub fn split_host_port(s: &str) -> Result<(&str, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT".to_string())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("the host is empty (expected HOST:PORT)".into());
    }
    if host.contains(':') && s.starts_with(|c| c != '[') {
        return Err("write an IPv6 address in brackets: [ADDR]:PORT".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
    {
        return Err("the host must be a name or an IP address".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host, p)),
        _ => Err(format!("the port `{port}` is not a number from 1 to 65535")),
    }
}

/// A peer list's fingerprint: processes started with different lists never form one cluster.
pub fn generation_of(peers: &[String]) -> u64 {
    // FNV-1a: stable across builds and platforms (unlike std's hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in peers.join("\n").bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Parses a comma-separated `--peers` list.
pub fn parse_peers(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_lists_are_checked_with_messages_that_name_the_entry() {
        let peers = |s: &str| parse_peers(s);
        assert!(ClusterConfig::new(1, peers("a:1,b:2"), 1).is_ok());
        assert!(ClusterConfig::new(0, peers("[::1]:7000,10.0.0.2:7000"), 1).is_ok());
        let err = |p, s| ClusterConfig::new(p, peers(s), 1).unwrap_err();
        assert_eq!(
            err(2, "a:1,b:2"),
            "--process 2 is out of range: --peers lists 2 process(es), so the index is 0 to 1"
        );
        assert_eq!(
            err(0, "a:1,a:1"),
            "--peers entries 0 and 1 are both `a:1`: every process needs an address of its own"
        );
        assert_eq!(err(0, "a:1,b"), "--peers entry 1 `b`: expected HOST:PORT");
        assert_eq!(
            err(0, "a:x"),
            "--peers entry 0 `a:x`: the port `x` is not a number from 1 to 65535"
        );
        assert_eq!(
            err(0, "::1:7"),
            "--peers entry 0 `::1:7`: write an IPv6 address in brackets: [ADDR]:PORT"
        );
        assert_eq!(err(0, ""), "--peers: expected at least one HOST:PORT");
    }

    #[test]
    fn the_generation_depends_on_the_whole_list_and_binds_every_interface() {
        let a = generation_of(&parse_peers("a:1,b:2"));
        assert_eq!(a, generation_of(&parse_peers("a:1, b:2")));
        assert_ne!(a, generation_of(&parse_peers("a:1,b:2,c:3")));
        assert_ne!(a, generation_of(&parse_peers("b:2,a:1")));
        let c = ClusterConfig::new(1, parse_peers("a:1,[::1]:9"), 2).unwrap();
        assert_eq!(c.bind_address(), "[::]:9");
        assert_eq!(c.total_workers(), 4);
    }
}
