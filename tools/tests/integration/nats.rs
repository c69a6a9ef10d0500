//! Beyond one host: `--nats` publishing and `hermes mirror`, against a real 3-node
//! `nats-server` cluster (JetStream, replicas 3) on loopback ports, started and stopped
//! by each test.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use hermes_nats::testing::{available_or_required, NatsCluster, Probe};

use crate::common::{generate, hermes, run_ok, shared_captures, wait_for, TempDir};

/// A background `hermes mirror`: stdout collected when it ends, stderr in a file (read
/// while it runs for its HTTP address).
struct Mirror {
    child: Child,
    log: std::path::PathBuf,
}

/// `hermes mirror --nats URLS --print-final --until-idle IDLE --shm SHM EXTRA…`.
fn mirror(dir: &TempDir, urls: &str, shm: &std::path::Path, idle: &str, extra: &[&str]) -> Mirror {
    let name = shm.file_name().unwrap().to_string_lossy();
    let log = dir.path(&format!("{name}.log"));
    let child = hermes()
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
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Mirror { child, log }
}

impl Mirror {
    /// `http://ADDR/` of a mirror started with `--http`, once it says it.
    fn http(&self) -> String {
        crate::common::address_in_log(&self.log, "mirror: HTTP on ")
    }
}

fn finish(m: Mirror) -> (Vec<String>, String) {
    let out = m.child.wait_with_output().unwrap();
    let stderr = std::fs::read_to_string(&m.log).unwrap_or_default();
    assert!(out.status.success(), "mirror failed: {stderr}");
    (lines(&out.stdout), stderr)
}

/// `GET BASE/PATH`, or `None` when nothing answers.
fn get(base: &str, path: &str) -> Option<(u16, String)> {
    crate::common::http_get(&format!("{base}{path}"), &[]).ok()
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

/// `replay FILE --print-final --no-pin --nats URLS --nats-host HOST EXTRA…` with the
/// journal `DIR/JOURNAL` and the shm file `DIR/HOST.shm`.
fn replay_cmd(
    dir: &TempDir,
    file: &std::path::Path,
    urls: &str,
    host: &str,
    journal: &str,
    extra: &[&str],
) -> std::process::Command {
    let mut c = hermes();
    c.arg("replay")
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
        .arg(dir.path(journal))
        .arg("--shm")
        .arg(dir.path(&format!("{host}.shm")));
    c
}

/// [`replay_cmd`] on the journal `journal-HOST`, run to its end: its books and stderr.
fn replay_nats(
    dir: &TempDir,
    file: &std::path::Path,
    urls: &str,
    host: &str,
    extra: &[&str],
) -> (Vec<String>, String) {
    let journal = format!("journal-{host}");
    let out = run_ok(&mut replay_cmd(dir, file, urls, host, &journal, extra));
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
    let m = mirror(&dir, &urls, &dir.path("mirror.shm"), "8", &[]);
    // Only two instruments, named by symbol and by venue:symbol.
    let some = mirror(
        &dir,
        &urls,
        &dir.path("some.shm"),
        "8",
        &["--symbols", "SYN1-USD,binance-usdm:SYN0USDT"],
    );
    // No periodic SNAP: the mirror's books come from MD after the first SNAPs.
    let (want, err) = replay_nats(&dir, &cap, &urls, "a", &["--nats-snap-msgs", "1000000"]);
    assert!(err.contains("nats: 12000 RAW"), "{err}");
    let (got, merr) = finish(m);
    assert!(!want.is_empty());
    assert_eq!(got, want, "{merr}\npublisher: {err}");
    assert!(merr.contains(" 0 gaps"), "{merr}");
    let (got, merr) = finish(some);
    let chosen: Vec<String> = want
        .iter()
        .filter(|l| {
            l.contains("\"symbol\":\"SYN1-USD\"")
                || (l.contains("\"venue\":\"binance-usdm\"")
                    && l.contains("\"symbol\":\"SYN0USDT\""))
        })
        .cloned()
        .collect();
    assert_eq!(chosen.len(), 2, "{want:?}");
    assert_eq!(got, chosen, "{merr}");
    let p = Probe::connect(&urls).unwrap();
    for (subject, seqs) in md_sequences(&p) {
        let epoch = seqs[0].0;
        let expect: Vec<(u64, u64)> = (1..=seqs.len() as u64).map(|s| (epoch, s)).collect();
        assert_eq!(seqs, expect, "{subject}");
    }
    assert_eq!(p.stream("HERMES_RAW").unwrap().0, 12_000);

    // A book deeper than the server's max_payload (1 MiB): its 3 MB snapshot frame is
    // split into RAW parts and into consecutive MD messages (staged until the commit);
    // the mirror still ends exact. Its SNAP cannot be split and is refused with a clear
    // error naming max_payload (the README says what to set).
    let big = generate(
        &dir,
        "big.hcap",
        &[
            "--venues",
            "coinbase",
            "--instruments",
            "1",
            "--depth",
            "40000",
            "--frames",
            "3000",
        ],
    );
    let prefixes = [
        "--nats-stream-prefix",
        "BIG",
        "--nats-subject-prefix",
        "big",
    ];
    let m = mirror(&dir, &urls, &dir.path("big-mirror.shm"), "8", &prefixes);
    let mut extra = prefixes.to_vec();
    extra.extend(["--nats-snap-msgs", "1000000"]);
    let (want, err) = replay_nats(&dir, &big, &urls, "big", &extra);
    assert!(err.contains("over the server's max_payload"), "{err}");
    let (got, merr) = finish(m);
    assert_eq!(got, want, "{merr}");
    let raw = p.stream("BIG_RAW").unwrap().0;
    assert!(raw > 3000, "the snapshot frame in parts: {raw} messages");

    // A publisher ring far too small for a replay at full speed: the book thread drops
    // events (it never waits), hands over every instrument whole, and the mirror resyncs
    // from those SNAPs to exact books.
    let prefixes = [
        "--nats-stream-prefix",
        "RING",
        "--nats-subject-prefix",
        "ring",
    ];
    let m = mirror(&dir, &urls, &dir.path("ring-mirror.shm"), "8", &prefixes);
    let mut extra = prefixes.to_vec();
    extra.extend([
        "--nats-snap-msgs",
        "1000000",
        "--nats-ring-events",
        "16",
        "--speed",
        "5x",
    ]);
    let (want, err) = replay_nats(&dir, &cap, &urls, "ring", &extra);
    assert!(err.contains("ring overflowed"), "{err}");
    let (got, merr) = finish(m);
    // (How many SNAPs it took, and whether MD flowed between overflows, depends on how
    // busy the machine is; the gap path itself is the deleted-message test's.)
    assert_eq!(got, want, "{merr}\npublisher: {err}");

    if let Some(shared) = shared_captures() {
        let real = shared.join("coinbase-exchange-legacy-10products-20210417.cryptofeed.txt");
        let m = mirror(&dir, &urls, &dir.path("mirror2.shm"), "8", &[]);
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
    let mut first = replay_cmd(
        &dir,
        &cap,
        &urls,
        "a",
        "journal-a",
        // No periodic SNAP (by count or time): the mirror must start before the hole.
        &[
            "--speed",
            "max",
            "--nats-snap-msgs",
            "1000000",
            "--nats-snap-secs",
            "100000",
        ],
    )
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
    // A message well inside what was published under the last epoch (a loaded machine
    // can cost the publisher its lease mid-run: a hole in an older epoch is ignored by
    // design, so it would show nothing).
    let msgs = p.messages("HERMES_MD", "hermes.md.>").unwrap();
    let epoch_of = |hd: &[(String, String)]| {
        hd.iter()
            .find(|(k, _)| k == "Hermes-Epoch")
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .unwrap()
    };
    let last = msgs.iter().map(|m| epoch_of(&m.2)).max().unwrap();
    let in_last: Vec<u64> = msgs
        .iter()
        .filter(|m| epoch_of(&m.2) == last)
        .map(|m| m.0)
        .collect();
    assert!(
        in_last.len() >= 100,
        "{} messages in epoch {last}",
        in_last.len()
    );
    p.delete("HERMES_MD", in_last[in_last.len() / 2]).unwrap();
    let mshm = dir.path("mirror.shm");
    let m = mirror(&dir, &urls, &mshm, "10", &["--http", "127.0.0.1:0"]);
    let base = m.http();
    // The mirror applies MD up to the hole and marks the instrument stale in its shm
    // file (read here by another process, as a strategy would).
    wait_for(
        "the mirror to mark the gap stale",
        Duration::from_secs(60),
        || {
            hermes()
                .args(["shm", "dump", "--json"])
                .arg(&mshm)
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"stale\":true"))
        },
    );
    // Its readiness says which instrument waits for a SNAP; /metrics counts the gap.
    let (status, body) = get(&base, "health/readiness").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("1 of 1 instruments stale, waiting for a SNAP: binance:SYN0USDT"),
        "{body}"
    );
    let (status, text) = get(&base, "metrics").unwrap();
    assert_eq!(status, 200);
    let mm = crate::common::parse_metrics(&text);
    assert_eq!(mm["hermes_mirror_connected"], 1.0, "{text}");
    assert!(mm["hermes_mirror_gaps_total"] >= 1.0, "{text}");
    assert_eq!(mm["hermes_mirror_instruments_synced"], 0.0, "{text}");
    assert!(mm.contains_key("hermes_shm_stale_books"), "{text}");
    // The killed publisher's lease expires (3 s); the next one takes it with a higher
    // epoch. (Started before that, it would be a standby until the end of its replay.)
    wait_for("the lease to expire", Duration::from_secs(30), || {
        p.stream("KV_HERMES_lease").is_some_and(|(n, _)| n == 0)
    });
    let (want, _) = replay_nats(&dir, &cap, &urls, "b", &["--nats-snap-msgs", "1000000"]);
    // Resynced from the new epoch's SNAP: ready (it stays up 10 s after the last message).
    wait_for("the mirror to be ready", Duration::from_secs(8), || {
        get(&base, "health/readiness").is_some_and(|(s, _)| s == 200)
    });
    let (_, text) = get(&base, "metrics").unwrap();
    let mm = crate::common::parse_metrics(&text);
    assert!(mm["hermes_mirror_resyncs_total"] >= 1.0, "{text}");
    assert!(mm["hermes_mirror_epoch"] >= 2.0, "{text}");
    assert_eq!(mm["hermes_mirror_instruments_synced"], 1.0, "{text}");
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

/// kill -9 of the MD stream's leader node while a replay publishes: publishes wait for
/// the new leader and are sent again in order; every RAW frame is stored once, and
/// every symbol's MD sequence is contiguous (nothing lost, nothing twice, no reorder).
#[test]
fn kill_9_of_the_stream_leader_mid_publish_loses_nothing() {
    if !available_or_required() {
        return;
    }
    let dir = TempDir::new("nats-leader");
    let mut cluster = NatsCluster::start(&dir.path("nats"), 3).unwrap();
    let urls = cluster.urls();
    let frames = 40_000u64;
    let cap = generate(
        &dir,
        "g.hcap",
        &[
            "--venues",
            "coinbase,binance",
            "--frames",
            &frames.to_string(),
        ],
    );
    let publisher = replay_cmd(&dir, &cap, &urls, "a", "journal-a", &["--speed", "max"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let p = Probe::connect(&urls).unwrap();
    let mut leader = String::new();
    wait_for(
        "the first MD messages",
        Duration::from_secs(60),
        || match p.stream("HERMES_MD") {
            Some((n, l)) if n >= 2_000 && !l.is_empty() => {
                leader = l;
                true
            }
            _ => false,
        },
    );
    let k = cluster.index_of(&leader).expect("a node of the cluster");
    cluster.kill(k);
    let out = publisher.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    cluster.restart(k).unwrap();
    let want = lines(&out.stdout);
    let p = Probe::connect(&urls).unwrap();
    assert_eq!(p.stream("HERMES_RAW").unwrap().0, frames, "{err}");
    let seqs = md_sequences(&p);
    assert!(!seqs.is_empty());
    for (subject, seqs) in seqs {
        // The election may cost the lease (its bucket has a leader too): MD then goes on
        // under a higher epoch, from 1 again. Within an epoch: 1, 2, 3, … in order.
        let mut prev: Option<(u64, u64)> = None;
        for &(e, s) in &seqs {
            match prev {
                Some((pe, ps)) if pe == e => assert_eq!(s, ps + 1, "{subject} epoch {e}: {err}"),
                Some((pe, _)) => assert!(e > pe && s == 1, "{subject}: {pe} then {e}:{s}: {err}"),
                None => assert_eq!(s, 1, "{subject}: {err}"),
            }
            prev = Some((e, s));
        }
    }
    // And a mirror started afterwards has the same books (from the final SNAPs).
    let (got, merr) = finish(mirror(&dir, &urls, &dir.path("m.shm"), "4", &[]));
    assert_eq!(got, want, "{merr}");
}

/// Two ingest hosts on one feed: both publish RAW, the lease holder MD and SNAP. kill -9
/// of the holder: the standby takes the lease with a higher epoch, publishes SNAPs first,
/// and the mirror ends with the books of the feed.
#[test]
fn kill_9_of_the_lease_holder_hands_over_and_the_mirror_ends_exact() {
    if !available_or_required() {
        return;
    }
    let dir = TempDir::new("nats-lease");
    let cluster = NatsCluster::start(&dir.path("nats"), 3).unwrap();
    let urls = cluster.urls();
    let cap = generate(
        &dir,
        "g.hcap",
        &["--venues", "coinbase", "--frames", "15000"],
    );
    let sim = crate::common::Sim::start(&[
        "--venue",
        "coinbase",
        "--capture",
        cap.to_str().unwrap(),
        "--rate",
        "3000",
    ]);
    let host = |name: &str| {
        hermes()
            .arg("run")
            .args([
                "--until-idle",
                "2",
                "--duration",
                "120",
                "--no-pin",
                "--no-http",
                "--print-final",
            ])
            .args([
                "--nats",
                &urls,
                "--nats-host",
                name,
                "--nats-lease-ttl-ms",
                "1000",
                "--journal",
            ])
            .arg(dir.path(&format!("journal-{name}")))
            .arg("--shm")
            .arg(dir.path(&format!("{name}.shm")))
            .env("COINBASE_WS_URL", &sim.url)
            .env("COINBASE_PRODUCTS", "SYN0-USD,SYN1-USD,SYN2-USD")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let p = Probe::connect(&urls).unwrap();
    let m = mirror(
        &dir,
        &urls,
        &dir.path("mirror.shm"),
        "15",
        &["--http", "127.0.0.1:0"],
    );
    let base = m.http();
    let epoch = || -> f64 {
        get(&base, "metrics")
            .map(|(_, t)| crate::common::parse_metrics(&t)["hermes_mirror_epoch"])
            .unwrap_or(0.0)
    };
    let mut a = host("a");
    // a holds the lease once its MD arrives; then the standby starts.
    wait_for("host a's MD", Duration::from_secs(60), || {
        p.stream("HERMES_MD").is_some_and(|(n, _)| n >= 50)
    });
    let b = host("b");
    wait_for("host b's RAW", Duration::from_secs(60), || {
        p.count("HERMES_RAW", "hermes.raw.b.>") >= 1
    });
    let first = epoch();
    assert!(first >= 1.0, "the mirror follows host a's epoch");
    a.kill().unwrap();
    let killed = std::time::Instant::now();
    a.wait().unwrap();
    // The handover is bounded: the lease's TTL (1 s) for it to expire, a third of it for
    // the standby to try, its SNAPs; the mirror sees the new epoch well within 10 s.
    wait_for(
        "the mirror to follow host b's epoch",
        Duration::from_secs(10),
        || epoch() > first,
    );
    eprintln!(
        "kill_9_of_the_lease_holder: the mirror followed the new epoch {:.2} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let out = b.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("took the MD lease"), "{err}");
    let (got, merr) = finish(m);
    // The books (levels and stale flag) of the standby, which ingested the whole feed.
    let books = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|l| {
                let j: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{} {} {} {}", j["symbol"], j["bids"], j["asks"], j["stale"])
            })
            .collect()
    };
    assert_eq!(
        books(&got),
        books(&lines(&out.stdout)),
        "{merr}\nhost b: {err}"
    );
    assert!(merr.contains(" 0 bad"), "{merr}");
    let epochs = |what: &str| merr.contains(what);
    assert!(
        epochs("epoch changes") && !merr.contains(" 0 epoch changes"),
        "{merr}"
    );
    // Both hosts' RAW is in the stream.
    assert!(p.count("HERMES_RAW", "hermes.raw.a.>") > 0);
}

/// RAW after kill -9 of the publisher: the next run on the same journal and host sends
/// the rest of the old segment and then its own, resuming at the last message's
/// `Hermes-Acked-Through` (what was in flight then is all that is sent twice, and the
/// server's dedupe drops it): every frame of both inputs stored once.
#[test]
fn raw_resumes_after_kill_9_from_the_last_acknowledged_position() {
    if !available_or_required() {
        return;
    }
    let dir = TempDir::new("nats-resume");
    let cluster = NatsCluster::start(&dir.path("nats"), 3).unwrap();
    let urls = cluster.urls();
    let first = generate(
        &dir,
        "first.hcap",
        &["--venues", "coinbase,binance", "--frames", "30000"],
    );
    let second = generate(
        &dir,
        "second.hcap",
        &["--venues", "binance", "--frames", "2000", "--seed", "9"],
    );
    let mut a = replay_cmd(
        &dir,
        &first,
        &urls,
        "a",
        "journal-a",
        &["--nats-no-md", "--nats-max-inflight", "4"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let p = Probe::connect(&urls).unwrap();
    wait_for("some RAW", Duration::from_secs(60), || {
        p.stream("HERMES_RAW").is_some_and(|(n, _)| n >= 3_000)
    });
    a.kill().unwrap();
    a.wait().unwrap();
    let before = p.stream("HERMES_RAW").unwrap().0;
    assert!(
        before < 30_000,
        "the kill came too late to test anything: {before}"
    );
    // The same host on the same journal: the rest of the killed run's segment, then its own.
    let out = run_ok(&mut replay_cmd(
        &dir,
        &second,
        &urls,
        "a",
        "journal-a",
        &["--nats-no-md"],
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resuming after segment 1 byte"), "{err}");
    assert_eq!(p.stream("HERMES_RAW").unwrap().0, 32_000, "{err}");
    // The same host name on another journal: its positions mean nothing there; it
    // publishes that journal from its start, under ids of its own segments.
    let out = run_ok(&mut replay_cmd(
        &dir,
        &second,
        &urls,
        "a",
        "journal-new",
        &["--nats-no-md"],
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("which this journal"), "{err}");
    assert_eq!(p.stream("HERMES_RAW").unwrap().0, 34_000, "{err}");
}
