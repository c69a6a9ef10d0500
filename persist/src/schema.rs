//! The schema: migrations shipped in the crate, applied idempotently, and the daily
//! partitions created ahead of the rows that need them.
//!
//! Tables (all times `timestamptz`, prices and sizes exact `NUMERIC`):
//!
//! | table | one row per | unique on | partitioned by day on |
//! |---|---|---|---|
//! | `raw_events` | journal record (every raw frame) | `stream, frame_no` (its journal position) | `receive_ts` |
//! | `trades` | trade | `venue, symbol, aggregate, trade_id` | `exchange_ts` |
//! | `book_snapshots` | instrument × snapshot interval (top-N levels) | `venue, symbol, ts` | `ts` |
//! | `top_of_book` | instrument × sampling interval (BBO + kernels) | `venue, symbol, ts` | `ts` |
//! | `funding` | mark price update (mark, index, funding rate) | `stream, frame_no, symbol` (its journal position) | `exchange_ts` |
//! | `liquidations` | forced liquidation order | `stream, frame_no, symbol` (its journal position) | `exchange_ts` |
//! | `ingest_offsets` | journal segment | `journal` | — |
//! | `nats_offsets` | NATS stream read by `hermes persist --nats` | `stream` | — |
//! | `nats_segments` | journal segment of a host, read from a NATS stream | `stream, journal` | — |
//!
//! PostgreSQL requires a partitioned table's unique keys to contain the partition column,
//! so each key also holds its partition column. That column is a function of the rest of
//! the key (a journal position has one receive time; a venue's trade has one trade time),
//! so the uniqueness is the same. (`funding` and `liquidations` rows come one per
//! instrument of a journal record, whose frame says the exchange time.)
//!
//! When the `timescaledb` extension is available the same tables are created plain and
//! turned into hypertables with one-day chunks instead of native partitions.

use postgres::GenericClient;

use crate::PersistError;

/// A schema migration: a version, a name, and its SQL.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Increasing version.
    pub version: i32,
    /// What it does.
    pub name: &'static str,
    /// Statements (several, `;`-separated).
    pub sql: &'static str,
}

/// Partitioned tables and the column they are partitioned on.
pub const PARTITIONED: [(&str, &str); 6] = [
    ("raw_events", "receive_ts"),
    ("trades", "exchange_ts"),
    ("book_snapshots", "ts"),
    ("top_of_book", "ts"),
    ("funding", "exchange_ts"),
    ("liquidations", "exchange_ts"),
];

const V1_TABLES: &str = r#"
CREATE TABLE raw_events (
    stream          text        NOT NULL,
    frame_no        bigint      NOT NULL,
    journal         text        NOT NULL,
    journal_offset  bigint      NOT NULL,
    venue           text        NOT NULL,
    conn_id         integer     NOT NULL,
    seq             bigint,
    channel         text,
    event_type      text,
    exchange_ts     timestamptz,
    receive_ts      timestamptz NOT NULL,
    frame           jsonb,
    frame_bytes     bytea,
    PRIMARY KEY (stream, frame_no, receive_ts)
) @PARTITION(receive_ts)@;
COMMENT ON TABLE raw_events IS 'Every raw frame the engine received, once per journal position (stream, frame_no). frame is the JSON as JSONB; frames PostgreSQL cannot take as JSONB are kept byte for byte in frame_bytes.';

CREATE TABLE trades (
    venue       text        NOT NULL,
    symbol      text        NOT NULL,
    trade_id    bigint      NOT NULL,
    price       numeric     NOT NULL,
    size        numeric     NOT NULL,
    side        text        NOT NULL,
    exchange_ts timestamptz NOT NULL,
    receive_ts  timestamptz NOT NULL,
    aggregate   boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (venue, symbol, aggregate, trade_id, exchange_ts)
) @PARTITION(exchange_ts)@;
COMMENT ON TABLE trades IS 'Trades, once each. aggregate = Binance aggTrade (its ids are another id space than trade ids).';

CREATE TABLE book_snapshots (
    venue       text        NOT NULL,
    symbol      text        NOT NULL,
    ts          timestamptz NOT NULL,
    exchange_ts timestamptz,
    update_id   bigint      NOT NULL,
    bid_px      numeric[]   NOT NULL,
    bid_qty     numeric[]   NOT NULL,
    ask_px      numeric[]   NOT NULL,
    ask_qty     numeric[]   NOT NULL,
    stale       boolean     NOT NULL,
    crossed     boolean     NOT NULL,
    PRIMARY KEY (venue, symbol, ts)
) @PARTITION(ts)@;
COMMENT ON TABLE book_snapshots IS 'Top-N levels per instrument, best first, taken at the first book change of each snapshot interval (receive time).';

CREATE TABLE top_of_book (
    venue         text        NOT NULL,
    symbol        text        NOT NULL,
    ts            timestamptz NOT NULL,
    exchange_ts   timestamptz,
    update_id     bigint      NOT NULL,
    bid_px        numeric,
    bid_qty       numeric,
    ask_px        numeric,
    ask_qty       numeric,
    spread        numeric,
    mid           numeric,
    microprice    double precision,
    imbalance     double precision,
    last_trade_px numeric,
    stale         boolean     NOT NULL,
    crossed       boolean     NOT NULL,
    from_ticker   boolean     NOT NULL,
    PRIMARY KEY (venue, symbol, ts)
) @PARTITION(ts)@;
COMMENT ON TABLE top_of_book IS 'Best bid/offer and kernels per instrument, sampled at the first change of each sampling interval (receive time).';

CREATE TABLE ingest_offsets (
    journal     text        PRIMARY KEY,
    stream      text        NOT NULL,
    "offset"    bigint      NOT NULL,
    records     bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ingest_offsets IS 'Per journal segment: the byte offset whose records are all in the tables, committed in the same transaction as those rows.';
"#;

/// Version 2: `top_of_book.microprice` and `imbalance` become the market model's kernels
/// (exact `NUMERIC`), the same values the shm slot publishes under those names: the
/// microprice at the kernels' price decimals, the depth imbalance over the top N levels
/// (`--kernel-levels`) as a ratio in [-1, 1] with six decimals. Before, they were `f64`
/// best-level values that disagreed with the slot.
const V2_TOB_KERNELS: &str = r#"
ALTER TABLE top_of_book
    ALTER COLUMN microprice TYPE numeric USING microprice::numeric,
    ALTER COLUMN imbalance TYPE numeric USING imbalance::numeric;
COMMENT ON COLUMN top_of_book.microprice IS 'Size-weighted mid (bid x ask_qty + ask x bid_qty) / (bid_qty + ask_qty) of the shown best bid/ask, as the shm slot microprice_px (hermes_book::kernels).';
COMMENT ON COLUMN top_of_book.imbalance IS 'Depth imbalance (bid_depth - ask_depth) / (bid_depth + ask_depth) over the top N levels, as the shm slot imbalance_ppm / 1e6 (hermes_book::kernels).';
"#;

const V3_DATABASE_ID: &str = r#"
CREATE TABLE hermes_database (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    id          text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO hermes_database (id)
    VALUES (md5(random()::text || clock_timestamp()::text || pg_backend_pid()::text || current_database()));
COMMENT ON TABLE hermes_database IS 'This database''s identity for Hermes: a random id made with the schema. A journal records the identity of the database it belongs to and never writes its frames into another.';
"#;

/// Version 4: the Binance futures' `markPriceUpdate` (`funding`) and `forceOrder`
/// (`liquidations`) streams. Neither has an id of its own (a liquidation order has no
/// order id in the stream), so each row is keyed by the journal position of the record it
/// came from, as `raw_events`, plus its symbol (one record, one row per instrument): the
/// same record projected again is the same row.
const V4_FUNDING_LIQUIDATIONS: &str = r#"
CREATE TABLE funding (
    stream            text        NOT NULL,
    frame_no          bigint      NOT NULL,
    venue             text        NOT NULL,
    symbol            text        NOT NULL,
    exchange_ts       timestamptz NOT NULL,
    receive_ts        timestamptz NOT NULL,
    mark_px           numeric     NOT NULL,
    index_px          numeric,
    funding_rate      numeric,
    next_funding_time timestamptz,
    PRIMARY KEY (stream, frame_no, symbol, exchange_ts)
) @PARTITION(exchange_ts)@;
COMMENT ON TABLE funding IS 'Mark price updates of futures (Binance markPriceUpdate), once per journal position (stream, frame_no) and symbol.';
COMMENT ON COLUMN funding.index_px IS 'Index price; NULL when the venue gives none.';
COMMENT ON COLUMN funding.funding_rate IS 'Funding rate per funding interval (0.0001 = 0.01%), signed; NULL for a contract without funding (a delivery contract: next_funding_time NULL too).';
COMMENT ON COLUMN funding.next_funding_time IS 'Next funding time; NULL for a contract without funding (a delivery contract).';

CREATE TABLE liquidations (
    stream      text        NOT NULL,
    frame_no    bigint      NOT NULL,
    venue       text        NOT NULL,
    symbol      text        NOT NULL,
    side        text        NOT NULL,
    price       numeric     NOT NULL,
    qty         numeric     NOT NULL,
    exchange_ts timestamptz NOT NULL,
    receive_ts  timestamptz NOT NULL,
    PRIMARY KEY (stream, frame_no, symbol, exchange_ts)
) @PARTITION(exchange_ts)@;
COMMENT ON TABLE liquidations IS 'Forced liquidation orders (Binance forceOrder), once per journal position (stream, frame_no) and symbol. Their fills are also in the venue''s trade stream.';
COMMENT ON COLUMN liquidations.side IS 'The liquidation order''s side: sell closes a long, buy a short.';
COMMENT ON COLUMN liquidations.price IS 'Average fill price (ap), or the order price (p) before any fill.';
COMMENT ON COLUMN liquidations.qty IS 'Size filled so far (z): the base asset, contracts on binance-coinm.';
"#;

/// Version 5: `hermes persist --nats`, the persister as a JetStream consumer of the RAW
/// stream. `nats_offsets.seq` is the stream sequence through which every message is in
/// the tables, committed in the same transaction as their rows; a restart reads from the
/// next one. `nats_segments` has, per journal segment of an ingest host
/// (`<host>/<segment file>`), the first message read of it and how far its frames are
/// committed: after a restart the segment is read again from there to rebuild its books
/// (without writing), so `book_snapshots` and `top_of_book` are those of an
/// uninterrupted run, and frames sent again by a restarted publisher are recognised.
const V5_NATS: &str = r#"
CREATE TABLE nats_offsets (
    stream      text        PRIMARY KEY,
    seq         bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE nats_offsets IS 'Per NATS stream read by hermes persist --nats: the stream sequence through which every message is in the tables, committed in the same transaction as their rows.';

CREATE TABLE nats_segments (
    stream      text        NOT NULL,
    journal     text        NOT NULL,
    host        text        NOT NULL,
    first_seq   bigint      NOT NULL,
    first_frame bigint      NOT NULL,
    last_seq    bigint      NOT NULL,
    frames      bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, journal)
);
COMMENT ON TABLE nats_segments IS 'Per journal segment of an ingest host read from a NATS stream (journal = <host>/<segment file>): the stream sequence of its first message read (first_seq, frame first_frame), of the last message of its last committed frame (last_seq), and the number of the first frame not committed (frames). Written with the rows.';
"#;

/// The migrations, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "raw_events, trades, book_snapshots, top_of_book, ingest_offsets",
        sql: V1_TABLES,
    },
    Migration {
        version: 2,
        name: "top_of_book microprice and imbalance from the market model's kernels",
        sql: V2_TOB_KERNELS,
    },
    Migration {
        version: 3,
        name: "hermes_database: the database's identity for journals",
        sql: V3_DATABASE_ID,
    },
    Migration {
        version: 4,
        name: "funding and liquidations (Binance futures mark price and forceOrder)",
        sql: V4_FUNDING_LIQUIDATIONS,
    },
    Migration {
        version: 5,
        name: "nats_offsets and nats_segments (hermes persist --nats)",
        sql: V5_NATS,
    },
];

/// The database's identity: `<cluster system identifier>/<database name>/<random id
/// made with the schema>` (the system identifier is `?` where `pg_control_system()` is
/// not allowed). A new cluster, a new database, or a dropped and recreated one each
/// has another identity.
pub fn identity<C: GenericClient>(client: &mut C) -> Result<String, PersistError> {
    let sysid = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_else(|_| "?".into());
    let r = client.query_one(
        "SELECT current_database()::text, (SELECT id FROM hermes_database)",
        &[],
    )?;
    let (db, id): (String, Option<String>) = (r.get(0), r.get(1));
    let id = id.ok_or_else(|| {
        PersistError::Identity(format!(
            "database {db}: table hermes_database is empty; run `hermes db migrate` or restore its row"
        ))
    })?;
    Ok(format!("{sysid}/{db}/{id}"))
}

/// Lock id that serialises concurrent migrators (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x4845_524d_4553_0001;

/// How tables are split by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// Native declarative partitions, one per day.
    Native,
    /// TimescaleDB hypertables with one-day chunks.
    Timescale,
}

fn render(sql: &str, p: Partitioning) -> String {
    let mut out = String::with_capacity(sql.len() + 512);
    let mut rest = sql;
    let mut hypertables = Vec::new();
    let mut table = "";
    while let Some(i) = rest.find("@PARTITION(") {
        let head = &rest[..i];
        if let Some(t) = head.rfind("CREATE TABLE ") {
            table = head[t + 13..].split_whitespace().next().unwrap_or("");
        }
        out.push_str(head);
        let after = &rest[i + 11..];
        let close = after.find(")@").unwrap_or(0);
        let col = &after[..close];
        if p == Partitioning::Native {
            out.push_str(&format!("PARTITION BY RANGE ({col})"));
        } else {
            hypertables.push((table.to_string(), col.to_string()));
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    for (t, c) in hypertables {
        out.push_str(&format!(
            "\nSELECT create_hypertable('{t}', '{c}', chunk_time_interval => interval '1 day');"
        ));
    }
    out
}

/// Applies the migrations not applied yet, in one transaction each, serialised against
/// other migrators; returns the partitioning in use and the versions applied now.
pub fn migrate<C: GenericClient>(client: &mut C) -> Result<(Partitioning, Vec<i32>), PersistError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS hermes_schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             partitioning text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )?;
    let done: Vec<(i32, String)> = tx
        .query(
            "SELECT version, partitioning FROM hermes_schema_migrations ORDER BY version",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let partitioning = match done.first() {
        Some((_, p)) if p == "timescale" => Partitioning::Timescale,
        Some(_) => Partitioning::Native,
        None => {
            let ts: i64 = tx
                .query_one(
                    "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'",
                    &[],
                )?
                .get(0);
            if ts > 0 {
                tx.batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")?;
                Partitioning::Timescale
            } else {
                Partitioning::Native
            }
        }
    };
    let pname = match partitioning {
        Partitioning::Native => "native",
        Partitioning::Timescale => "timescale",
    };
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        if done.iter().any(|(v, _)| *v == m.version) {
            continue;
        }
        tx.batch_execute(&render(m.sql, partitioning))
            .map_err(|e| PersistError::Migration {
                version: m.version,
                source: e,
            })?;
        tx.execute(
            "INSERT INTO hermes_schema_migrations (version, name, partitioning) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &pname],
        )?;
        applied.push(m.version);
    }
    tx.commit()?;
    Ok((partitioning, applied))
}

use hermes_book::clock::date_text;
pub use hermes_book::clock::{civil_from_days, day_of_ns};

/// Creates the day partitions of every partitioned table for `day` (idempotent; a
/// concurrent creator is tolerated).
pub fn ensure_partitions<C: GenericClient>(client: &mut C, day: i32) -> Result<(), PersistError> {
    let (from, to) = (date_text(day), date_text(day + 1));
    let (y, m, d) = civil_from_days(day);
    for (table, _) in PARTITIONED {
        let name = format!("{table}_p{y:04}{m:02}{d:02}");
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00')"
        );
        match client.batch_execute(&sql) {
            Ok(()) => {}
            // Another persister created it between our check and our create.
            Err(e)
                if e.code() == Some(&postgres::error::SqlState::DUPLICATE_TABLE)
                    || e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_native_and_timescale() {
        let n = render(V1_TABLES, Partitioning::Native);
        assert!(n.contains("PARTITION BY RANGE (receive_ts)"));
        assert!(!n.contains('@'));
        let t = render(V1_TABLES, Partitioning::Timescale);
        assert!(!t.contains("PARTITION BY"));
        assert!(t.contains("create_hypertable('trades', 'exchange_ts'"));
        assert!(t.contains("create_hypertable('raw_events', 'receive_ts'"));
        let t = render(V4_FUNDING_LIQUIDATIONS, Partitioning::Timescale);
        assert!(t.contains("create_hypertable('funding', 'exchange_ts'"));
        assert!(t.contains("create_hypertable('liquidations', 'exchange_ts'"));
        let n = render(V4_FUNDING_LIQUIDATIONS, Partitioning::Native);
        assert_eq!(n.matches("PARTITION BY RANGE (exchange_ts)").count(), 2);
    }

    #[test]
    fn every_partitioned_table_is_a_table_rows_go_to() {
        for (t, _) in PARTITIONED {
            assert!(crate::TABLES.contains(&t), "{t}");
        }
        assert_eq!(PARTITIONED.len(), crate::TABLES.len());
    }
}
