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
}

/// Runs a `hermes db` subcommand.
pub fn run(cmd: DbCmd) -> Result<()> {
    match cmd {
        DbCmd::Migrate { database_url } => cmd_db_migrate(&database_url),
    }
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
