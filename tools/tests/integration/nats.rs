//! Beyond one host: `--nats` publishing and `hermes mirror`, against a real 3-node
//! `nats-server` cluster (JetStream, replicas 3) on loopback ports, started and stopped
//! by each test.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use hermes_nats::testing::{available_or_required, NatsCluster, Probe};

use crate::common::{generate, hermes, run_ok, shared_captures, wait_for, TempDir};

/// A background `hermes mirror`, its output collected when it ends.
fn mirror(urls: &str, shm: &std::path::Path, idle: &str) -> Child {
    hermes()
        .args([
            "mirror",
            "--nats",
            urls,
            "--print-final",
            "--until-idle",
            idle,
            "--shm",
        ])
        .arg(shm)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (Vec<String>, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mirror failed: {stderr}");
    (lines(&out.stdout), stderr)
}

fn lines(b: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(b)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// `replay FILE --print-final` publishing to `urls` as host `host`.
fn replay_nats(
    dir: &TempDir,
    file: &std::path::Path,
    urls: &str,
    host: &str,
    extra: &[&str],
) -> (Vec<String>, String) {
    let out = run_ok(
        hermes()
            .arg("replay")
            .arg(file)
            .args([
                "--print-final",
                "--no-pin",
                "--nats",
                urls,
                "--nats-host",
                host,
            ])
            .args(extra)
            .arg("--journal")
            .arg(dir.path(&format!("journal-{host}")))
            .arg("--shm")
            .arg(dir.path(&format!("{host}.shm"))),
    );
    (
        lines(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Per MD subject, the (epoch, seq) of every message, in stream order.
fn md_sequences(p: &Probe) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut by: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for (_, subject, hd, _) in p.messages("HERMES_MD", "hermes.md.>").unwrap() {
        let get = |k: &str| {
            hd.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.parse::<u64>().unwrap())
                .unwrap()
        };
        by.entry(subject)
            .or_default()
            .push((get("Hermes-Epoch"), get("Hermes-Seq")));
    }
    by
}

/// A mirror started before the publisher ends with exactly the publisher's books (the
/// JSON of `--print-final`, kernels included), from MD; every symbol's MD sequence is
/// contiguous from 1 and RAW holds every frame once. With the shared captures: the same
/// on a real recording.
#[test]
fn a_mirror_ends_with_the_publishers_books() {
    if !available_or_required() {
        return;
    }
    let dir = TempDir::new("nats-mirror");
    let cluster = NatsCluster::start(&dir.path("nats"), 3).unwrap();
    let urls = cluster.urls();
    let cap = generate(
        &dir,
        "g.hcap",
        &["--venues", "coinbase,binance-usdm", "--frames", "12000"],
    );
    let m = mirror(&urls, &dir.path("mirror.shm"), "4");
    // No periodic SNAP: the mirror's books come from MD after the first SNAPs.
    let (want, err) = replay_nats(&dir, &cap, &urls, "a", &["--nats-snap-msgs", "1000000"]);
    assert!(err.contains("nats: 12000 RAW"), "{err}");
    let (got, merr) = finish(m);
    assert!(!want.is_empty());
    assert_eq!(got, want, "{merr}\npublisher: {err}");
    assert!(merr.contains(" 0 gaps"), "{merr}");
    let p = Probe::connect(&urls).unwrap();
    for (subject, seqs) in md_sequences(&p) {
        let epoch = seqs[0].0;
        let expect: Vec<(u64, u64)> = (1..=seqs.len() as u64).map(|s| (epoch, s)).collect();
        assert_eq!(seqs, expect, "{subject}");
    }
    assert_eq!(p.stream("HERMES_RAW").unwrap().0, 12_000);

    if let Some(shared) = shared_captures() {
        let real = shared.join("coinbase-exchange-legacy-10products-20210417.cryptofeed.txt");
        let m = mirror(&urls, &dir.path("mirror2.shm"), "4");
        let (want, _) = replay_nats(&dir, &real, &urls, "b", &["--nats-snap-msgs", "1000000"]);
        let (got, merr) = finish(m);
        // The mirror follows every instrument of the streams; these are the recording's.
        let got: Vec<String> = got
            .into_iter()
            .filter(|l| l.contains("\"venue\":\"coinbase-exchange\""))
            .collect();
        assert_eq!(got.len(), 10, "{merr}");
        assert_eq!(got, want, "{merr}");
    }
}

/// kill -9 of the publisher mid-run, one MD message deleted from the stream: a mirror
/// started then applies MD up to the hole, marks the instrument stale, and resyncs from
/// the SNAPs of the next publisher (a new epoch) to exactly its books.
#[test]
fn a_deleted_md_message_is_a_gap_and_the_mirror_resyncs_exactly() {
    if !available_or_required() {
        return;
    }
    let dir = TempDir::new("nats-gap");
    let cluster = NatsCluster::start(&dir.path("nats"), 3).unwrap();
    let urls = cluster.urls();
    let cap = generate(
        &dir,
        "g.hcap",
        &[
            "--venues",
            "binance",
            "--frames",
            "60000",
            "--instruments",
            "1",
        ],
    );
    let mut first = hermes()
        .arg("replay")
        .arg(&cap)
        .args([
            "--no-pin",
            "--speed",
            "max",
            "--nats",
            &urls,
            "--nats-host",
            "a",
            "--nats-snap-msgs",
            "1000000",
            "--journal",
        ])
        .arg(dir.path("journal-a"))
        .arg("--shm")
        .arg(dir.path("a.shm"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Probe::connect(&urls).unwrap();
    wait_for("MD messages", Duration::from_secs(60), || {
        p.stream("HERMES_MD").is_some_and(|(n, _)| n >= 3000)
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let (n, _) = p.stream("HERMES_MD").unwrap();
    // A message well inside what was published.
    p.delete("HERMES_MD", n / 2).unwrap();
    let m = mirror(&urls, &dir.path("mirror.shm"), "10");
    // The killed publisher's lease expires (3 s); the next one takes it with a higher
    // epoch. (Started before that, it would be a standby until the end of its replay.)
    wait_for("the lease to expire", Duration::from_secs(30), || {
        p.stream("KV_HERMES_lease").is_some_and(|(n, _)| n == 0)
    });
    let (want, _) = replay_nats(&dir, &cap, &urls, "b", &["--nats-snap-msgs", "1000000"]);
    let (got, merr) = finish(m);
    assert_eq!(got, want, "{merr}");
    let count = |what: &str| -> u64 {
        let i = merr.find(what).unwrap_or_else(|| panic!("{what}: {merr}"));
        merr[..i]
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_start_matches(',')
            .parse()
            .unwrap()
    };
    assert!(count(" gaps") >= 1, "{merr}");
    assert!(count(" epoch changes") >= 1, "{merr}");
}
