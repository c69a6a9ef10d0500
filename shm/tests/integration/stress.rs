//! Multi-process torn-read stress test of the seqlock region.
//!
//! A writer publishes, as fast as it can, slots whose every word is derived from one
//! counter `k` (see [`expected`]), so a copy mixing two publications cannot pass
//! [`check`]. Readers check every consistent copy they get:
//!
//! * a thread in this process, through its own mapping;
//! * another process: this test binary re-executed to run [`stress_child_reader`] (a no-op
//!   unless [`ENV_PATH`] is set), which reads until it sees the writer's closed flag;
//! * a Python process running `shm/python/hermes_shm.py` for about half a second (when
//!   [`require`] finds `python3`).
//!
//! Each reader reports how many reads, consistent copies and distinct sequences it saw, so
//! the test cannot pass without the readers actually racing the writer; after the closed
//! flag, each must read exactly the writer's final publications.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use hermes_shm::{
    layout::SLOT_WORDS, ShmReader, ShmWriter, SlotIndex, SlotKernels, TopOfBook, Venue,
    WriterOptions, WriterStatus, FLAG_HAS_ASK, FLAG_HAS_BID, FLAG_HAS_DERIVS, FLAG_STALE,
};

use crate::common::{crate_path, require, TempDir};

/// Set in the child's environment to the region's path.
const ENV_PATH: &str = "HERMES_SHM_STRESS_PATH";
/// The child's test name (`--exact`).
const CHILD_TEST: &str = "stress::stress_child_reader";
/// Printed by each reader process once it has mapped the region.
const READY: &str = "HERMES-STRESS-READY";
/// Prefix of each reader process's result line.
const RESULT: &str = "HERMES-STRESS-RESULT";
/// The writer stops after this many publications or [`WRITE_TIME`], whichever first.
const MAX_PUBLICATIONS: u64 = 3_000_000;
const WRITE_TIME: Duration = Duration::from_secs(2);
/// A reader process gives up (and fails) if the writer has not closed by then.
const CHILD_DEADLINE: Duration = Duration::from_secs(30);
/// How long the Python reader reads (it stops earlier if the writer closes).
const PYTHON_READ_SECS: f64 = 0.5;

/// The slot publication `k` (≥ 1) goes to: even `k` to slot 0, odd to slot 1.
fn slot_of(k: u64) -> u32 {
    (k & 1) as u32
}

/// Publication `k` in full, including the sequence and update count it must be read
/// with: slot 0 receives k = 2, 4, 6…, slot 1 k = 1, 3, 5…, so publication k is the
/// ⌈k/2⌉-th of its slot and carries `seq = 2⌈k/2⌉`.
fn expected(k: u64) -> TopOfBook {
    let ki = k as i64;
    let seq = k + (k & 1);
    let n = (k % 11) as u32;
    let mut t = TopOfBook {
        seq,
        update_id: k,
        exch_ts_ns: 3 * ki,
        recv_ts_ns: 3 * ki + 1,
        publish_ts_ns: 3 * ki + 2,
        updates: seq / 2,
        flags: FLAG_HAS_BID
            | FLAG_HAS_ASK
            | if k % 3 == 0 { FLAG_STALE } else { 0 }
            | if k % 5 != 0 { FLAG_HAS_DERIVS } else { 0 },
        bid_px: ki,
        bid_qty: 2 * ki + 1,
        ask_px: ki + 7,
        ask_qty: 2 * ki + 3,
        bid_levels: n,
        ask_levels: 10 - n,
        last_trade_px: -ki,
        last_trade_qty: 11 * ki,
        last_trade_ts_ns: 13 * ki,
        last_trade_side: (k % 3) as u8,
        trades: 17 * k,
        // The derivatives words (57-62), every one different between publications.
        mark_px: 23 * ki,
        index_px: 23 * ki + 1,
        funding_rate: -ki,
        next_funding_ns: 29 * ki,
        derivs_ts_ns: 31 * ki,
        liquidations: 37 * k,
        kernels: SlotKernels {
            time_ns: 19 * ki,
            price_decimals: (k % 19) as u8,
            spread_ticks: Some(ki + 1),
            spread_bps_x100: Some(ki + 2),
            mid_px: Some(ki + 3),
            microprice_px: Some(ki + 4),
            bid_depth: ki + 5,
            ask_depth: ki + 6,
            imbalance_ppm: Some(-ki),
            vwap_buy_px: Some(ki + 8),
            vwap_sell_px: Some(ki + 9),
            volatility_bps: Some(ki as f64 * 0.5),
            trade_buy_qty: ki + 10,
            trade_sell_qty: ki + 11,
            trade_imbalance_ppm: Some(ki + 12),
            ofi_window: ki + 13,
            ofi_total: -3 * ki,
            updates_per_s_x100: k + 14,
            levels: (k % 1000) as u32,
            vwap_qty: ki + 15,
            vol_half_life_ns: ki + 16,
            trade_window_ns: ki + 17,
            rate_window_ns: ki + 18,
        },
        ..TopOfBook::default()
    };
    for i in 0..10 {
        t.bids[i] = (ki + i as i64, 3 * ki + i as i64);
        t.asks[i] = (ki + 7 + i as i64, 5 * ki + i as i64);
    }
    t
}

/// Checks a consistent copy of `slot` against the invariant; returns its `k`.
fn check(slot: u32, t: &TopOfBook) -> Result<u64, String> {
    let k = t.update_id;
    let want = expected(k.max(1));
    if k >= 1 && slot_of(k) == slot && *t == want {
        return Ok(k);
    }
    // Say which words disagree, and which publication each wrong value would belong to.
    let (mut got_w, mut want_w) = ([0u64; SLOT_WORDS - 1], [0u64; SLOT_WORDS - 1]);
    t.encode(&mut got_w);
    want.encode(&mut want_w);
    let diffs: Vec<String> = (0..SLOT_WORDS - 1)
        .filter(|&i| got_w[i] != want_w[i])
        .take(8)
        .map(|i| {
            format!(
                "word {}: {} (want {})",
                i + 1,
                got_w[i] as i64,
                want_w[i] as i64
            )
        })
        .collect();
    Err(format!(
        "TORN READ of slot {slot}: seq {} update_id {k} (slot of k: {}), seq want {}; {}",
        t.seq,
        slot_of(k.max(1)),
        want.seq,
        diffs.join(", ")
    ))
}

#[test]
fn invariant_detects_every_mix_of_two_publications() {
    // A copy made of the first `split` data words of one publication and the rest of
    // another (the shape of a torn read) must fail `check`, whichever sequence it reports.
    let data_words = hermes_shm::layout::slot::DATA_END - 1;
    for k in [1u64, 2, 3, 10, 33, 2_999_999] {
        let (mut a, mut b) = ([0u64; SLOT_WORDS - 1], [0u64; SLOT_WORDS - 1]);
        expected(k).encode(&mut a);
        expected(k + 2).encode(&mut b);
        for split in 1..data_words {
            for (first, second) in [(&a, &b), (&b, &a)] {
                let mut mixed = *first;
                mixed[split..].copy_from_slice(&second[split..]);
                for seq in [expected(k).seq, expected(k + 2).seq] {
                    let t = TopOfBook::decode(seq, &mixed);
                    assert!(
                        check(slot_of(k), &t).is_err(),
                        "k {k} split {split} seq {seq}"
                    );
                }
            }
        }
        // A single word of the other publication is caught too, wherever it is; the
        // derivatives words (57-62) differ in every pair of publications.
        let derivs = hermes_shm::layout::slot::MARK_PX..=hermes_shm::layout::slot::LIQUIDATIONS;
        for i in 0..data_words {
            let word = i + 1;
            if derivs.contains(&word) {
                assert_ne!(a[i], b[i], "k {k}: word {word} is the same in k and k+2");
            }
            if a[i] == b[i] {
                continue;
            }
            let mut mixed = a;
            mixed[i] = b[i];
            let t = TopOfBook::decode(expected(k).seq, &mixed);
            assert!(check(slot_of(k), &t).is_err(), "k {k} word {word}");
        }
        for j in [k, k + 2] {
            let e = expected(j);
            assert_eq!(check(slot_of(j), &e), Ok(j));
            assert!(check(1 - slot_of(j), &e).is_err(), "wrong slot");
        }
    }
}

/// What one reader saw.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    /// `try_read` attempts.
    reads: u64,
    /// Attempts that returned a consistent copy (each checked).
    consistent: u64,
    /// Times a slot's sequence changed between consistent copies.
    distinct: u64,
    /// `k` of the last copy of slots 0 and 1, read after the closed flag was seen.
    last: [u64; 2],
}

impl Stats {
    fn parse(line: &str) -> Option<Stats> {
        let rest = &line[line.find(RESULT)? + RESULT.len()..];
        let mut s = Stats::default();
        for kv in rest.split_whitespace() {
            let (key, val) = kv.split_once('=')?;
            let v: u64 = val.parse().ok()?;
            match key {
                "reads" => s.reads = v,
                "consistent" => s.consistent = v,
                "distinct" => s.distinct = v,
                "last0" => s.last[0] = v,
                "last1" => s.last[1] = v,
                _ => {}
            }
        }
        Some(s)
    }

    fn line(&self) -> String {
        format!(
            "{RESULT} reads={} consistent={} distinct={} last0={} last1={}",
            self.reads, self.consistent, self.distinct, self.last[0], self.last[1]
        )
    }
}

/// Reads both slots in turn until the writer has closed (then reads each once more, which
/// must give its final publication) or `deadline` passes; panics on a torn copy.
fn read_until_closed(reader: &ShmReader, deadline: Instant) -> Stats {
    let mut st = Stats::default();
    let mut last_seq = [u64::MAX; 2];
    let mut closed = false;
    loop {
        for slot in 0..2u32 {
            st.reads += 1;
            let Some(t) = reader.try_read(SlotIndex(slot)) else {
                assert!(!closed, "slot {slot} busy after the writer closed");
                continue;
            };
            st.consistent += 1;
            let k = check(slot, &t).unwrap_or_else(|e| panic!("{e}"));
            if t.seq != last_seq[slot as usize] {
                st.distinct += 1;
                last_seq[slot as usize] = t.seq;
            }
            st.last[slot as usize] = k;
        }
        if closed {
            return st;
        }
        if st.reads % 512 == 0 {
            // Acquire load of the closed flag (in `writer_status`) pairs with the writer's
            // release on drop: the next pass sees its final publications.
            closed = reader.writer_status(Duration::from_secs(3600)) == WriterStatus::Closed;
            assert!(
                closed || Instant::now() < deadline,
                "the writer did not close in time (reads so far: {st:?})"
            );
        }
    }
}

/// The reader process. A no-op unless the parent set [`ENV_PATH`].
#[test]
fn stress_child_reader() {
    let Some(path) = std::env::var_os(ENV_PATH) else {
        return;
    };
    let deadline = Instant::now() + CHILD_DEADLINE;
    // SAFETY: the parent test owns the file and never truncates it.
    let reader = unsafe { ShmReader::open(Path::new(&path)) }.expect("open the region");
    println!("{READY}");
    let st = read_until_closed(&reader, deadline);
    println!("{}", st.line());
}

/// Kills and reaps a reader process if the test fails before it exits.
struct ReaderProcess {
    name: &'static str,
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// Every stdout line, for failure messages.
    seen: Vec<String>,
    done: bool,
}

impl ReaderProcess {
    fn spawn(name: &'static str, mut cmd: Command) -> ReaderProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the {name} reader: {e}"));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Drained on a thread so a chatty child can never block on a full pipe.
        let mut err = child.stderr.take().unwrap();
        let stderr = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }));
        ReaderProcess {
            name,
            child,
            stdout,
            stderr,
            seen: Vec::new(),
            done: false,
        }
    }

    /// Reads stdout lines until one contains `marker`; `None` at end of output.
    fn line_with(&mut self, marker: &str) -> Option<String> {
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            self.seen.push(line.trim_end().to_string());
            if line.contains(marker) {
                return Some(line);
            }
        }
    }

    fn wait_ready(&mut self) {
        if self.line_with(READY).is_none() {
            let why = self.finish_output();
            panic!(
                "the {} reader exited before mapping the region:\n{why}",
                self.name
            );
        }
    }

    /// Waits for the process (bounded by its own deadline) and returns its output.
    fn finish_output(&mut self) -> String {
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        self.seen.extend(rest.lines().map(str::to_string));
        let status = self.child.wait().unwrap();
        self.done = true;
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        format!(
            "{} reader: {status}\n--- stdout\n{}\n--- stderr\n{err}",
            self.name,
            self.seen.join("\n")
        )
    }

    /// Waits for the result line and a successful exit.
    fn result(mut self) -> Stats {
        let line = self.line_with(RESULT);
        let out = self.finish_output();
        let status = self.child.try_wait().unwrap().expect("reaped");
        assert!(status.success(), "{out}");
        line.and_then(|l| Stats::parse(&l))
            .unwrap_or_else(|| panic!("no result line:\n{out}"))
    }
}

impl Drop for ReaderProcess {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The Python reader: checks the same invariant on every consistent copy it gets.
const PY_READER: &str = r#"
import sys, time
sys.path.insert(0, sys.argv[1])
import hermes_shm as h

def expected(k):
    seq = k + (k & 1)
    n = k % 11
    return h.TopOfBook(
        seq=seq, update_id=k, exch_ts_ns=3 * k, recv_ts_ns=3 * k + 1, publish_ts_ns=3 * k + 2,
        updates=seq // 2,
        flags=h.FLAG_HAS_BID | h.FLAG_HAS_ASK | (h.FLAG_STALE if k % 3 == 0 else 0)
        | (h.FLAG_HAS_DERIVS if k % 5 != 0 else 0),
        bid_levels=n, ask_levels=10 - n,
        bid_px=k, bid_qty=2 * k + 1, ask_px=k + 7, ask_qty=2 * k + 3,
        bids=tuple((k + i, 3 * k + i) for i in range(10)),
        asks=tuple((k + 7 + i, 5 * k + i) for i in range(10)),
        last_trade_px=-k, last_trade_qty=11 * k, last_trade_ts_ns=13 * k,
        last_trade_side=k % 3, trades=17 * k,
        mark_px=23 * k, index_px=23 * k + 1, funding_rate=-k, next_funding_ns=29 * k,
        derivs_ts_ns=31 * k, liquidations=37 * k,
        kernels=h.Kernels(
            time_ns=19 * k, price_decimals=k % 19, spread_ticks=k + 1, spread_bps_x100=k + 2,
            mid_px=k + 3, microprice_px=k + 4, bid_depth=k + 5, ask_depth=k + 6,
            imbalance_ppm=-k, vwap_buy_px=k + 8, vwap_sell_px=k + 9, volatility_bps=k * 0.5,
            trade_buy_qty=k + 10, trade_sell_qty=k + 11, trade_imbalance_ppm=k + 12,
            ofi_window=k + 13, ofi_total=-3 * k, updates_per_s_x100=k + 14, levels=k % 1000,
            vwap_qty=k + 15, vol_half_life_ns=k + 16, trade_window_ns=k + 17,
            rate_window_ns=k + 18))

shm = h.HermesShm(sys.argv[2])
print("HERMES-STRESS-READY", flush=True)
deadline = time.monotonic() + float(sys.argv[3])
reads = consistent = distinct = 0
last_seq = [None, None]
last = [0, 0]
closed = False
while True:
    for slot in (0, 1):
        reads += 1
        t = shm.try_read(slot)
        if t is None:
            if closed:
                sys.exit(f"slot {slot} busy after the writer closed")
            continue
        consistent += 1
        k = t.update_id
        want = expected(max(k, 1))
        if k < 1 or k % 2 != slot % 2 or t != want:
            bad = [f"{f}={a} (want {b})" for f, a, b in zip(t._fields, t, want) if a != b]
            sys.exit(f"TORN READ of slot {slot} in Python: update_id {k}: " + ", ".join(bad[:8]))
        if t.seq != last_seq[slot]:
            distinct += 1
            last_seq[slot] = t.seq
        last[slot] = k
    if closed:
        break
    if reads % 64 == 0:
        if shm.closed():
            closed = True  # one more pass: it must show the final publications
        elif time.monotonic() > deadline:
            last = [0, 0]  # stopped before the writer closed: no final values
            break
print(f"HERMES-STRESS-RESULT reads={reads} consistent={consistent} distinct={distinct} "
      f"last0={last[0]} last1={last[1]}", flush=True)
"#;

#[test]
fn no_torn_reads_across_threads_and_processes() {
    let dir = TempDir::new("stress");
    let path = dir.join("region");
    let mut writer = ShmWriter::create(
        &path,
        WriterOptions {
            slots: 2,
            group_readable: false,
            replace_foreign: false,
        },
    )
    .unwrap();
    for (i, sym) in ["EVEN", "ODD"].iter().enumerate() {
        let slot = writer.add_instrument(Venue::Webhook, sym, 0, 0).unwrap();
        assert_eq!(slot, SlotIndex(i as u32));
    }
    // Publications 1 and 2 before any reader starts, so no slot is ever unwritten.
    for k in 1..=2 {
        writer.publish(SlotIndex(slot_of(k)), &expected(k));
    }
    writer.heartbeat();

    // Reader processes first (they take the longest to start), then wait until each has
    // mapped the region so that all of them race the whole write phase.
    let mut child_cmd = Command::new(std::env::current_exe().unwrap());
    child_cmd
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV_PATH, &path);
    let mut child = ReaderProcess::spawn("child", child_cmd);
    let mut python = if require("python3", "the Python stress reader") {
        let mut cmd = Command::new("python3");
        // Importing from the source tree must not leave __pycache__ there.
        cmd.env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-c")
            .arg(PY_READER)
            .arg(crate_path("python"))
            .arg(&path)
            .arg(PYTHON_READ_SECS.to_string());
        Some(ReaderProcess::spawn("python", cmd))
    } else {
        None
    };
    child.wait_ready();
    if let Some(p) = python.as_mut() {
        p.wait_ready();
    }

    // SAFETY: this test owns the file and never truncates it.
    let reader = unsafe { ShmReader::open(&path) }.unwrap();
    let thread =
        std::thread::spawn(move || read_until_closed(&reader, Instant::now() + CHILD_DEADLINE));

    let t0 = Instant::now();
    let mut k = 2;
    while k < MAX_PUBLICATIONS + 2 {
        k += 1;
        writer.publish(SlotIndex(slot_of(k)), &expected(k));
        if k % 4096 == 0 {
            writer.heartbeat();
            if t0.elapsed() > WRITE_TIME {
                break;
            }
        }
    }
    let write_time = t0.elapsed();
    let publications = k;
    // The final publication of each slot: k and k-1.
    let mut last = [0u64; 2];
    last[slot_of(k) as usize] = k;
    last[slot_of(k - 1) as usize] = k - 1;
    drop(writer); // sets the closed flag (release)

    let in_thread = thread.join().expect("in-process reader");
    let in_child = child.result();
    let in_python = python.map(ReaderProcess::result);
    eprintln!(
        "writer: {publications} publications in {write_time:?}\n\
         thread: {in_thread:?}\nchild:  {in_child:?}\npython: {in_python:?}"
    );

    for (name, st) in [("thread", in_thread), ("child", in_child)] {
        assert_eq!(
            st.last, last,
            "{name}: final publications after the closed flag"
        );
        assert!(st.consistent >= 1_000, "{name} read too little: {st:?}");
        assert!(
            st.distinct >= 100,
            "{name} saw too few distinct publications to have raced the writer: {st:?}"
        );
    }
    if let Some(st) = in_python {
        assert!(st.consistent >= 100, "python read too little: {st:?}");
        assert!(st.distinct >= 10, "python saw too few publications: {st:?}");
        if st.last != [0, 0] {
            assert_eq!(
                st.last, last,
                "python: final publications after the closed flag"
            );
        }
    }
}
