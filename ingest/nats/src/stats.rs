//! Counters of the NATS roles, for logs, `/metrics` and `/health/readiness`. Every
//! atomic here is a statistic: written by the role's thread with `Relaxed`, read for
//! display; nothing synchronises on them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

fn hist() -> Mutex<Histogram<u64>> {
    // 1 µs to 1 h at 3 significant digits, in ns.
    Mutex::new(Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("valid bounds"))
}

/// `p50 X unit p99 Y unit` of a histogram of ns (`n/a` when empty).
fn p50_p99(h: &Mutex<Histogram<u64>>, per_unit: f64, unit: &str) -> String {
    h.lock()
        .map(|h| {
            if h.is_empty() {
                "n/a".to_string()
            } else {
                format!(
                    "p50 {:.2} {unit} p99 {:.2} {unit}",
                    h.value_at_quantile(0.5) as f64 / per_unit,
                    h.value_at_quantile(0.99) as f64 / per_unit
                )
            }
        })
        .unwrap_or_default()
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// Prometheus lines of a gauge or counter: `# TYPE` then the sample.
pub(crate) fn sample(out: &mut String, kind: &str, name: &str, v: impl std::fmt::Display) {
    let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {v}");
}

/// Prometheus lines of a histogram of ns as a summary in seconds.
fn summary(out: &mut String, name: &str, h: &Mutex<Histogram<u64>>) {
    if let Ok(h) = h.lock() {
        let _ = writeln!(out, "# TYPE {name} summary");
        for q in [0.5, 0.9, 0.99, 0.999] {
            let _ = writeln!(
                out,
                "{name}{{quantile=\"{q}\"}} {}",
                h.value_at_quantile(q) as f64 / 1e9
            );
        }
        let _ = writeln!(out, "{name}_count {}", h.len());
    }
}

/// The publisher's counters.
#[derive(Debug)]
pub struct PublishStats {
    /// Connected to a server (kept by the client's connection events).
    pub connected: Arc<AtomicBool>,
    /// The streams exist (created or found).
    pub streams_ready: AtomicBool,
    /// Holding the MD lease.
    pub lease_held: AtomicBool,
    /// The epoch of the lease held (or last held).
    pub epoch: AtomicU64,
    /// Lease acquisitions.
    pub lease_acquired: AtomicU64,
    /// Leases lost (a refresh refused or timed out).
    pub lease_lost: AtomicU64,
    /// RAW messages acknowledged (parts count one each).
    pub raw_acked: AtomicU64,
    /// MD messages acknowledged.
    pub md_acked: AtomicU64,
    /// SNAP messages acknowledged.
    pub snap_acked: AtomicU64,
    /// Acks saying "duplicate" (a resend the server had already stored).
    pub duplicates: AtomicU64,
    /// Publishes awaiting an ack now.
    pub inflight: AtomicU64,
    /// Messages sent again after an error.
    pub retries: AtomicU64,
    /// Publish errors seen.
    pub errors: AtomicU64,
    /// MD messages of an epoch no longer held, dropped from a resend.
    pub md_dropped: AtomicU64,
    /// MD resends refused because another publisher's message was last in the stream,
    /// sent again starting a new chain.
    pub chain_restarts: AtomicU64,
    /// Events the book thread could not hand over (the ring was full); the instruments
    /// were then re-sent whole.
    pub ring_dropped: AtomicU64,
    /// The last error, for readiness.
    pub last_error: Mutex<Option<String>>,
    /// Sent → acknowledged by JetStream, ns (every message).
    pub ack_ns: Mutex<Histogram<u64>>,
    /// Receive (by this run, at the socket) → acknowledged, ns (live RAW and MD).
    pub recv_ack_ns: Mutex<Histogram<u64>>,
}

impl Default for PublishStats {
    fn default() -> Self {
        PublishStats {
            connected: Arc::default(),
            streams_ready: AtomicBool::new(false),
            lease_held: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            lease_acquired: AtomicU64::new(0),
            lease_lost: AtomicU64::new(0),
            raw_acked: AtomicU64::new(0),
            md_acked: AtomicU64::new(0),
            snap_acked: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            md_dropped: AtomicU64::new(0),
            chain_restarts: AtomicU64::new(0),
            ring_dropped: AtomicU64::new(0),
            last_error: Mutex::new(None),
            ack_ns: hist(),
            recv_ack_ns: hist(),
        }
    }
}

impl PublishStats {
    pub(crate) fn add(a: &AtomicU64, n: u64) {
        add(a, n)
    }

    pub(crate) fn error(&self, e: impl std::fmt::Display) {
        add(&self.errors, 1);
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(e.to_string());
        }
    }

    /// `None` when ready, else why not.
    pub fn not_ready(&self) -> Option<String> {
        if !self.connected.load(Ordering::Relaxed) {
            return Some(format!(
                "NATS publisher not connected{}",
                self.last_error
                    .lock()
                    .ok()
                    .and_then(|l| l.clone())
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        if !self.streams_ready.load(Ordering::Relaxed) {
            return Some("NATS publisher: streams not created yet".into());
        }
        None
    }

    /// One line for logs.
    pub fn line(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let q = |h: &Mutex<Histogram<u64>>| p50_p99(h, 1e6, "ms");
        format!(
            "nats: {} RAW, {} MD, {} SNAP acked, {} duplicate acks, {} resent, {} errors, lease {} (epoch {}, acquired {}, lost {}), send → ack {}, receive → ack {}",
            l(&self.raw_acked),
            l(&self.md_acked),
            l(&self.snap_acked),
            l(&self.duplicates),
            l(&self.retries),
            l(&self.errors),
            if self.lease_held.load(Ordering::Relaxed) { "held" } else { "not held" },
            l(&self.epoch),
            l(&self.lease_acquired),
            l(&self.lease_lost),
            q(&self.ack_ns),
            q(&self.recv_ack_ns),
        )
    }

    /// Prometheus text lines.
    pub fn render(&self, out: &mut String) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let b = |a: &AtomicBool| u8::from(a.load(Ordering::Relaxed));
        sample(out, "gauge", "hermes_nats_connected", b(&self.connected));
        sample(out, "gauge", "hermes_nats_lease_held", b(&self.lease_held));
        sample(out, "gauge", "hermes_nats_epoch", l(&self.epoch));
        sample(out, "gauge", "hermes_nats_inflight", l(&self.inflight));
        for (name, a) in [
            ("raw_acked", &self.raw_acked),
            ("md_acked", &self.md_acked),
            ("snap_acked", &self.snap_acked),
            ("duplicate_acks", &self.duplicates),
            ("retries", &self.retries),
            ("errors", &self.errors),
            ("lease_acquired", &self.lease_acquired),
            ("lease_lost", &self.lease_lost),
            ("ring_dropped", &self.ring_dropped),
            ("md_dropped", &self.md_dropped),
            ("chain_restarts", &self.chain_restarts),
        ] {
            sample(out, "counter", &format!("hermes_nats_{name}_total"), l(a));
        }
        summary(out, "hermes_nats_publish_ack_seconds", &self.ack_ns);
        summary(out, "hermes_nats_receive_ack_seconds", &self.recv_ack_ns);
    }
}

/// The mirror's counters.
#[derive(Debug)]
pub struct MirrorStats {
    /// Connected to a server (kept by the client's connection events).
    pub connected: Arc<AtomicBool>,
    /// The SNAP and MD streams were found (a publisher has run) and the consumers made.
    pub following: AtomicBool,
    /// The newest epoch seen (the lease holder's).
    pub epoch: AtomicU64,
    /// MD messages in the stream after the last one delivered (the consumer's pending
    /// count): how far behind the mirror is.
    pub md_pending: AtomicU64,
    /// Instruments waiting for a SNAP (after a gap, an epoch change or an undecodable
    /// message), by `venue.SYMBOL` token, for readiness.
    pub unsynced: Mutex<Vec<String>>,
    /// MD messages applied.
    pub applied: AtomicU64,
    /// MD messages skipped: already in the SNAP loaded, or repeated.
    pub skipped: AtomicU64,
    /// MD messages of an older epoch, ignored.
    pub old_epoch: AtomicU64,
    /// Sequence gaps (the instrument went stale until the next SNAP).
    pub gaps: AtomicU64,
    /// SNAPs loaded.
    pub snaps: AtomicU64,
    /// Resyncs completed from a SNAP after a gap or an epoch change.
    pub resyncs: AtomicU64,
    /// Epoch changes seen.
    pub epoch_changes: AtomicU64,
    /// Messages that could not be decoded.
    pub bad: AtomicU64,
    /// Instruments synced now.
    pub synced: AtomicU64,
    /// Instruments known.
    pub instruments: AtomicU64,
    /// Exchange time → visible in this host's shm, ns.
    pub exch_visible_ns: Mutex<Histogram<u64>>,
    /// Receive time on the ingest host → visible in this host's shm, ns.
    pub recv_visible_ns: Mutex<Histogram<u64>>,
}

impl Default for MirrorStats {
    fn default() -> Self {
        MirrorStats {
            connected: Arc::default(),
            following: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            md_pending: AtomicU64::new(0),
            unsynced: Mutex::default(),
            applied: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            old_epoch: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            snaps: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            epoch_changes: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            instruments: AtomicU64::new(0),
            exch_visible_ns: hist(),
            recv_visible_ns: hist(),
        }
    }
}

impl MirrorStats {
    pub(crate) fn add(a: &AtomicU64, n: u64) {
        add(a, n)
    }

    /// One line for logs.
    pub fn line(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let q = |h: &Mutex<Histogram<u64>>| p50_p99(h, 1e3, "µs");
        format!(
            "mirror: {} MD applied, {} skipped, {} of an older epoch, {} SNAPs, {} gaps, {} resyncs, {} epoch changes, {} bad, {}/{} instruments synced; receive → visible {}; exchange → visible {}",
            l(&self.applied),
            l(&self.skipped),
            l(&self.old_epoch),
            l(&self.snaps),
            l(&self.gaps),
            l(&self.resyncs),
            l(&self.epoch_changes),
            l(&self.bad),
            l(&self.synced),
            l(&self.instruments),
            q(&self.recv_visible_ns),
            q(&self.exch_visible_ns),
        )
    }

    /// `None` when ready, else why not: not connected, no publisher's streams yet, no
    /// instrument loaded, instruments waiting for a SNAP, or more than `max_pending` MD
    /// messages behind.
    pub fn not_ready(&self, max_pending: u64) -> Option<String> {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut why = Vec::new();
        if !self.connected.load(Ordering::Relaxed) {
            why.push("mirror not connected to NATS".to_string());
        }
        if !self.following.load(Ordering::Relaxed) {
            why.push("mirror waiting for the publisher's SNAP and MD streams".into());
        } else if l(&self.instruments) == 0 {
            why.push("mirror has no instrument yet (no SNAP in the stream)".into());
        }
        if let Ok(u) = self.unsynced.lock() {
            if !u.is_empty() {
                let shown: Vec<&str> = u.iter().take(5).map(String::as_str).collect();
                why.push(format!(
                    "mirror: {} of {} instruments stale, waiting for a SNAP: {}{}",
                    u.len(),
                    l(&self.instruments),
                    shown.join(", "),
                    if u.len() > shown.len() { ", …" } else { "" }
                ));
            }
        }
        let pending = l(&self.md_pending);
        if pending > max_pending {
            why.push(format!(
                "mirror {pending} MD messages behind the stream (more than {max_pending})"
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Prometheus text lines.
    pub fn render(&self, out: &mut String) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let b = |a: &AtomicBool| u8::from(a.load(Ordering::Relaxed));
        sample(out, "gauge", "hermes_mirror_connected", b(&self.connected));
        sample(out, "gauge", "hermes_mirror_following", b(&self.following));
        sample(out, "gauge", "hermes_mirror_epoch", l(&self.epoch));
        sample(
            out,
            "gauge",
            "hermes_mirror_md_pending",
            l(&self.md_pending),
        );
        sample(
            out,
            "gauge",
            "hermes_mirror_instruments",
            l(&self.instruments),
        );
        sample(
            out,
            "gauge",
            "hermes_mirror_instruments_synced",
            l(&self.synced),
        );
        for (name, a) in [
            ("md_applied", &self.applied),
            ("md_skipped", &self.skipped),
            ("md_old_epoch", &self.old_epoch),
            ("snaps_loaded", &self.snaps),
            ("gaps", &self.gaps),
            ("resyncs", &self.resyncs),
            ("epoch_changes", &self.epoch_changes),
            ("bad_messages", &self.bad),
        ] {
            sample(out, "counter", &format!("hermes_mirror_{name}_total"), l(a));
        }
        summary(
            out,
            "hermes_mirror_receive_visible_seconds",
            &self.recv_visible_ns,
        );
        summary(
            out,
            "hermes_mirror_exchange_visible_seconds",
            &self.exch_visible_ns,
        );
    }
}
