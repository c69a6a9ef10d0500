//! `hermes db`: PostgreSQL schema maintenance.

use anyhow::{Context, Result};
use clap::Subcommand;

/// `hermes db` subcommands.
#[derive(Subcommand, Debug)]
pub enum DbCmd {
    /// Apply the schema migrations (idempotent; the persister also applies them when it
    /// starts).
    Migrate {
        /// PostgreSQL (libpq string such as "host=/run/postgresql dbname=hermes", or a
        /// postgresql:// URL).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Write what a journal directory holds and its database does not have yet (after a
    /// run that ended with the database away, or segments moved aside as another
    /// database's), then exit. Refuses a journal that belongs to another database.
    Flush {
        /// The journal directory.
        #[arg(long)]
        journal: std::path::PathBuf,
        /// Its database.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// How long to keep trying to reach the database, seconds.
        #[arg(long, default_value_t = 30)]
        persist_drain_timeout: u64,
    },
}

/// Runs a `hermes db` subcommand.
pub fn run(cmd: DbCmd) -> Result<()> {
    match cmd {
        DbCmd::Migrate { database_url } => cmd_db_migrate(&database_url),
        DbCmd::Flush {
            journal,
            database_url,
            persist_drain_timeout,
        } => cmd_db_flush(&journal, &database_url, persist_drain_timeout),
    }
}

fn cmd_db_flush(journal: &std::path::Path, url: &str, drain_secs: u64) -> Result<()> {
    crate::flags::check_database_url(url)?;
    if !journal.is_dir() {
        anyhow::bail!("{}: no such journal directory", journal.display());
    }
    let mut o = hermes_persist::PersistOptions::new(url, journal);
    o.drain_timeout = std::time::Duration::from_secs(drain_secs);
    let (tap, p) = crate::flags::start_persister(Some(o))?;
    drop(tap);
    let Some(p) = p else {
        return Ok(());
    };
    let out = crate::flags::finish_persister(p);
    crate::flags::report_persist(&out)
}

pub fn cmd_db_migrate(url: &str) -> Result<()> {
    let applied = hermes_persist::migrate(url).context("migrating the schema")?;
    if applied.is_empty() {
        println!("schema up to date");
    } else {
        println!("applied migrations {applied:?}");
    }
    Ok(())
}
