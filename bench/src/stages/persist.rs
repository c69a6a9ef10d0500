//! persist: rows/s into a real, private PostgreSQL (`hermes_persist::local_pg`) for
//! binary COPY (the persister's encoder, `copy::CopyBuffer` + `copy::copy_batch`) against
//! text COPY, multi-row INSERT and row-by-row INSERT of the same rows into the same
//! table; the latency of a batch flush; and the persister's catch-up rate after an
//! outage against its rate with the database up.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hermes_book::clock::rfc3339;
use hermes_book::Decimal;
use hermes_ingest::FrameTap;
use hermes_persist::copy::{copy_batch, CopyBuffer};
use hermes_persist::local_pg::{self, LocalPg, StartOptions};
use hermes_persist::{PersistOptions, PersistStats};
use hermes_sim::synth::Rng;

use super::Config;
use crate::frames;
use crate::report::{Figure, Metric, Stage};
use crate::util::{figure, hist, rec};

const TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_trades (
    venue smallint NOT NULL, symbol text NOT NULL, trade_id bigint NOT NULL,
    price numeric NOT NULL, qty numeric NOT NULL, side smallint NOT NULL,
    ts timestamptz NOT NULL, PRIMARY KEY (venue, symbol, trade_id))";

/// One trade row.
struct Row {
    venue: i16,
    symbol: String,
    id: i64,
    px: i64,
    qty: i64,
    side: i16,
    ts: i64,
}

fn rows(n: usize) -> Vec<Row> {
    let mut rng = Rng::new(3);
    let mut px = 6_508_366_000_000i64;
    (0..n)
        .map(|i| {
            px += rng.below(2_000_001) as i64 - 1_000_000;
            Row {
                venue: 1 + (i % 2) as i16,
                symbol: format!("SYN{}-USD", i % 3),
                id: i as i64,
                px,
                qty: 1 + rng.below(500_000_000) as i64,
                side: 1 + (i % 2) as i16,
                ts: 1_786_309_548_000_000_000 + i as i64 * 1_000_000,
            }
        })
        .collect()
}

struct MethodOut {
    rows_per_s: f64,
    batch_ms: hdrhistogram::Histogram<u64>,
}

fn method(
    client: &mut postgres::Client,
    rows: &[Row],
    batch: usize,
    mut write: impl FnMut(&mut postgres::Transaction<'_>, &[Row]) -> Result<()>,
) -> Result<MethodOut> {
    client.batch_execute("TRUNCATE bench_trades")?;
    let mut h = hist(3_600_000_000);
    let t0 = Instant::now();
    for chunk in rows.chunks(batch) {
        let b0 = Instant::now();
        let mut tx = client.transaction()?;
        write(&mut tx, chunk)?;
        tx.commit()?;
        rec(&mut h, b0.elapsed().as_micros() as i64);
    }
    let secs = t0.elapsed().as_secs_f64();
    let n: i64 = client
        .query_one("SELECT count(*) FROM bench_trades", &[])?
        .get(0);
    anyhow::ensure!(
        n as usize == rows.len(),
        "{n} rows in the table, wrote {}",
        rows.len()
    );
    Ok(MethodOut {
        rows_per_s: rows.len() as f64 / secs,
        batch_ms: h,
    })
}

fn text_ts(ns: i64) -> String {
    rfc3339(ns)
}

fn binary(tx: &mut postgres::Transaction<'_>, chunk: &[Row], buf: &mut CopyBuffer) -> Result<()> {
    buf.clear();
    for r in chunk {
        buf.begin_row(7);
        buf.int2(r.venue);
        buf.text(&r.symbol);
        buf.int8(r.id);
        buf.numeric(r.px, 8);
        buf.numeric(r.qty, 8);
        buf.int2(r.side);
        buf.timestamptz_ns(r.ts);
        buf.end_row();
    }
    copy_batch(
        tx,
        "COPY bench_trades FROM STDIN (FORMAT binary)",
        buf.finish(),
    )?;
    Ok(())
}

fn text(tx: &mut postgres::Transaction<'_>, chunk: &[Row], buf: &mut String) -> Result<()> {
    buf.clear();
    for r in chunk {
        let _ = writeln!(
            buf,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.venue,
            r.symbol,
            r.id,
            Decimal::new(r.px, 8),
            Decimal::new(r.qty, 8),
            r.side,
            text_ts(r.ts)
        );
    }
    let mut w = tx.copy_in("COPY bench_trades FROM STDIN")?;
    w.write_all(buf.as_bytes())?;
    w.finish()?;
    Ok(())
}

fn multi(tx: &mut postgres::Transaction<'_>, chunk: &[Row], buf: &mut String) -> Result<()> {
    for part in chunk.chunks(1000) {
        buf.clear();
        buf.push_str("INSERT INTO bench_trades VALUES ");
        for (k, r) in part.iter().enumerate() {
            let _ = write!(
                buf,
                "{}({},'{}',{},{},{},{},'{}')",
                if k > 0 { "," } else { "" },
                r.venue,
                r.symbol,
                r.id,
                Decimal::new(r.px, 8),
                Decimal::new(r.qty, 8),
                r.side,
                text_ts(r.ts)
            );
        }
        tx.batch_execute(buf)?;
    }
    Ok(())
}

fn single(tx: &mut postgres::Transaction<'_>, chunk: &[Row]) -> Result<()> {
    let st = tx.prepare(
        "INSERT INTO bench_trades VALUES ($1, $2, $3, $4::text::numeric, $5::text::numeric, $6, $7::text::timestamptz)",
    )?;
    for r in chunk {
        let (px, q, ts) = (
            Decimal::new(r.px, 8).to_string(),
            Decimal::new(r.qty, 8).to_string(),
            text_ts(r.ts),
        );
        tx.execute(&st, &[&r.venue, &r.symbol, &r.id, &px, &q, &r.side, &ts])?;
    }
    Ok(())
}

fn rows_in(stats: &PersistStats) -> u64 {
    (0..hermes_persist::TABLES.len())
        .map(|t| stats.rows_of(t))
        .sum()
}

/// Waits until the persister has everything journaled in PostgreSQL: all `frames`
/// journaled, no lag, and the row count still for 300 ms. Returns when the rows last
/// changed (the end of the writing), or `None` on timeout.
fn caught_up(stats: &PersistStats, frames: u64, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    let mut last_rows = rows_in(stats);
    let mut changed = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
        let r = rows_in(stats);
        if r != last_rows {
            last_rows = r;
            changed = Instant::now();
            continue;
        }
        if stats.journal_records.load(Ordering::Relaxed) >= frames
            && stats.lag_bytes.load(Ordering::Relaxed) == 0
            && stats.connected.load(Ordering::Relaxed)
            && r > 0
            && changed.elapsed() > Duration::from_millis(300)
        {
            return Some(changed);
        }
    }
    None
}

/// Feeds `frames` to a persister and returns the rows/s of the catch-up.
fn persister(pg: &mut LocalPg, n: usize) -> Result<(f64, f64, String)> {
    let url = pg.create_database("bench_persist")?;
    let dir = std::env::temp_dir().join(format!("hermes-bench-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut opts = PersistOptions::new(url, &dir);
    opts.retry_min = Duration::from_millis(5);
    opts.retry_max = Duration::from_millis(50);
    let (mut tap, p) = hermes_persist::start(opts)?;
    let stats = p.stats();
    let set = frames::synthetic(2 * n);
    // Steady: the database is up; the frames arrive as one burst.
    let t0 = Instant::now();
    for f in &set[..n] {
        tap.frame(&f.frame(f.recv_ts_ns));
    }
    let end = caught_up(&stats, n as u64, Duration::from_secs(300))
        .context("the persister did not catch up")?;
    let steady_rows = rows_in(&stats);
    let steady = steady_rows as f64 / end.duration_since(t0).as_secs_f64();
    // Outage: the server stops, the frames are journaled, the server comes back.
    pg.stop()?;
    for f in &set[n..] {
        tap.frame(&f.frame(f.recv_ts_ns));
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = rows_in(&stats);
    pg.restart()?;
    let t1 = Instant::now();
    let end = caught_up(&stats, 2 * n as u64, Duration::from_secs(300))
        .context("the persister did not catch up after the outage")?;
    let catch = (rows_in(&stats) - before) as f64 / end.duration_since(t1).as_secs_f64();
    drop(tap);
    let rep = p.finish()?;
    let note = format!(
        "{n} frames per phase → {steady_rows} rows with the database up; batches {}, slowest batch {} µs, retries {}",
        rep.stats.batches.load(Ordering::Relaxed),
        rep.stats.copy_latency_us_max.load(Ordering::Relaxed),
        rep.stats.retries.load(Ordering::Relaxed)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok((catch, steady, note))
}

/// Runs the stage (skipped, with the reason, when PostgreSQL's binaries are missing).
pub fn run(cfg: &Config) -> Result<Stage> {
    let t = Instant::now();
    if let Err(e) = local_pg::find_binaries() {
        return Ok(Stage {
            name: "persist".into(),
            seconds: 0.0,
            metrics: vec![],
            notes: vec![format!("skipped: {e}")],
            skipped: true,
            pinned: false,
        });
    }
    // On disk (not the tmpfs scratch directory): fsync has to mean something.
    let dir = std::env::temp_dir().join(format!("hermes-bench-pg-{}", std::process::id()));
    let mut pg = LocalPg::start_with(
        &dir,
        StartOptions {
            fast: false,
            die_with_parent: true,
        },
    )
    .context("starting a private PostgreSQL")?;
    let result = (|| -> Result<Vec<Metric>> {
        let url = pg.create_database("bench")?;
        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
        client.batch_execute(TABLE)?;
        let n = cfg.size(200_000, 20_000);
        let n_single = cfg.size(20_000, 2_000);
        let batch = 10_000;
        let data = rows(n);
        let mut cb = CopyBuffer::new();
        let mut s = String::new();
        let bin = method(&mut client, &data, batch, |tx, c| binary(tx, c, &mut cb))?;
        let txt = method(&mut client, &data, batch, |tx, c| text(tx, c, &mut s))?;
        let mul = method(&mut client, &data, batch, |tx, c| multi(tx, c, &mut s))?;
        let one = method(&mut client, &data[..n_single], batch, single)?;
        let ratio_txt = bin.rows_per_s / txt.rows_per_s;
        let ratio_mul = bin.rows_per_s / mul.rows_per_s;
        let mut out = vec![
            Metric::higher(
                "persist.copy_binary",
                &format!("rows/s into a trades table with a primary key, {batch}-row batches each committed ({n} rows; row-by-row {n_single})"),
                "rows/s",
                Figure::scalar(bin.rows_per_s),
            )
            .vs("text COPY (what psql \\copy sends)", Figure::scalar(txt.rows_per_s), None)
            .vs("multi-row INSERT (1,000 rows a statement)", Figure::scalar(mul.rows_per_s), None)
            .vs("row-by-row INSERT (prepared, one transaction a batch)", Figure::scalar(one.rows_per_s), None)
            .target("≥ text COPY and ≥ 3× multi-row INSERT", ratio_txt >= 1.0 && ratio_mul >= 3.0),
            Metric::lower(
                "persist.flush_latency",
                &format!("one {batch}-row batch: encode + COPY + commit (binary)"),
                "ms",
                figure(&bin.batch_ms, 1000.0),
            )
            .vs("text COPY batch", figure(&txt.batch_ms, 1000.0), None)
            .vs("multi-row INSERT batch", figure(&mul.batch_ms, 1000.0), None),
        ];
        drop(client);
        let (catch, steady, note) = persister(&mut pg, cfg.size(100_000, 10_000))?;
        out.push(
            Metric::higher(
                "persist.catch_up",
                "hermes_persist rows/s catching up from its journal after a PostgreSQL outage (server stopped while frames arrived, then restarted)",
                "rows/s",
                Figure::scalar(catch),
            )
            .vs("the same persister with the database up (frames arriving as a burst)", Figure::scalar(steady), None)
            .note(note),
        );
        Ok(out)
    })();
    let _ = pg.stop();
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Stage {
        name: "persist".into(),
        seconds: t.elapsed().as_secs_f64(),
        metrics: result?,
        notes: vec![
            "PostgreSQL: private cluster from hermes_persist::local_pg (fsync on), unix socket"
                .into(),
        ],
        skipped: false,
        pinned: false,
    })
}
