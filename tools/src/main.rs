//! `hermes`: the command line. Argument parsing, wiring and printing only; the work is
//! done by the library crates (`hermes-engine`, `hermes-live`, `hermes-sim`,
//! `hermes-persist`, `hermes-shm`, `hermes-ingest`, `hermes-book`). Each subcommand has
//! its module in [`cmd`]; argument groups shared by several live in [`flags`].

mod cmd;
mod flags;
mod http;
mod top;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hermes: a low-latency market-data engine. Exchange frames in, exact fixed-point books
/// out, published to a shared-memory file that other processes read lock-free.
#[derive(Parser, Debug)]
#[command(name = "hermes", version, propagate_version = true)]
struct Cli {
    /// Log as JSON lines (one object per event, with its fields such as venue, symbol
    /// and connection id) instead of human-readable text.
    #[arg(long, global = true, env = "HERMES_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Replay a capture (native or JSON lines) through the engine.
    Replay(cmd::replay::ReplayArgs),
    /// Inspect a shm file.
    #[command(subcommand)]
    Shm(cmd::shm::ShmCmd),
    /// Write a synthetic market (random-walk books, valid venue frames) to a capture file.
    Generate(cmd::generate::GenerateArgs),
    /// Research datasets: captures to Parquet tables (trades, book, features, labels),
    /// Hive-partitioned by venue and date, with exact decimals.
    Export(cmd::export::ExportArgs),
    /// The demo: generate a sample market, replay it into shm, read it back from another
    /// process, and print a summary.
    Demo(cmd::demo::DemoArgs),
    /// A live terminal table over the shm file (`--once`: one plain-text table).
    Top(top::TopArgs),
    /// PostgreSQL schema maintenance.
    #[command(subcommand)]
    Db(cmd::db::DbCmd),
    /// Live ingest from the exchanges' WebSockets (or the simulator), configured by a
    /// TOML file and COINBASE_*/BINANCE_* environment variables.
    Run(cmd::live::RunArgs),
    /// Another host's books in a local shm file, from NATS JetStream (what `run`,
    /// `record` or `replay` with `--nats` publish).
    Mirror(cmd::mirror::MirrorArgs),
    /// The persister on another host: every frame of every ingest host, read from the
    /// NATS JetStream RAW stream, into PostgreSQL exactly once (the journal persister's
    /// rows; the stream offset commits with them).
    Persist(cmd::persist::PersistArgs),
    /// Like `run`, and write every received frame to rotating native capture files.
    Record(cmd::live::RecordArgs),
    /// The HTTP face (web dashboard at /, REST, SSE, /metrics, health) over an existing
    /// shm file, from its own process; follows a writer that replaces the file.
    Serve(cmd::serve::ServeArgs),
    /// The exchange simulator: serve a capture or a synthetic market over a local
    /// WebSocket with the venue's protocol, with fault injection.
    Sim(cmd::sim::SimArgs),
}

/// Logs go to stderr, as text (colored on a terminal) or JSON lines.
fn init_logging(json: bool) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            // PostgreSQL's NOTICEs (e.g. "relation already exists, skipping" from the
            // idempotent migrations) are not events a user needs.
            .unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn,postgres=warn")
            })
    };
    if json {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter())
            .with_target(false)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter())
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let r = match cli.cmd {
        Cmd::Replay(a) => cmd::replay::cmd_replay(a),
        Cmd::Shm(c) => cmd::shm::run(c),
        Cmd::Generate(a) => cmd::generate::cmd_generate(a),
        Cmd::Export(a) => cmd::export::cmd_export(a),
        Cmd::Demo(a) => cmd::demo::cmd_demo(a),
        Cmd::Top(a) => top::run(&a),
        Cmd::Db(c) => cmd::db::run(c),
        Cmd::Run(a) => cmd::live::cmd_run(a, None),
        Cmd::Mirror(a) => cmd::mirror::cmd_mirror(a),
        Cmd::Persist(a) => cmd::persist::cmd_persist(a),
        Cmd::Record(a) => cmd::live::cmd_record(a),
        Cmd::Serve(a) => cmd::serve::cmd_serve(a),
        Cmd::Sim(a) => cmd::sim::cmd_sim(a),
    };
    if let Err(e) = r {
        eprintln!("hermes: error: {}", hermes_live::error_chain(&e));
        std::process::exit(1);
    }
}
