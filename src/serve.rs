//! `queen serve`: choose the database (external or embedded), apply the schema, run until a
//! shutdown signal, then stop cleanly (the embedded PostgreSQL is stopped last).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;
use queen_engine::{BufferConfig, Cipher, Engine, EngineConfig};
use queen_http::auth::Auth;
use queen_http::{App, HttpConfig};
use queen_wire::embedded::{Cluster, EmbedError, Options};
use queen_wire::{Config, Pool, PoolConfig};

/// Flags of `queen serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "DATABASE:\n  With neither --database-url / DATABASE_URL nor any of PG_HOST, PG_PORT, PG_USER,\n  PG_PASSWORD, PG_DB set, the server runs a private PostgreSQL from the binaries installed\n  on this machine, with its data in <data-dir>/pg."
)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 6632)]
    port: u16,
    /// Largest request body accepted, in bytes (413 above).
    #[arg(long, env = "MAX_BODY_SIZE", default_value_t = 16 * 1024 * 1024)]
    max_body_size: usize,
    /// Upper bound of a long-poll pop's `timeout`, in milliseconds.
    #[arg(long, env = "MAX_POLL_TIMEOUT", default_value_t = 60_000)]
    max_poll_timeout_ms: u64,
    /// Longest a push batch waits for more requests before it is sent, in microseconds
    /// (0: send at once; batches still form under load).
    #[arg(long, env = "PUSH_BATCH_HOLD_US", default_value_t = 0)]
    push_batch_hold_us: u64,
    /// Push batches in flight at once (each on its own shard of partitions). Fewer, larger
    /// batches do more with the database's CPU; more shards help when round trips dominate.
    #[arg(long, env = "PUSH_SHARDS", default_value_t = 2)]
    push_shards: usize,
    /// Most messages in one coalesced push statement.
    #[arg(long, env = "PUSH_BATCH_MAX", default_value_t = 1000)]
    push_batch_max: usize,
    /// How long shutdown waits for in-flight requests, in milliseconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = 5_000)]
    shutdown_timeout_ms: u64,
    /// PostgreSQL to use, as a postgres:// URL or a libpq key=value string.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Directory for the server's own files (the embedded PostgreSQL cluster lives in `pg/`).
    #[arg(long, env = "QUEEN_DATA_DIR", default_value = "queen-data")]
    data_dir: PathBuf,
    /// Directory of the disk buffer that keeps pushes durable while PostgreSQL is unreachable.
    /// Default: `<data-dir>/buffer`.
    #[arg(long, env = "FILE_BUFFER_DIR")]
    file_buffer_dir: Option<PathBuf>,
    /// Size limit of the disk buffer in bytes: pushes that would go past it answer
    /// `503 buffer_full` (nothing stored). 0: no limit.
    #[arg(long, env = "FILE_BUFFER_MAX_BYTES", default_value_t = 0)]
    file_buffer_max_bytes: u64,
    /// Run without the disk buffer: pushes answer 503 while PostgreSQL is unreachable.
    #[arg(long, env = "NO_FILE_BUFFER", value_parser = BoolishValueParser::new())]
    no_file_buffer: bool,
    /// Time allowed to open a database connection, in milliseconds (bounds outage detection).
    #[arg(long, env = "DB_CONNECT_TIMEOUT", default_value_t = 1_000)]
    db_connect_timeout_ms: u64,
    /// Connections in the database pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 8)]
    pool_size: usize,
    /// Server-side statement timeout in milliseconds (0 = none).
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", default_value_t = 30_000)]
    statement_timeout_ms: u64,
    /// Key for queues with `encryptionEnabled`: 64 hex characters (AES-256-GCM). Without it,
    /// pushes to such queues are refused.
    #[arg(long, env = "QUEEN_ENCRYPTION_KEY", hide_env_values = true)]
    encryption_key: Option<String>,
    /// Earlier encryption keys, comma-separated: they still decrypt what they encrypted (stored
    /// messages, buffered records) but encrypt nothing new. For rotating QUEEN_ENCRYPTION_KEY.
    #[arg(long, env = "QUEEN_ENCRYPTION_KEY_PREVIOUS", hide_env_values = true)]
    encryption_key_previous: Option<String>,
    /// Require a JWT (`Authorization: Bearer`) on every /api/v1 route.
    #[arg(long, env = "JWT_ENABLED", value_parser = BoolishValueParser::new())]
    jwt_enabled: bool,
    /// Shared secret of HS256 tokens (required with --jwt-enabled).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// How often the retention job runs, in milliseconds.
    #[arg(long, env = "RETENTION_INTERVAL", default_value_t = 10_000)]
    retention_interval_ms: u64,
    /// How often shared settings (maintenance modes set through another server) are re-read,
    /// in milliseconds.
    #[arg(long, env = "SETTINGS_REFRESH", default_value_t = 2_000)]
    settings_refresh_ms: u64,
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
    #[error("QUEEN_ENCRYPTION_KEY / QUEEN_ENCRYPTION_KEY_PREVIOUS: {0}")]
    Key(#[from] queen_engine::crypto::CryptoError),
    #[error(
        "QUEEN_ENCRYPTION_KEY_PREVIOUS needs QUEEN_ENCRYPTION_KEY (the key new payloads are encrypted with)"
    )]
    PreviousKeyAlone,
    #[error("JWT_ENABLED needs a non-empty JWT_SECRET")]
    NoJwtSecret,
}

pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    // Settings that can be wrong are checked before anything starts.
    let cipher = args
        .encryption_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(|k| {
            Cipher::from_hex(k)?
                .with_previous(args.encryption_key_previous.as_deref().unwrap_or(""))
        })
        .transpose()?;
    if cipher.is_none()
        && args
            .encryption_key_previous
            .as_deref()
            .is_some_and(|k| !k.is_empty())
    {
        return Err(ServeError::PreviousKeyAlone);
    }
    let auth = if args.jwt_enabled {
        Some(
            Auth::hs256(args.jwt_secret.as_deref().unwrap_or_default().as_bytes())
                .ok_or(ServeError::NoJwtSecret)?,
        )
    } else {
        None
    };
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
    config.connect_timeout = Duration::from_millis(args.db_connect_timeout_ms.max(100));
    config.keepalive_idle = Some(Duration::from_secs(5));
    let pool_config = PoolConfig {
        size: args.pool_size,
        acquire_timeout: Duration::from_secs(1),
        health_interval: Duration::from_secs(2),
        health_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
    };
    let pool = if args.no_file_buffer {
        Pool::connect(config, pool_config)
            .await
            .map_err(ServeError::Connect)?
    } else {
        // With the disk buffer the server also starts while PostgreSQL is down: it buffers
        // pushes and catches up when the database answers.
        let pool = Pool::new(config.clone(), pool_config);
        if pool.wait_connected(Duration::from_secs(3)).await.is_err() {
            // Report a configuration error (wrong password, unknown database) rather than wait.
            if let Err(e) = queen_wire::Connection::connect(&config).await {
                if !e.is_connection() {
                    return Err(ServeError::Connect(e));
                }
                tracing::warn!(error = %e, "PostgreSQL is not reachable yet");
            }
        }
        pool
    };
    let mut engine_config = EngineConfig::default();
    if !args.no_file_buffer {
        let dir = args
            .file_buffer_dir
            .clone()
            .unwrap_or_else(|| args.data_dir.join("buffer"));
        tracing::info!(dir = %dir.display(), max_bytes = args.file_buffer_max_bytes, "disk buffer");
        engine_config.buffer = Some(BufferConfig {
            max_bytes: args.file_buffer_max_bytes,
            ..BufferConfig::new(dir)
        });
    }
    engine_config.push_batch.max_hold = Duration::from_micros(args.push_batch_hold_us);
    engine_config.push_batch.max_items = args.push_batch_max.max(1);
    engine_config.push_batch.max_in_flight = args.push_shards.max(1);
    engine_config.ack_batch.max_in_flight = (args.pool_size / 2).max(1);
    engine_config.cipher = cipher;
    engine_config.retention_interval = Duration::from_millis(args.retention_interval_ms.max(100));
    let engine = Engine::start(pool.clone(), engine_config).await?;
    tracing::info!("schema is up to date");
    let app = App::new(
        engine,
        HttpConfig {
            body_limit: args.max_body_size,
            max_long_poll: Duration::from_millis(args.max_poll_timeout_ms),
            settings_refresh: Duration::from_millis(args.settings_refresh_ms.max(1)),
            ..HttpConfig::default()
        },
        auth,
    );
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "ready: listening");
    let signal = async {
        if let Err(e) = shutdown_signal().await {
            tracing::error!(error = %e, "cannot listen for signals");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    };
    queen_http::serve(
        listener,
        app,
        signal,
        Duration::from_millis(args.shutdown_timeout_ms),
    )
    .await?;
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
