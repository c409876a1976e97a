//! `queen serve`: choose the database (external or embedded), apply the schema, run until a
//! shutdown signal, then stop cleanly (the embedded PostgreSQL is stopped last).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use queen_wire::embedded::{Cluster, EmbedError, Options};
use queen_wire::{Config, Pool, PoolConfig};

/// Flags of `queen serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "DATABASE:\n  With neither --database-url / DATABASE_URL nor any of PG_HOST, PG_PORT, PG_USER,\n  PG_PASSWORD, PG_DB set, the server runs a private PostgreSQL from the binaries installed\n  on this machine, with its data in <data-dir>/pg."
)]
pub struct ServeArgs {
    /// PostgreSQL to use, as a postgres:// URL or a libpq key=value string.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Directory for the server's own files (the embedded PostgreSQL cluster lives in `pg/`).
    #[arg(long, env = "QUEEN_DATA_DIR", default_value = "queen-data")]
    data_dir: PathBuf,
    /// Connections in the database pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 8)]
    pool_size: usize,
    /// Server-side statement timeout in milliseconds (0 = none).
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", default_value_t = 30_000)]
    statement_timeout_ms: u64,
}

/// Failures that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("database settings: {0}")]
    Config(#[source] queen_wire::Error),
    #[error("embedded PostgreSQL: {0}")]
    Embedded(#[from] EmbedError),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] queen_wire::Error),
    #[error("schema: {0}")]
    Schema(#[from] queen_engine::EngineError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let external = match &args.database_url {
        Some(url) => Some(Config::parse(url).map_err(ServeError::Config)?),
        None => Config::from_env().map_err(ServeError::Config)?,
    };
    let (mut config, cluster) = match external {
        Some(c) => {
            tracing::info!(host = ?c.host, port = c.port, db = %c.dbname, "using external PostgreSQL");
            (c, None)
        }
        None => {
            let dir = args.data_dir.join("pg");
            tracing::info!(dir = %dir.display(), "starting embedded PostgreSQL");
            let cluster = tokio::task::spawn_blocking(move || Cluster::start(Options::new(dir)))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??;
            let c = cluster.config("postgres");
            (c, Some(cluster))
        }
    };
    config.statement_timeout =
        (args.statement_timeout_ms > 0).then(|| Duration::from_millis(args.statement_timeout_ms));
    let pool = Pool::connect(
        config,
        PoolConfig {
            size: args.pool_size,
            ..PoolConfig::default()
        },
    )
    .await
    .map_err(ServeError::Connect)?;
    let applied = queen_engine::schema::migrate(&pool).await?;
    tracing::info!(migrations_applied = applied.len(), "schema is up to date");
    tracing::info!("ready");

    shutdown_signal().await?;
    tracing::info!("shutting down");
    drop(pool);
    if let Some(mut cluster) = cluster {
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        tracing::info!("embedded PostgreSQL stopped");
    }
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
