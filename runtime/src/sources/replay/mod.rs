//! The replay source: a JSONL file of Finnhub frames, read in parallel and yet deterministic.
//!
//! The file is cut into fixed-size blocks (by byte offset, aligned to lines); worker `w` parses
//! blocks `w, w+W, w+2W, ...`. Lateness depends on the watermark *at the moment each trade is
//! read* in file order, which needs the highest event time of every earlier block: each worker
//! publishes its block's maximum and line count as soon as it has parsed it, and a block is
//! released once all earlier blocks are published. So parsing runs in parallel while watermarks,
//! sequence numbers and line numbers are exactly those of one sequential reader, for any worker
//! count. With `speed > 0` one worker reads every block and paces emission by event time.
//!
//! Emission is paced by the steps downstream: a worker emits its next block only once the
//! windows fed by this source have passed the block it emitted [`EMIT_AHEAD`] blocks before.
//! Without that, a worker whose blocks were parsed early ran ahead of a slower one, and every
//! window held the fast worker's trades until the slow one caught up (with 2 workers, 10k
//! symbols: ~45 MB of stashed trades and bursts of ~50 MB of fired rows).

pub mod config;
mod kind;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};

use crate::cluster::ControlMsg;
use crate::base::time::{quantize, quantum_bounds};
use crate::metrics::Metrics;
use crate::base::record::Trade;
use crate::sources::SourceBuildCx;
use crate::sources::replay::config::ReplayConfig;
use crate::output::dead_letter::{DeadLetter, DeadLetters};
use crate::sources::finnhub::fast;
use crate::base::reject::RejectReason;
use crate::sources::finnhub::protocol::{self, FrameKind, InvalidTrade, ValidTrade};

/// Default block size: large enough to amortize coordination, small enough to balance workers.
pub const BLOCK_SIZE: usize = 1 << 20;

/// How many parsed blocks a worker may hold while it waits for earlier blocks to be published.
const PARSE_AHEAD: usize = 8;

/// How many of its emitted blocks a worker may have ahead of the downstream steps' frontier.
pub const EMIT_AHEAD: usize = 2;

/// A block was parsed on another process: its highest event time and line count (the carry of
/// the blocks after it), and the file's length and version as that process sees it.
#[derive(serde::Serialize, serde::Deserialize)]
struct BlockParsed {
    block: u32,
    max_ts: i64,
    lines: u64,
    file_len: u64,
    /// The object's ETag (empty for a local file).
    version: String,
}

/// Where the replayed bytes come from.
enum Input {
    /// A local file (a path or `file://`), read with positioned reads.
    File(std::fs::File),
    /// An object in a bucket (`gs://BUCKET/PATH`), read in ranged requests: every process of a
    /// cluster reads the blocks its workers parse, each pinned to the version (ETag) seen at
    /// the start.
    Object {
        storage: crate::base::storage::Storage,
        name: String,
        e_tag: Option<String>,
    },
}

/// State shared by all workers replaying one file.
pub struct ReplayShared {
    input: Input,
    path: String,
    /// The file's length when the run started: what is replayed.
    len: u64,
    /// The file's modification time when the run started (local files): a rewrite in place
    /// during the run changes it.
    modified: Option<std::time::SystemTime>,
    block_size: usize,
    n_blocks: usize,
    block_max: Vec<AtomicI64>,
    block_lines: Vec<AtomicU64>,
    block_ready: Vec<AtomicBool>,
    /// Event time of the first valid trade (for pacing), `i64::MIN` until known.
    origin_ts: AtomicI64,
}

/// How much more is read at a time to find the end of a block's last line.
const LINE_TAIL_CHUNK: usize = 64 << 10;

impl ReplayShared {
    /// Opens `path` (a local path, `file:///abs/path` or `gs://BUCKET/PATH`) for reading. A
    /// file is read with positioned reads, never memory-mapped: a file truncated during the run
    /// is then an error that says so, not a SIGBUS.
    pub fn open(
        path: &str,
        block_size: usize,
        rt: &tokio::runtime::Handle,
    ) -> anyhow::Result<ReplayShared> {
        let (input, len, modified) = if path.starts_with("gs://") {
            let (dir, name) = crate::base::storage::gcs::object_url(path)
                .ok_or_else(|| anyhow::anyhow!("expected gs://BUCKET/PATH of an object"))?;
            let storage = crate::base::storage::gcs::open_reader(dir, rt.clone())?;
            let (len, e_tag) = storage.version(name)?;
            (
                Input::Object {
                    storage,
                    name: name.to_string(),
                    e_tag,
                },
                len,
                None,
            )
        } else {
            let local = path.strip_prefix("file://").unwrap_or(path);
            let file = std::fs::File::open(local)?;
            let meta = file.metadata()?;
            (Input::File(file), meta.len(), meta.modified().ok())
        };
        let block_size = block_size.max(1);
        let n_blocks = (len as usize).div_ceil(block_size);
        Ok(ReplayShared {
            input,
            path: path.to_string(),
            len,
            modified,
            block_size,
            n_blocks,
            block_max: (0..n_blocks).map(|_| AtomicI64::new(i64::MIN)).collect(),
            block_lines: (0..n_blocks).map(|_| AtomicU64::new(0)).collect(),
            block_ready: (0..n_blocks).map(|_| AtomicBool::new(false)).collect(),
            origin_ts: AtomicI64::new(i64::MIN),
        })
    }

    /// The version of an object replayed (its ETag), as other processes of a cluster must see
    /// it too; empty for a local file.
    pub fn version(&self) -> &str {
        match &self.input {
            Input::Object { e_tag, .. } => e_tag.as_deref().unwrap_or(""),
            Input::File(_) => "",
        }
    }

    /// Block `b` as parsed by a worker of another process (cluster mode): its highest event
    /// time and line count, then ready. A process that sees another file (another length, or
    /// another version of the object) would compute other watermarks: that is an error, not a
    /// silent difference.
    pub fn set_block(
        &self,
        b: usize,
        max_ts: i64,
        lines: u64,
        file_len: u64,
        version: &str,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            file_len == self.len,
            "replay file `{}` is {} bytes here but {file_len} bytes in another process of the cluster: every process must replay the same file (a shared path or gs://)",
            self.path,
            self.len
        );
        anyhow::ensure!(
            version == self.version(),
            "replay object `{}` is version {:?} here but {version:?} in another process of the cluster: it was replaced between the processes' starts (every process must replay the same version)",
            self.path,
            self.version()
        );
        if b < self.n_blocks {
            self.block_max[b].store(max_ts, Ordering::Release);
            self.block_lines[b].store(lines, Ordering::Release);
            self.block_ready[b].store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Fills `buf` from `offset`; a file shorter than at the start is an error naming it.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> anyhow::Result<()> {
        use std::os::unix::fs::FileExt;
        let file = match &self.input {
            Input::File(f) => f,
            Input::Object {
                storage,
                name,
                e_tag,
            } => {
                let end = offset + buf.len() as u64;
                let bytes = match e_tag {
                    // Pinned to the version read at the start.
                    Some(e_tag) => storage.get_range_of(name, offset..end, e_tag)?.ok_or_else(|| {
                        anyhow::anyhow!(
                            "replay object `{}` was replaced while being read (it was version {e_tag:?} at the start; an archive must not be rewritten during a replay)",
                            self.path
                        )
                    })?,
                    // A store that gives no ETag: only a shorter object is noticed.
                    None => storage.get_range(name, offset..end).map_err(|e| {
                        let now = storage.size(name).unwrap_or(0);
                        if now < end {
                            anyhow::anyhow!(
                                "replay object `{}` shrank while being read: it had {} bytes at the start, now {now} (an archive must not be rewritten during a replay)",
                                self.path,
                                self.len
                            )
                        } else {
                            e
                        }
                    })?,
                };
                anyhow::ensure!(
                    bytes.len() == buf.len(),
                    "replay object `{}` shrank while being read: a read of {} bytes at {offset} returned {}",
                    self.path,
                    buf.len(),
                    bytes.len()
                );
                buf.copy_from_slice(&bytes);
                return Ok(());
            }
        };
        match file.read_exact_at(buf, offset) {
            // NB: what was read is checked after the read: a rewrite during it shows too.
            Ok(()) => {
                let meta = file.metadata().map_err(|e| anyhow::anyhow!("reading replay file `{}`: {e}", self.path))?;
                anyhow::ensure!(
                    meta.len() == self.len && meta.modified().ok() == self.modified,
                    "replay file `{}` was modified while being read ({} bytes at the start, {} now; its modification time changed): a file must not be rewritten during a replay",
                    self.path,
                    self.len,
                    meta.len()
                );
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                let now = file.metadata().map(|m| m.len()).unwrap_or(0);
                anyhow::bail!(
                    "replay file `{}` shrank while being read: it had {} bytes at the start, now {now} (a file must not be truncated or rewritten during a replay)",
                    self.path,
                    self.len
                )
            }
            Err(e) => Err(anyhow::anyhow!("reading replay file `{}`: {e}", self.path)),
        }
    }

    /// Reads the lines that start in block `b` (the last one to its end) into `buf` and returns
    /// where they are in it. `buf` is reused from block to block: once it has grown, a block
    /// costs one positioned read (no allocation, zeroing or moving; those were ~8% of a 1-worker
    /// replay).
    fn read_block(&self, b: usize, buf: &mut Vec<u8>) -> anyhow::Result<std::ops::Range<usize>> {
        let bs = self.block_size as u64;
        let lo = b as u64 * bs;
        let hi = (lo + bs).min(self.len);
        // One byte before the block tells whether a line starts at its first byte.
        let from = lo.saturating_sub(1);
        let n = (hi - from) as usize;
        if buf.len() < n {
            buf.resize(n, 0);
        }
        self.read_at(&mut buf[..n], from)?;
        let start = if lo == 0 {
            0
        } else {
            match memchr::memchr(b'\n', &buf[..n]) {
                Some(i) => i + 1,
                // No line starts in this block.
                None => return Ok(0..0),
            }
        };
        // The last line runs on to the next newline at or after `hi - 1`.
        let (mut end, mut pos) = (n, hi);
        while pos < self.len && (end == 0 || buf[end - 1] != b'\n') {
            let k = (self.len - pos).min(LINE_TAIL_CHUNK as u64) as usize;
            if buf.len() < end + k {
                buf.resize(end + k, 0);
            }
            self.read_at(&mut buf[end..end + k], pos)?;
            match memchr::memchr(b'\n', &buf[end..end + k]) {
                Some(i) => {
                    end += i + 1;
                    break;
                }
                None => end += k,
            }
            pos += k as u64;
        }
        Ok(start..end)
    }
}

/// A parsed block waiting for the carry (max event time and line count of all earlier blocks).
/// Until released, each trade's `seq` counts lines from the start of the block and its `wm`
/// holds the block-local running maximum event time.
struct ParsedBlock {
    index: usize,
    trades: Vec<Trade>,
    rejects: Vec<(u32, RejectReason, String, String)>, // (line in block, reason, detail, raw)
    max_ts: i64,
}

/// A released block whose trades are being emitted (paced mode emits it in pieces).
struct ReadyBlock {
    trades: Vec<Trade>,
    /// The trades in runs of one timestamp (a quantized watermark): (time, trades), in order.
    runs: Vec<(u64, usize)>,
    next: usize,
    upper_wm: i64,
}

/// Builds the replay source for one worker: a stream of trades stamped with their quantized
/// read-watermark. `downstream` probes the steps fed by this source (no probe attached: no
/// pacing); see [`EMIT_AHEAD`].
pub(super) fn replay_stream<'scope>(
    scope: Scope<'scope, u64>,
    cx: &SourceBuildCx<'_>,
    shared: Arc<ReplayShared>,
    config: &ReplayConfig,
) -> StreamVec<'scope, u64, Trade> {
    let (ctx, source_index) = (cx.ctx, cx.index);
    let dead = Rc::clone(cx.dead);
    let downstream = cx.downstream.clone();
    let node = &ctx.sources[source_index];
    let name = node.name.clone();
    let ooo = node.max_out_of_orderness_ms;
    let quantum = node.time_quantum_ms;
    let speed = config.speed;
    let max_future = config.max_future.as_millis();
    let (worker, peers) = (scope.index(), scope.peers());
    let ctx = Arc::clone(ctx);

    source(
        scope,
        &format!("Replay({name})"),
        move |capability: Capability<u64>, info| {
            let activator = scope.activator_for(info.address);
            let mut cap = Some(capability);
            // Blocks this worker parses; paced replay reads everything on worker 0.
            let mut my_blocks: VecDeque<usize> = if speed > 0.0 {
                if worker == 0 {
                    (0..shared.n_blocks).collect()
                } else {
                    VecDeque::new()
                }
            } else {
                (worker..shared.n_blocks).step_by(peers).collect()
            };
            let mut parsed: VecDeque<ParsedBlock> = VecDeque::new();
            // The bytes of the block being parsed (reused; trades own their strings).
            let mut block_buf: Vec<u8> = Vec::new();
            let mut ready: Option<ReadyBlock> = None;
            // Upper timestamps of the blocks this worker emitted last (at most EMIT_AHEAD).
            let mut emitted: VecDeque<u64> = VecDeque::with_capacity(EMIT_AHEAD + 1);
            // Length of the contiguous prefix of published blocks.
            let mut published = 0usize;
            let started = Instant::now();
            let metrics: Arc<Metrics> = Arc::clone(&ctx.metrics);
            let (step_stats, source_stats) = (metrics.step(&name, "source"), metrics.source(&name));
            let stop = Arc::clone(&ctx.stop);
            // Fixed at the start, so whether a trade is "in the future" does not depend on
            // when its block happens to be parsed.
            let future = protocol::future_limit(max_future);

            move |output| {
                if stop.load(Ordering::Relaxed) {
                    cap = None;
                    return;
                }
                let Some(capability) = cap.as_mut() else {
                    return;
                };

                // 1. Emit (part of) the released block, unless the steps downstream are still
                // behind the block emitted EMIT_AHEAD blocks ago. (No deadlock: the worker
                // holding the least capability finds the frontier at its own last block.)
                let behind = emitted.len() >= EMIT_AHEAD
                    && emitted.front().is_some_and(|t| downstream.less_than(t));
                if !behind && let Some(block) = ready.as_mut() {
                    let mut end = block.trades.len();
                    if speed > 0.0 {
                        let origin = shared.origin_ts.load(Ordering::Relaxed);
                        let elapsed = started.elapsed().as_millis() as f64 * speed;
                        end = block.next
                            + block.trades[block.next..]
                                .iter()
                                .take_while(|t| (t.wm + ooo - origin) as f64 <= elapsed)
                                .count();
                    }
                    metrics
                        .trades
                        .fetch_add((end - block.next) as u64, Ordering::Relaxed);
                    step_stats
                        .records_out
                        .fetch_add((end - block.next) as u64, Ordering::Relaxed);
                    if block.next == 0 && end == block.trades.len() {
                        // The whole block: hand over the vectors, one per timestamp, without copying
                        // trade by trade.
                        // NB: every later timestamp's trades move into a vector of their own
                        // size. (Splitting from the front would leave every piece with the
                        // capacity of the whole rest: quadratic memory wherever the pieces are
                        // held — 4 GB for 100 ms windows on a 20k-trade file once.)
                        let all = std::mem::take(&mut block.trades);
                        let runs = std::mem::take(&mut block.runs);
                        // From the back: each later run is split off into a vector of its
                        // own size (one copy of that run), and the first run is the block's
                        // own vector, handed over without a copy (often the whole block: a
                        // 1 MiB block spans less than a 1-minute quantum).
                        let mut all = all;
                        let mut cut = all.len();
                        for &(t, n) in runs.iter().rev() {
                            cut -= n;
                            let mut piece = if cut == 0 {
                                std::mem::take(&mut all)
                            } else {
                                all.split_off(cut)
                            };
                            let at = capability.delayed(&t);
                            output.session(&at).give_container(&mut piece);
                        }
                        block.next = 0;
                        end = 0;
                    }
                    let mut i = block.next;
                    while i < end {
                        let t = quantize(block.trades[i].wm, quantum);
                        let run = block.trades[i..end]
                            .iter()
                            .take_while(|x| quantize(x.wm, quantum) == t)
                            .count();
                        let at = capability.delayed(&t);
                        output
                            .session(&at)
                            .give_iterator(block.trades[i..i + run].iter().cloned());
                        i += run;
                    }
                    block.next = end;
                    if block.next < block.trades.len() {
                        let next = &block.trades[block.next];
                        // Paced: the block's later trades are at or after the next one's
                        // watermark, so the frontier moves on while the block is replayed
                        // (windows fire as they would live, not at the block's end).
                        capability.downgrade(&quantize(next.wm, quantum).max(*capability.time()));
                        let origin = shared.origin_ts.load(Ordering::Relaxed);
                        let due_ms = ((next.wm + ooo - origin) as f64 / speed) as u64;
                        let wait = Duration::from_millis(due_ms).saturating_sub(started.elapsed());
                        activator.activate_after(wait.max(Duration::from_millis(1)));
                        return;
                    }
                    let upper = block.upper_wm;
                    ready = None;
                    capability.downgrade(&quantize(upper, quantum).max(*capability.time()));
                    if emitted.len() >= EMIT_AHEAD {
                        emitted.pop_front();
                    }
                    emitted.push_back(*capability.time());
                }

                // 2. Parse ahead, so that a worker rarely waits for another's block; while the
                // steps downstream are behind, one block only (others may wait for it).
                if parsed.len() < if behind { 1 } else { PARSE_AHEAD }
                    && let Some(b) = my_blocks.pop_front()
                {
                    let block = match parse_block(
                        &shared,
                        b,
                        &mut block_buf,
                        &metrics,
                        &dead,
                        &name,
                        future,
                    ) {
                        Ok(block) => block,
                        Err(e) => {
                            ctx.fail(format!("source `{name}`: {e:#}"));
                            cap = None;
                            return;
                        }
                    };
                    shared.block_max[b].store(block.max_ts, Ordering::Release);
                    shared.block_ready[b].store(true, Ordering::Release);
                    if let Some(control) = &ctx.control {
                        let fact = BlockParsed {
                            block: b as u32,
                            max_ts: block.max_ts,
                            lines: shared.block_lines[b].load(Ordering::Acquire),
                            file_len: shared.len,
                            version: shared.version().to_string(),
                        };
                        control.send(ControlMsg::Source {
                            source: source_index as u32,
                            body: bincode::serialize(&fact).expect("a block fact serializes"),
                        });
                    }
                    parsed.push_back(block);
                }

                // 3. Release the oldest parsed block once every earlier block is published.
                while published < shared.n_blocks
                    && shared.block_ready[published].load(Ordering::Acquire)
                {
                    published += 1;
                }
                if ready.is_none()
                    && let Some(front) = parsed.front()
                    && published >= front.index
                {
                    let block = parsed.pop_front().expect("front exists");
                    // Carry: max event time and line count of every block before this one.
                    let (mut carry_max, mut carry_lines) = (i64::MIN, 0u64);
                    for j in 0..block.index {
                        carry_max = carry_max.max(shared.block_max[j].load(Ordering::Acquire));
                        carry_lines += shared.block_lines[j].load(Ordering::Acquire);
                    }
                    let released = release(
                        block,
                        (carry_max, carry_lines),
                        (ooo, quantum),
                        &shared,
                        &dead,
                        &name,
                    );
                    if released.upper_wm > i64::MIN {
                        metrics
                            .watermark
                            .fetch_max(released.upper_wm, Ordering::Relaxed);
                        source_stats
                            .watermark
                            .fetch_max(released.upper_wm, Ordering::Relaxed);
                    }
                    if released.trades.is_empty() {
                        capability.downgrade(
                            &quantize(released.upper_wm, quantum).max(*capability.time()),
                        );
                    } else {
                        ready = Some(released);
                    }
                }

                let finished = my_blocks.is_empty() && parsed.is_empty() && ready.is_none();
                if finished {
                    cap = None;
                } else {
                    activator.activate();
                }
            }
        },
    )
}

/// Parses block `b`: frames into valid trades and rejects; publishes the block's line count.
fn parse_block(
    shared: &ReplayShared,
    b: usize,
    buf: &mut Vec<u8>,
    metrics: &Metrics,
    dead: &Rc<RefCell<DeadLetters>>,
    source_name: &str,
    future_limit: i64,
) -> anyhow::Result<ParsedBlock> {
    // NB: a block whose last line is huge (a 50 MB frame) grows the buffer; it is not kept.
    if buf.capacity() > 4 * shared.block_size.max(LINE_TAIL_CHUNK) {
        *buf = Vec::new();
    }
    let range = shared.read_block(b, buf)?;
    let bytes = &buf[range];
    let mut future: Vec<(usize, i64)> = Vec::new();
    let mut trades: Vec<Trade> = Vec::with_capacity(bytes.len() / 60);
    let mut rejects = Vec::new();
    let mut invalid: Vec<InvalidTrade> = Vec::new();
    let mut max_ts = i64::MIN;
    // One frame's trades from the fast path (which adds them only when it takes the frame).
    let mut fast_trades: Vec<ValidTrade> = Vec::new();
    let (mut lines, mut pings, mut errors, mut others) = (0u32, 0u64, 0u64, 0u64);
    let mut push = |line_no: u32,
                    index: usize,
                    t: ValidTrade,
                    max_ts: &mut i64,
                    future: &mut Vec<(usize, i64)>| {
        if t.ts > future_limit {
            future.push((index, t.ts));
            return;
        }
        *max_ts = (*max_ts).max(t.ts);
        trades.push(Trade {
            symbol: t.symbol,
            price: t.price,
            volume: t.volume,
            ts: t.ts,
            seq: ((line_no as u64) << Trade::SEQ_INDEX_BITS) | index as u64,
            wm: *max_ts,
            conditions: t.conditions,
        });
    };
    // Lines found with memchr (SIMD), not byte by byte: this loop sees every byte of the file.
    let mut starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', bytes).map(|i| i + 1));
    let mut next_start = starts.next();
    while let Some(start) = next_start {
        next_start = starts.next();
        let raw_line = &bytes[start..next_start.map_or(bytes.len(), |n| n - 1)];
        let line_no = lines;
        lines += 1;
        let mut line = raw_line;
        while let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() {
            continue;
        }
        if fast::parse_trade_frame(line, &mut fast_trades).is_some() {
            for (i, t) in fast_trades.drain(..).enumerate() {
                push(line_no, i, t, &mut max_ts, &mut future);
            }
            if !future.is_empty() {
                let text = String::from_utf8_lossy(line);
                for (index, ts) in future.drain(..) {
                    let raw = protocol::raw_trade(&text, index).unwrap_or_else(|| text.to_string());
                    let detail = protocol::future_detail(ts, future_limit);
                    rejects.push((line_no, RejectReason::FutureTimestamp, detail, raw));
                }
            }
            continue;
        }
        if line.iter().all(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                let raw = String::from_utf8_lossy(line).into_owned();
                rejects.push((
                    line_no,
                    RejectReason::MalformedFrame,
                    format!("not UTF-8: {e}"),
                    raw,
                ));
                continue;
            }
        };
        invalid.clear();
        let result = protocol::parse_frame(
            text,
            |i, t| push(line_no, i, t, &mut max_ts, &mut future),
            &mut invalid,
        );
        match result {
            Ok(FrameKind::Trades(_)) => {}
            Ok(FrameKind::Ping) => pings += 1,
            Ok(FrameKind::Error(msg)) => {
                errors += 1;
                dead.borrow_mut().log_server_error(source_name, &msg);
            }
            Ok(FrameKind::Other(_)) => others += 1,
            Err(m) => rejects.push((
                line_no,
                RejectReason::MalformedFrame,
                m.detail,
                text.to_string(),
            )),
        }
        for inv in invalid.drain(..) {
            let raw = protocol::raw_trade(text, inv.index).unwrap_or_else(|| text.to_string());
            rejects.push((line_no, inv.reason, inv.detail, raw));
        }
        for (index, ts) in future.drain(..) {
            let raw = protocol::raw_trade(text, index).unwrap_or_else(|| text.to_string());
            let detail = protocol::future_detail(ts, future_limit);
            rejects.push((line_no, RejectReason::FutureTimestamp, detail, raw));
        }
    }
    // `split` yields one empty piece after a final newline: that is not a line.
    if bytes.is_empty() || bytes.last() == Some(&b'\n') {
        lines -= 1;
    }
    metrics.frames.fetch_add(lines as u64, Ordering::Relaxed);
    metrics.pings.fetch_add(pings, Ordering::Relaxed);
    metrics.server_errors.fetch_add(errors, Ordering::Relaxed);
    metrics.other_frames.fetch_add(others, Ordering::Relaxed);
    shared.block_lines[b].store(lines as u64, Ordering::Release);
    // NB: rejects must stay in line order (dead letters are written as released).
    rejects.sort_by_key(|r| r.0);
    Ok(ParsedBlock {
        index: b,
        trades,
        rejects,
        max_ts,
    })
}

/// Stamps a parsed block with read-watermarks and global sequence numbers, and finds its runs
/// of one timestamp (in the same pass: a block's trades do not fit in a core's cache, and a
/// second pass read them all from memory again); dead-letters its rejects with their line
/// numbers.
fn release(
    mut block: ParsedBlock,
    (carry_max, carry_lines): (i64, u64),
    (ooo, quantum): (i64, u64),
    shared: &ReplayShared,
    dead: &Rc<RefCell<DeadLetters>>,
    source_name: &str,
) -> ReadyBlock {
    let wm_of = |max: i64| {
        if max == i64::MIN {
            i64::MIN
        } else {
            max.saturating_sub(ooo)
        }
    };
    if block.index == 0
        && let Some(first) = block.trades.first()
    {
        shared.origin_ts.store(first.ts, Ordering::Relaxed);
    }
    // Lines are 1-based: block line k is global line carry_lines + k + 1.
    let seq_offset = (carry_lines + 1) << Trade::SEQ_INDEX_BITS;
    let mut runs: Vec<(u64, usize)> = Vec::new();
    // A run's trades are those whose watermark rounds to its time: compared against the run's
    // bounds, not divided trade by trade.
    let mut bounds = (i64::MAX, i64::MIN);
    for t in &mut block.trades {
        t.seq += seq_offset;
        t.wm = wm_of(carry_max.max(t.wm));
        match runs.last_mut() {
            Some((_, n)) if (bounds.0..bounds.1).contains(&t.wm) => *n += 1,
            _ => {
                let at = quantize(t.wm, quantum);
                bounds = quantum_bounds(at, quantum);
                runs.push((at, 1));
            }
        }
    }
    if !block.rejects.is_empty() {
        let mut dl = dead.borrow_mut();
        for (line, reason, detail, raw) in block.rejects {
            dl.push(DeadLetter {
                source: source_name,
                reason,
                detail,
                raw,
                line: carry_lines + line as u64 + 1,
            });
        }
    }
    ReadyBlock {
        trades: block.trades,
        runs,
        next: 0,
        upper_wm: wm_of(carry_max.max(block.max_ts)),
    }
}
