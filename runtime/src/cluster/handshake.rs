//! Forming a cluster: our own sockets, with a handshake, handed to timely.
//!
//! Process `i` connects to every process before it and accepts every process after it (the order
//! timely expects). Each connection starts with a [`Hello`] both ways: magic, protocol version,
//! generation, process count and both indexes. Anything else that connects (a port scanner, a
//! TCP probe, a process of another generation) is closed and logged; it never reaches timely,
//! which would panic on it.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::ClusterConfig;
use super::fingerprint::Fingerprint;
use crate::base::time::now_ms;

const MAGIC: [u8; 8] = *b"TICKFLOW";
/// 2: the hello carries the pipeline's [`Fingerprint`].
const VERSION: u32 = 2;
const HELLO_LEN: usize = 32 + Fingerprint::LEN;
/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes under way at once; a flood of connections beyond that is closed unread.
const MAX_HELLOS: usize = 64;

/// The first bytes on every cluster connection, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub generation: u64,
    pub processes: u32,
    /// The sender's process index.
    pub from: u32,
    /// The receiver's process index, as the sender understands it.
    pub to: u32,
    /// The sender's pipeline and flags.
    pub pipeline: Fingerprint,
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.generation.to_le_bytes());
        b[20..24].copy_from_slice(&self.processes.to_le_bytes());
        b[24..28].copy_from_slice(&self.from.to_le_bytes());
        b[28..32].copy_from_slice(&self.to.to_le_bytes());
        self.pipeline.encode(&mut b[32..]);
        b
    }

    /// Decodes a hello; the error says, in words, what the other side is not.
    pub fn decode(b: &[u8; HELLO_LEN]) -> Result<Hello, String> {
        if b[..8] != MAGIC {
            return Err("it is not a tickflow cluster peer (no handshake)".into());
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(format!(
                "it speaks cluster protocol {version}, this process {VERSION} (mixed tickflow versions)"
            ));
        }
        Ok(Hello {
            generation: u64::from_le_bytes(b[12..20].try_into().expect("8 bytes")),
            processes: u32_at(20),
            from: u32_at(24),
            to: u32_at(28),
            pipeline: Fingerprint::decode(&b[32..]),
        })
    }

    /// Why the sender cannot compute with this process although it is a member of its cluster:
    /// it runs another pipeline, or other flags.
    fn mismatch(&self, cfg: &ClusterConfig) -> Option<String> {
        let diffs = cfg.pipeline.differences(&self.pipeline);
        (!diffs.is_empty()).then(|| {
            format!(
                "process {} ({}) runs a different pipeline: {}. Every process of a cluster must run the same spec, plugins and flags (is an update reaching only some of them?)",
                self.from,
                cfg.peers.get(self.from as usize).map(String::as_str).unwrap_or("?"),
                diffs.join("; ")
            )
        })
    }

    /// Whether `self` is what process `me` expects from process `from` in `cfg`'s cluster.
    fn check(&self, cfg: &ClusterConfig, me: usize) -> Result<(), String> {
        if self.generation != cfg.generation || self.processes as usize != cfg.processes() {
            return Err(format!(
                "it belongs to another cluster generation ({} processes, generation {:016x}; this one: {} processes, generation {:016x}): every process must be started with the same peer list",
                self.processes,
                self.generation,
                cfg.processes(),
                cfg.generation
            ));
        }
        if self.to as usize != me {
            return Err(format!(
                "it took this address for process {}, but this is process {me}",
                self.to
            ));
        }
        Ok(())
    }
}

/// Fills `buf` from `stream` by `deadline`: one deadline for the whole read, so that a peer
/// trickling a byte at a time cannot hold a connection (and a handshake slot) past it.
fn read_exact_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads a hello, all of it within `timeout`.
fn read_hello(stream: &mut TcpStream, timeout: Duration) -> Result<Hello, String> {
    let deadline = Instant::now() + timeout;
    let why = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            "it sent no handshake in time".to_string()
        }
        io::ErrorKind::UnexpectedEof => "it closed the connection during the handshake".into(),
        _ => format!("reading its handshake: {e}"),
    };
    let mut b = [0u8; HELLO_LEN];
    // The magic first: a stranger (an HTTP client, say) is told apart without waiting for more.
    read_exact_by(stream, &mut b[..MAGIC.len()], deadline).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => SILENT.to_string(),
        _ => why(e),
    })?;
    if b[..MAGIC.len()] != MAGIC {
        return Hello::decode(&b);
    }
    // Then the version: another protocol's hello may be shorter than ours.
    read_exact_by(stream, &mut b[MAGIC.len()..MAGIC.len() + 4], deadline).map_err(why)?;
    let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Hello::decode(&b);
    }
    read_exact_by(stream, &mut b[MAGIC.len() + 4..], deadline).map_err(why)?;
    Hello::decode(&b)
}

/// What a connection that closes without sending a byte is (a TCP health probe, a port check,
/// a scale-up waiting for this process to listen): not worth a warning.
const SILENT: &str = "it connected and closed without a word";

/// A connection to one peer, counting when bytes last arrived (for the stall watchdog).
pub struct PeerStream {
    inner: TcpStream,
    last_read: Arc<AtomicI64>,
}

impl Read for PeerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.last_read.store(now_ms(), Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl Write for PeerStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl timely::communication::allocator::zero_copy::stream::Stream for PeerStream {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(PeerStream {
            inner: self.inner.try_clone()?,
            last_read: Arc::clone(&self.last_read),
        })
    }
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }
}

/// When bytes last arrived from each process (ms; this process's own entry is unused).
pub struct PeerActivity {
    pub last_read: Vec<Arc<AtomicI64>>,
    /// The computation is over: peers going quiet (they are finishing) is no longer a loss.
    pub disarmed: AtomicBool,
    /// Per process: a heartbeat arrived (it has built its dataflow, restored its state and is
    /// running). Until then only the join timeout bounds its silence.
    pub heard: Vec<AtomicBool>,
    /// When the cluster formed (ms).
    pub formed_ms: i64,
}

/// What forming the cluster ends with when `stop` is set first (Ctrl-C, SIGTERM).
#[derive(Debug)]
pub struct StoppedForming;

impl std::fmt::Display for StoppedForming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped before the cluster formed: nothing ran")
    }
}

impl std::error::Error for StoppedForming {}

/// Forming was given up because the list of processes changed meanwhile (a corrected peers
/// file, a StatefulSet scaled while its pods start): form again with this list.
#[derive(Debug)]
pub struct MembershipChanged(pub Vec<String>);

impl std::fmt::Display for MembershipChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the cluster's membership changed while it formed ({} processes now)",
            self.0.len()
        )
    }
}

impl std::error::Error for MembershipChanged {}

/// What ends the wait for peers early: a stop, or a changed membership (read every
/// [`POLL`](super::membership::POLL)).
pub struct Interrupt<'a> {
    stop: &'a AtomicBool,
    membership: Option<&'a super::membership::Membership>,
    last_read: std::cell::Cell<Instant>,
}

impl<'a> Interrupt<'a> {
    pub fn new(
        stop: &'a AtomicBool,
        membership: Option<&'a super::membership::Membership>,
    ) -> Self {
        Interrupt {
            stop,
            membership,
            last_read: std::cell::Cell::new(Instant::now()),
        }
    }

    fn check(&self, peers: &[String]) -> Result<()> {
        if self.stop.load(Ordering::Acquire) {
            return Err(StoppedForming.into());
        }
        if let Some(m) = self.membership.filter(|m| m.watched())
            && self.last_read.get().elapsed() >= super::membership::POLL
        {
            self.last_read.set(Instant::now());
            // NB: a list that cannot be read now is not a change (the running cluster's watch
            // says so in words).
            if let Ok(now) = m.current()
                && !now.is_empty()
                && now != peers
            {
                return Err(MembershipChanged(now).into());
            }
        }
        Ok(())
    }
}

/// Connects this process to every other one of `cfg`, within `cfg.join_timeout`, or until
/// `interrupt` says to stop or to form again.
pub fn form(
    cfg: &ClusterConfig,
    interrupt: &Interrupt<'_>,
) -> Result<(Vec<Option<PeerStream>>, Arc<PeerActivity>)> {
    let me = cfg.process;
    let n = cfg.processes();
    let deadline = Instant::now() + cfg.join_timeout;
    let bind = cfg.bind_address();
    let listener = TcpListener::bind(&bind)
        .with_context(|| format!("cannot listen on {bind} (process {me}'s cluster port)"))?;
    listener.set_nonblocking(true)?;
    tracing::info!(process = me, processes = n, listen = %bind, "joining the cluster");

    // Accept the processes after this one, each connection's handshake in a thread of its own
    // (a silent stray connection must not hold up the others).
    let (tx, rx) = mpsc::channel::<Result<(usize, TcpStream), String>>();
    // NB: listen until the cluster is formed even with no process to accept (the last one):
    // a scale-up takes on a new process once its port answers.
    let accepting = Arc::new(AtomicBool::new(true));
    let acceptor = {
        let (cfg, accepting) = (cfg.clone(), Arc::clone(&accepting));
        std::thread::Builder::new()
            .name("tickflow-accept".into())
            .spawn(move || {
                let hellos = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                while accepting.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, addr)) => {
                            if hellos.load(Ordering::Acquire) >= MAX_HELLOS {
                                tracing::warn!(%addr, "closed a cluster connection unread: {MAX_HELLOS} handshakes are under way");
                                continue;
                            }
                            hellos.fetch_add(1, Ordering::AcqRel);
                            let (cfg, tx, count) = (cfg.clone(), tx.clone(), Arc::clone(&hellos));
                            let spawned = std::thread::Builder::new()
                                .name("tickflow-hello".into())
                                .spawn(move || {
                                    match accept_one(stream, &cfg) {
                                        Accepted::Peer(j, s) => {
                                            let _ = tx.send(Ok((j, s)));
                                        }
                                        Accepted::Mismatch(why) => {
                                            let _ = tx.send(Err(why));
                                        }
                                        Accepted::Refused => {
                                            tracing::debug!(%addr, "closed a cluster connection")
                                        }
                                    }
                                    count.fetch_sub(1, Ordering::AcqRel);
                                });
                            if let Err(e) = spawned {
                                // The connection is dropped; its slot must not stay taken.
                                hellos.fetch_sub(1, Ordering::AcqRel);
                                tracing::warn!(%addr, "closed a cluster connection: no thread for its handshake: {e}");
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "accepting a cluster connection");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })?
    };

    let mut sockets: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let result = (|| -> Result<()> {
        for (j, addr) in cfg.peers.iter().enumerate().take(me) {
            sockets[j] = Some(connect_one(cfg, j, addr, deadline, interrupt)?);
        }
        let mut last_log = Instant::now();
        while sockets[me + 1..].iter().any(Option::is_none) {
            interrupt.check(&cfg.peers)?;
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(Err(why)) => bail!("{why}"),
                Ok(Ok((j, stream))) => claim(&mut sockets[j], j, stream),
                Err(_) if Instant::now() >= deadline => {
                    let missing: Vec<String> = (me + 1..n)
                        .filter(|j| sockets[*j].is_none())
                        .map(|j| format!("{j} ({})", cfg.peers[j]))
                        .collect();
                    bail!(
                        "process(es) {} did not join within {:?}",
                        missing.join(", "),
                        cfg.join_timeout
                    );
                }
                Err(_) if last_log.elapsed() >= Duration::from_secs(10) => {
                    last_log = Instant::now();
                    let missing: Vec<usize> =
                        (me + 1..n).filter(|j| sockets[*j].is_none()).collect();
                    tracing::info!(?missing, "waiting for processes to connect");
                }
                Err(_) => {}
            }
        }
        Ok(())
    })();
    accepting.store(false, Ordering::Release);
    let _ = acceptor.join();
    result?;

    let now = now_ms();
    let activity = Arc::new(PeerActivity {
        last_read: (0..n).map(|_| Arc::new(AtomicI64::new(now))).collect(),
        disarmed: AtomicBool::new(false),
        heard: (0..n).map(|_| AtomicBool::new(false)).collect(),
        formed_ms: now,
    });
    let mut streams = Vec::with_capacity(n);
    for (j, s) in sockets.into_iter().enumerate() {
        streams.push(match s {
            None => None,
            Some(s) => {
                tune(&s, cfg.peer_timeout).with_context(|| format!("socket to process {j}"))?;
                Some(PeerStream {
                    inner: s,
                    last_read: Arc::clone(&activity.last_read[j]),
                })
            }
        });
    }
    tracing::info!(process = me, processes = n, "cluster formed");
    Ok((streams, activity))
}

/// What an accepted connection turned out to be.
enum Accepted {
    Peer(usize, TcpStream),
    /// A member of this cluster that runs another pipeline: forming must stop.
    Mismatch(String),
    Refused,
}

/// Process `j`'s connection `stream` takes its slot, unless a live connection of another
/// process claiming `j` holds it: then two processes say they are `j` (a copy started by hand,
/// a pod that did not stop, a wrong `--process`), and the second is refused with a warning
/// naming both, instead of silently replacing the first (whose peers would then lose it). A
/// slot whose connection has closed is taken over: the process restarted.
fn claim(slot: &mut Option<TcpStream>, j: usize, stream: TcpStream) {
    let addr = |s: &TcpStream| {
        s.peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string())
    };
    if let Some(held) = slot.as_ref() {
        if alive(held) {
            tracing::warn!(
                peer = j,
                kept = %addr(held),
                refused = %addr(&stream),
                "two processes claim to be process {j}: kept the first ({}), closed the second ({}); check each process's --process and peers list",
                addr(held),
                addr(&stream)
            );
            return;
        }
        tracing::info!(peer = j, from = %addr(&stream), "process reconnected during start-up");
    }
    *slot = Some(stream);
}

/// Whether the other side of `s` is still there (its end not closed or reset).
fn alive(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let up = match s.peek(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    let _ = s.set_nonblocking(false);
    up
}

/// The handshake of one accepted connection.
fn accept_one(mut stream: TcpStream, cfg: &ClusterConfig) -> Accepted {
    let me = cfg.process;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(HELLO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(HELLO_TIMEOUT));
    let checked = read_hello(&mut stream, HELLO_TIMEOUT).and_then(|h| {
        h.check(cfg, me)?;
        let from = h.from as usize;
        if from <= me || from >= cfg.processes() {
            return Err(format!(
                "it says it is process {from}, but process {me} only accepts processes {} to {}",
                me + 1,
                cfg.processes() - 1
            ));
        }
        Ok((from, h.mismatch(cfg)))
    });
    match checked {
        Ok((from, mismatch)) => {
            let reply = Hello {
                generation: cfg.generation,
                processes: cfg.processes() as u32,
                from: me as u32,
                to: from as u32,
                pipeline: cfg.pipeline,
            };
            // NB: a mismatching peer gets this process's hello too, so that it stops as well.
            if stream.write_all(&reply.encode()).is_err() {
                return Accepted::Refused;
            }
            match mismatch {
                Some(why) => Accepted::Mismatch(why),
                None => Accepted::Peer(from, stream),
            }
        }
        Err(why) if why == SILENT => {
            tracing::debug!(from = %peer, "a connection to the cluster port: {why}");
            Accepted::Refused
        }
        Err(why) => {
            tracing::warn!(from = %peer, "refused a connection to the cluster port: {why}");
            Accepted::Refused
        }
    }
}

/// Connects to process `j` (before this one), retrying until `deadline`.
fn connect_one(
    cfg: &ClusterConfig,
    j: usize,
    addr: &str,
    deadline: Instant,
    interrupt: &Interrupt<'_>,
) -> Result<TcpStream> {
    let me = cfg.process;
    let hello = Hello {
        generation: cfg.generation,
        processes: cfg.processes() as u32,
        from: me as u32,
        to: j as u32,
        pipeline: cfg.pipeline,
    };
    let mut last_log = Instant::now();
    // Peers usually start together: retry soon, then back off (to at most half a second).
    let mut pause = Duration::from_millis(10);
    loop {
        interrupt.check(&cfg.peers)?;
        let why = match attempt(addr, &hello, cfg, j) {
            Ok(s) => return Ok(s),
            Err(Attempt::Fatal(why)) => bail!("{why}"),
            Err(Attempt::Retry(why)) => why,
        };
        if Instant::now() >= deadline {
            bail!(
                "process {j} ({addr}) did not join within {:?}: {why}",
                cfg.join_timeout
            );
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            tracing::info!(peer = j, %addr, "waiting for process: {why}");
            last_log = Instant::now();
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Why a connection attempt failed: worth retrying (not up yet, not the right process), or not.
enum Attempt {
    Retry(String),
    Fatal(String),
}

impl From<String> for Attempt {
    fn from(why: String) -> Self {
        Attempt::Retry(why)
    }
}

fn attempt(addr: &str, hello: &Hello, cfg: &ClusterConfig, j: usize) -> Result<TcpStream, Attempt> {
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "the name has no address".to_string())?;
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))
        .map_err(|e| format!("cannot connect: {e}"))?;
    s.set_read_timeout(Some(HELLO_TIMEOUT * 2))
        .and_then(|_| s.set_write_timeout(Some(HELLO_TIMEOUT)))
        .and_then(|_| s.write_all(&hello.encode()))
        .map_err(|e| format!("sending the handshake: {e}"))?;
    let reply = read_hello(&mut s, HELLO_TIMEOUT * 2)?;
    reply.check(cfg, hello.from as usize)?;
    if reply.from as usize != j {
        return Err(Attempt::Retry(format!(
            "the process at this address is process {}, not {j}",
            reply.from
        )));
    }
    if let Some(why) = reply.mismatch(cfg) {
        return Err(Attempt::Fatal(why));
    }
    Ok(s)
}

/// Blocking, no delay, keepalive and a user timeout: a dead link errors instead of hanging.
fn tune(s: &TcpStream, peer_timeout: Duration) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(None)?;
    s.set_write_timeout(None)?;
    s.set_nodelay(true)?;
    let sock = socket2::SockRef::from(s);
    sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(5))
            .with_interval(Duration::from_secs(2))
            .with_retries(3),
    )?;
    sock.set_tcp_user_timeout(Some(peer_timeout))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second live connection claiming a process's index is refused (the first is kept); once
    /// the first has closed, a new one takes its place (a restart).
    #[test]
    fn a_second_live_claimant_of_an_index_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (first_client, second_client) = (
            TcpStream::connect(addr).unwrap(),
            TcpStream::connect(addr).unwrap(),
        );
        let (first, _) = listener.accept().unwrap();
        let (second, _) = listener.accept().unwrap();
        let first_port = first_client.local_addr().unwrap();
        let mut slot = None;
        claim(&mut slot, 1, first);
        claim(&mut slot, 1, second);
        let held = slot.as_ref().unwrap().peer_addr().unwrap();
        assert_eq!(held, first_port, "the first claimant is kept");
        drop(second_client);
        drop(first_client);
        let third_client = TcpStream::connect(addr).unwrap();
        let (third, _) = listener.accept().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(slot.as_ref().unwrap()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5)); // until the first's close arrives
        }
        claim(&mut slot, 1, third);
        let held = slot.as_ref().unwrap().peer_addr().unwrap();
        assert_eq!(
            held,
            third_client.local_addr().unwrap(),
            "a closed claimant is replaced"
        );
    }

    /// A peer that sends its hello a byte at a time is cut off at the deadline of the whole
    /// hello (not per read: every byte would reset that).
    #[test]
    fn a_trickled_hello_is_cut_off_at_one_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let trickle = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            for b in MAGIC {
                if s.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let (mut conn, _) = listener.accept().unwrap();
        // Per read, every 100 ms byte would be in time and the magic would come whole.
        let err = read_hello(&mut conn, Duration::from_millis(350)).unwrap_err();
        assert_eq!(err, "it sent no handshake in time");
        drop(conn);
        trickle.join().unwrap();
    }

    #[test]
    fn hello_round_trips_and_refuses_strangers() {
        let h = Hello {
            generation: 7,
            processes: 3,
            from: 2,
            to: 0,
            pipeline: Fingerprint::default(),
        };
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
        let mut junk = h.encode();
        junk[0] = b'G';
        assert!(Hello::decode(&junk).unwrap_err().contains("not a tickflow"));
        let mut v2 = h.encode();
        v2[8] = 9;
        assert!(Hello::decode(&v2).unwrap_err().contains("protocol 9"));
        let cfg = ClusterConfig::new(0, super::super::parse_peers("a:1,b:2,c:3"), 1).unwrap();
        let ok = Hello {
            generation: cfg.generation,
            ..h
        };
        assert_eq!(ok.check(&cfg, 0), Ok(()));
        assert!(
            h.check(&cfg, 0)
                .unwrap_err()
                .contains("another cluster generation")
        );
        assert!(ok.check(&cfg, 1).unwrap_err().contains("this is process 1"));
        // Same cluster, another pipeline: named, not taken for a stranger.
        assert_eq!(ok.mismatch(&cfg), None);
        let mut other = ok;
        other.pipeline.steps = 1;
        other.pipeline.threads = 2;
        let why = other.mismatch(&cfg).unwrap();
        assert!(
            why.contains("process 2 (c:3) runs a different pipeline: its steps"),
            "{why}"
        );
        assert!(
            why.contains("it runs --workers 2, this process --workers 0"),
            "{why}"
        );
        assert_eq!(Hello::decode(&other.encode()), Ok(other));
    }
}
