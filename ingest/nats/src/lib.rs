//! # hermes-nats
//!
//! Hermes beyond one host, on NATS JetStream (Raft-replicated streams, dedupe by message
//! id, replay from any sequence, a key-value store). The shm file stays each host's hot
//! path; JetStream carries what crosses hosts:
//!
//! ```text
//!  ingest host ─ journal ─► RAW  <p>.raw.<host>.<venue>    every journaled frame, id <host>:<segment name>:<offset>
//!     │ book thread ──────► MD   <p>.md.<venue>.<symbol>    normalized events (hermes_book::wire), per-symbol seq + epoch
//!     │  (lease holder)  └─► SNAP <p>.snap.<venue>.<symbol>  the whole instrument (hermes_book::checkpoint), one kept per subject
//!     └ KV <bucket>/md: the lease that says which host publishes MD and SNAP
//!
//!  strategy host: `hermes mirror` ─ last SNAP + MD after it ─► Market ─► local shm file
//!  persister host: `hermes persist --nats` ─ RAW from the committed offset ─► PostgreSQL
//! ```
//!
//! * [`NatsOptions`]: URLs, stream and subject prefixes, host name, replicas, SNAP
//!   cadence, in-flight acks, lease TTL.
//! * [`publish::start`]: the publisher thread ([`publish::BusTap`] on the book thread feeds
//!   it through a ring and never blocks; RAW follows the journal as one more reader).
//! * [`mirror::run`]: loads the latest SNAPs, follows MD, applies it through the same
//!   [`Market`](hermes_book::Market) into a local shm file.
//! * [`persist::run`]: the persister as a JetStream consumer of RAW: the journal
//!   persister's rows, exactly once (the stream offset commits with the rows).
//! * [`testing`]: real `nats-server` clusters for tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub mod headers;
pub mod mirror;
pub mod persist;
pub mod publish;
pub mod stats;
#[doc(hidden)]
pub mod testing;

pub use stats::{MirrorStats, PublishStats};

/// Where and how to publish.
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// Server URLs, comma-separated (`nats://a:4222,nats://b:4222`).
    pub urls: String,
    /// Stream names are `<prefix>_RAW`, `<prefix>_MD`, `<prefix>_SNAP`; the lease bucket
    /// is `<prefix>_lease`.
    pub stream_prefix: String,
    /// Subjects are `<prefix>.raw.…`, `<prefix>.md.…`, `<prefix>.snap.…`.
    pub subject_prefix: String,
    /// This host's name in RAW subjects and message ids.
    pub host: String,
    /// Stream replicas (1, 3 or 5; at most the cluster's size).
    pub replicas: usize,
    /// A SNAP of an instrument at least this often while it changes...
    pub snap_every: Duration,
    /// ...or after this many MD messages of it.
    pub snap_every_msgs: u64,
    /// Publishes awaiting their ack, at most (per publisher: RAW and MD each).
    pub max_inflight: usize,
    /// The MD lease's time to live (the KV bucket's max age); refreshed every third.
    pub lease_ttl: Duration,
    /// Publish RAW (every journaled frame).
    pub raw: bool,
    /// Publish MD and SNAP when holding the lease.
    pub md: bool,
    /// How long RAW messages are kept.
    pub raw_max_age: Duration,
    /// How long MD messages are kept.
    pub md_max_age: Duration,
    /// Capacity of the book thread's ring to the publisher, in events.
    pub ring_events: usize,
}

impl NatsOptions {
    /// Defaults for `urls`: prefixes `HERMES`/`hermes`, this machine's host name, replicas
    /// 3 when three or more URLs are given (else 1), a SNAP every 10 s or 10,000 MD
    /// messages, 1,024 acks in flight, a 3 s lease, RAW kept 7 days and MD 1 day.
    pub fn new(urls: impl Into<String>) -> NatsOptions {
        let urls = urls.into();
        let n = urls.split(',').filter(|u| !u.trim().is_empty()).count();
        NatsOptions {
            urls,
            stream_prefix: "HERMES".into(),
            subject_prefix: "hermes".into(),
            host: hostname(),
            replicas: if n >= 3 { 3 } else { 1 },
            snap_every: Duration::from_secs(10),
            snap_every_msgs: 10_000,
            max_inflight: 1024,
            lease_ttl: Duration::from_secs(3),
            raw: true,
            md: true,
            raw_max_age: Duration::from_secs(7 * 86_400),
            md_max_age: Duration::from_secs(86_400),
            ring_events: 1 << 20,
        }
    }

    /// Checks names: tokens must be non-empty and free of `.`, `*`, `>` and whitespace.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (what, v) in [
            ("--nats-host", &self.host),
            ("--nats-subject-prefix", &self.subject_prefix),
            ("--nats-stream-prefix", &self.stream_prefix),
        ] {
            if v.is_empty()
                || v.chars()
                    .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace())
            {
                anyhow::bail!(
                    "{what} {v:?} must be a non-empty NATS token: no '.', '*', '>' or spaces"
                );
            }
        }
        if !self
            .stream_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            anyhow::bail!(
                "--nats-stream-prefix {:?}: use letters, digits, '_' or '-' (stream and bucket names)",
                self.stream_prefix
            );
        }
        if !matches!(self.replicas, 1 | 3 | 5) {
            anyhow::bail!("--nats-replicas {}: use 1, 3 or 5", self.replicas);
        }
        if self.urls.split(',').all(|u| u.trim().is_empty()) {
            anyhow::bail!("--nats: no server URL given (e.g. nats://127.0.0.1:4222)");
        }
        if self.lease_ttl < Duration::from_millis(300) {
            anyhow::bail!("--nats-lease-ttl must be at least 300ms");
        }
        Ok(())
    }

    /// The RAW, MD and SNAP stream names.
    pub fn stream(&self, kind: Kind) -> String {
        format!("{}_{}", self.stream_prefix, kind.upper())
    }

    /// The lease bucket.
    pub fn lease_bucket(&self) -> String {
        format!("{}_lease", self.stream_prefix)
    }

    /// `<prefix>.raw.<host>.<venue>`.
    pub fn raw_subject(&self, venue: hermes_book::Venue) -> String {
        format!("{}.raw.{}.{}", self.subject_prefix, self.host, venue.name())
    }

    /// `<prefix>.md.<venue>.<symbol>` or `<prefix>.snap.<venue>.<symbol>`.
    pub fn subject(&self, kind: Kind, venue: hermes_book::Venue, symbol: &str) -> String {
        format!(
            "{}.{}.{}.{}",
            self.subject_prefix,
            kind.lower(),
            venue.name(),
            symbol_token(symbol)
        )
    }
}

/// The three streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every journaled frame.
    Raw,
    /// Normalized events.
    Md,
    /// Whole instruments.
    Snap,
}

impl Kind {
    fn lower(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Md => "md",
            Kind::Snap => "snap",
        }
    }
    fn upper(self) -> &'static str {
        match self {
            Kind::Raw => "RAW",
            Kind::Md => "MD",
            Kind::Snap => "SNAP",
        }
    }
}

/// A symbol as one subject token: bytes outside `[A-Za-z0-9_-]` as `%XX` (so `.` never
/// splits a token, and `*`/`>` never act as wildcards). `BTC-USD` and `BTCUSDT` are
/// unchanged.
pub fn symbol_token(symbol: &str) -> String {
    let mut s = String::with_capacity(symbol.len());
    for b in symbol.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The inverse of [`symbol_token`].
pub fn token_symbol(token: &str) -> Option<String> {
    let b = token.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut k = 0;
    while k < b.len() {
        if b[k] == b'%' {
            let h = token.get(k + 1..k + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            k += 3;
        } else {
            out.push(b[k]);
            k += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// This machine's host name as a subject token.
pub fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let t: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() {
        "host".into()
    } else {
        t
    }
}

/// Connects to the servers (every URL is a seed; the client follows the cluster).
pub async fn connect(opts: &NatsOptions) -> anyhow::Result<async_nats::Client> {
    connect_watched(opts, Arc::default()).await
}

/// [`connect`], keeping `up` true while the client is connected to a server and false
/// while it is reconnecting (for readiness and `/metrics`).
pub async fn connect_watched(
    opts: &NatsOptions,
    up: Arc<AtomicBool>,
) -> anyhow::Result<async_nats::Client> {
    let urls: Vec<async_nats::ServerAddr> = opts
        .urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse()
                .map_err(|e| anyhow::anyhow!("--nats: {u:?} is not a NATS URL: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let events = up.clone();
    let client = async_nats::ConnectOptions::new()
        .name(format!("hermes {}", opts.host))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            // Relaxed: a reported state; nothing is handed over with it.
            match event {
                async_nats::Event::Connected => events.store(true, Ordering::Relaxed),
                async_nats::Event::Disconnected | async_nats::Event::Closed => {
                    events.store(false, Ordering::Relaxed)
                }
                _ => {}
            }
            std::future::ready(())
        })
        .connect(urls)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to NATS at {}: {e}", opts.urls))?;
    // The first connection raises `Connected` too (with `retry_on_initial_connect` it may
    // come after this returns).
    Ok(client)
}

/// A JetStream context. The publisher bounds its in-flight acks itself (RAW and MD each
/// `max_inflight`); the context's own limit is set above their sum, since a publish
/// waiting for the context's permit would hold the task that must poll the acks that
/// free one (a deadlock).
pub fn jetstream(client: async_nats::Client, opts: &NatsOptions) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        // A publish into a stream electing its leader gets no answer: give up on the ack
        // after 3 s and send again (in order, same id) rather than wait the default 30 s.
        .ack_timeout(Duration::from_secs(3))
        .max_ack_inflight(opts.max_inflight.max(1) * 2 + 64)
        .build(client)
}

/// Creates the three streams (or updates them to these settings), retrying while the
/// cluster elects leaders.
pub async fn ensure_streams(
    js: &async_nats::jetstream::Context,
    opts: &NatsOptions,
) -> anyhow::Result<()> {
    use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
    let base = |kind: Kind| Config {
        name: opts.stream(kind),
        subjects: vec![format!("{}.{}.>", opts.subject_prefix, kind.lower())],
        num_replicas: opts.replicas,
        storage: StorageType::File,
        allow_direct: true,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let raw = Config {
        max_age: opts.raw_max_age,
        ..base(Kind::Raw)
    };
    let md = Config {
        max_age: opts.md_max_age,
        ..base(Kind::Md)
    };
    let snap = Config {
        max_messages_per_subject: 1,
        discard: DiscardPolicy::Old,
        ..base(Kind::Snap)
    };
    for cfg in [raw, md, snap] {
        retry(&format!("creating stream {}", cfg.name), || async {
            match js.get_stream(&cfg.name).await {
                Ok(_) => Ok(()),
                Err(_) => js
                    .create_stream(cfg.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| anyhow::anyhow!("{e}")),
            }
        })
        .await?;
    }
    Ok(())
}

/// Messages per pull request of an ordered consumer: what a client may have to buffer is
/// this many of the server's largest messages, so at most 64 MiB of them (64 with the
/// default 1 MB `max_payload`, 16 with 8 MB), and never more than the client's own 500.
pub fn pull_batch(max_payload: usize) -> i64 {
    ((64usize << 20) / max_payload.max(1)).clamp(16, 500) as i64
}

/// An ordered consumer's settings (ephemeral, no acks, recreated by the client on a gap)
/// on `filter` from `policy`, its pulls bounded by [`pull_batch`] of the server's
/// `max_payload`.
pub fn ordered_config(
    filter: String,
    policy: async_nats::jetstream::consumer::DeliverPolicy,
    max_payload: usize,
) -> async_nats::jetstream::consumer::pull::OrderedConfig {
    async_nats::jetstream::consumer::pull::OrderedConfig {
        filter_subject: filter,
        deliver_policy: policy,
        max_batch: pull_batch(max_payload),
        ..Default::default()
    }
}

/// The messages of an ordered consumer of `stream` (see [`ordered_config`]).
pub async fn ordered(
    stream: &async_nats::jetstream::stream::Stream,
    filter: String,
    policy: async_nats::jetstream::consumer::DeliverPolicy,
    max_payload: usize,
) -> anyhow::Result<async_nats::jetstream::consumer::pull::Ordered> {
    stream
        .create_consumer(ordered_config(filter, policy, max_payload))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Retries `f` for up to 30 s (leader elections take a few seconds), then fails with
/// the last error.
pub async fn retry<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut wait = Duration::from_millis(50);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("{what}: {e} (gave up after 30 s)")
            }
            Err(e) => {
                tracing::debug!("{what}: {e}; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_batches_hold_at_most_64_mib_of_the_largest_messages() {
        assert_eq!(pull_batch(1 << 20), 64);
        assert_eq!(pull_batch(8 << 20), 16);
        assert_eq!(pull_batch(64 << 20), 16);
        assert_eq!(pull_batch(64 << 10), 500);
        assert_eq!(pull_batch(0), 500);
    }

    /// The server keeps the consumer's `max_batch`, which caps the client's pulls (a
    /// server that dropped it would leave them at 500 messages, silently).
    #[test]
    fn a_real_server_keeps_the_ordered_consumers_max_batch() {
        if !testing::available_or_required() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("hermes-nats-batch-{}", std::process::id()));
        let cluster = testing::NatsCluster::start(&dir, 1).unwrap();
        let opts = NatsOptions::new(cluster.urls());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let client = connect(&opts).await.unwrap();
            let js = jetstream(client.clone(), &opts);
            ensure_streams(&js, &opts).await.unwrap();
            let stream = js.get_stream(opts.stream(Kind::Md)).await.unwrap();
            let max_payload = client.server_info().max_payload;
            assert_eq!(max_payload, 1 << 20, "the server's default");
            let c = stream
                .create_consumer(ordered_config(
                    "hermes.md.>".into(),
                    Default::default(),
                    max_payload,
                ))
                .await
                .unwrap();
            c.cached_info().config.max_batch
        });
        assert_eq!(got, 64);
        drop(cluster);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
