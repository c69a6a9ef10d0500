//! `NatsArgs`: `--nats` and its settings on `run`, `record` and `replay`, mapped onto
//! [`hermes_nats::NatsOptions`].

use std::time::Duration;

use anyhow::Result;
use clap::Args;

/// Publishing to NATS JetStream.
#[derive(Args, Debug, Clone)]
pub struct NatsArgs {
    /// Publish to NATS JetStream: RAW (every journaled frame), and MD (normalized events)
    /// and SNAP (whole books) while holding the MD lease. Server URLs, comma-separated.
    #[arg(long, env = "HERMES_NATS_URL", value_name = "URL[,URL…]")]
    pub nats: Option<String>,
    /// This host's name in RAW subjects and message ids [default: the host name].
    #[arg(long, env = "HERMES_NATS_HOST")]
    pub nats_host: Option<String>,
    /// Streams `<PREFIX>_RAW`, `_MD`, `_SNAP` and the lease bucket `<PREFIX>_lease`.
    #[arg(long, default_value = "HERMES")]
    pub nats_stream_prefix: String,
    /// Subjects `<PREFIX>.raw.<host>.<venue>`, `.md.<venue>.<symbol>`, `.snap.…`.
    #[arg(long, default_value = "hermes")]
    pub nats_subject_prefix: String,
    /// Stream replicas (1, 3 or 5) [default: 3 with three or more URLs, else 1].
    #[arg(long)]
    pub nats_replicas: Option<usize>,
    /// A SNAP of each changing instrument at least this often, seconds...
    #[arg(long, default_value_t = 10.0)]
    pub nats_snap_secs: f64,
    /// ...or after this many of its MD messages.
    #[arg(long, default_value_t = 10_000)]
    pub nats_snap_msgs: u64,
    /// Publishes awaiting their ack, at most.
    #[arg(long, default_value_t = 1024)]
    pub nats_max_inflight: usize,
    /// The MD lease's time to live, milliseconds (a standby takes over within about this).
    #[arg(long, default_value_t = 3000)]
    pub nats_lease_ttl_ms: u64,
    /// Capacity of the book thread's ring to the publisher, in events (when it is full,
    /// events are dropped and every instrument is re-sent whole as a SNAP).
    #[arg(long, default_value_t = 1 << 20)]
    pub nats_ring_events: usize,
    /// Do not publish RAW.
    #[arg(long)]
    pub nats_no_raw: bool,
    /// Do not publish MD and SNAP (and take no lease).
    #[arg(long)]
    pub nats_no_md: bool,
}

impl NatsArgs {
    /// No publishing (the defaults, without `--nats`).
    pub fn off() -> NatsArgs {
        NatsArgs {
            nats: None,
            nats_host: None,
            nats_stream_prefix: "HERMES".into(),
            nats_subject_prefix: "hermes".into(),
            nats_replicas: None,
            nats_snap_secs: 10.0,
            nats_snap_msgs: 10_000,
            nats_max_inflight: 1024,
            nats_lease_ttl_ms: 3000,
            nats_ring_events: 1 << 20,
            nats_no_raw: false,
            nats_no_md: false,
        }
    }

    /// The options, when `--nats` is given.
    pub fn options(&self) -> Result<Option<hermes_nats::NatsOptions>> {
        let Some(urls) = &self.nats else {
            return Ok(None);
        };
        let mut o = hermes_nats::NatsOptions::new(urls.clone());
        if let Some(h) = &self.nats_host {
            o.host = h.clone();
        }
        o.stream_prefix = self.nats_stream_prefix.clone();
        o.subject_prefix = self.nats_subject_prefix.clone();
        if let Some(r) = self.nats_replicas {
            o.replicas = r;
        }
        if !(self.nats_snap_secs.is_finite() && self.nats_snap_secs > 0.0) {
            anyhow::bail!("--nats-snap-secs must be a positive number of seconds");
        }
        o.snap_every = Duration::from_secs_f64(self.nats_snap_secs);
        o.snap_every_msgs = self.nats_snap_msgs.max(1);
        o.max_inflight = self.nats_max_inflight.max(1);
        o.lease_ttl = Duration::from_millis(self.nats_lease_ttl_ms);
        o.ring_events = self.nats_ring_events.max(16);
        o.raw = !self.nats_no_raw;
        o.md = !self.nats_no_md;
        o.validate()?;
        Ok(Some(o))
    }
}
