//! `queen serve`: choose the database (external or embedded), apply the schema, run until a
//! shutdown signal, then stop cleanly (the embedded PostgreSQL is stopped last).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;
use queen_engine::{BufferConfig, Cipher, Engine, EngineConfig};
use queen_http::auth::{AlgorithmSetting, Auth, AuthConfig, AuthSetupError, RoleClaims};
use queen_http::{App, HttpConfig};
use queen_wire::embedded::{Cluster, EmbedError, Options};
use queen_wire::{Config, Pool, PoolConfig, TargetSessionAttrs};

/// Flags of `queen serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "DATABASE:\n  With neither --database-url / DATABASE_URL nor any of PG_HOST, PG_PORT, PG_USER,\n  PG_PASSWORD, PG_DB set, the server runs a private PostgreSQL from the binaries installed\n  on this machine, with its data in <data-dir>/pg.\n\n  TLS to PostgreSQL: sslmode= and sslrootcert= in the connection string (default\n  sslmode=prefer), or Queen's PG_USE_SSL=true (verify-full against the system's roots;\n  PG_SSL_REJECT_UNAUTHORIZED=false: encrypted without verifying)."
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
    /// Bytes of request bodies held at once over all requests (503 `busy` beyond).
    #[arg(long, env = "MAX_BODY_BYTES_IN_FLIGHT", default_value_t = 64 * 1024 * 1024)]
    max_body_bytes_in_flight: usize,
    /// Time allowed to receive a whole request body, in milliseconds (408 after).
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value_t = 30_000)]
    body_read_timeout_ms: u64,
    /// Upper bound of a long-poll pop's `timeout`, in milliseconds.
    #[arg(long, env = "MAX_POLL_TIMEOUT", default_value_t = 60_000)]
    max_poll_timeout_ms: u64,
    /// Longest a push batch waits for more requests before it is sent, in microseconds
    /// (0: send at once; batches still form under load).
    #[arg(long, env = "PUSH_BATCH_HOLD_US", default_value_t = 0)]
    push_batch_hold_us: u64,
    /// Push statements in flight at once. Statements in flight together always touch disjoint
    /// partitions; pushes that share partitions are folded into one statement after another.
    #[arg(long, env = "PUSH_IN_FLIGHT", default_value_t = 2)]
    push_in_flight: usize,
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
    /// How often each database connection is checked, in milliseconds.
    #[arg(long, env = "DB_HEALTH_INTERVAL", default_value_t = 2_000)]
    health_interval_ms: u64,
    /// An idle connection that takes longer than this (ms) to answer its check is replaced; a
    /// busy one is judged by whether the server keeps answering.
    #[arg(long, env = "DB_HEALTH_TIMEOUT", default_value_t = 1_000)]
    health_timeout_ms: u64,
    /// Connections of the inspection pool: listings, details and traces run there, each on a
    /// connection of its own, never in front of pushes, pops and acks.
    #[arg(long, env = "DB_ADMIN_POOL_SIZE", default_value_t = 2)]
    admin_pool_size: usize,
    /// Connections of the analytics refreshes (the figures of the status and resources routes,
    /// read at most once per `--analytics-max-age`): with one, the snapshot's two statements run
    /// one after the other; with two, side by side.
    #[arg(long, env = "DB_ANALYTICS_POOL_SIZE", default_value_t = 1)]
    analytics_pool_size: usize,
    /// Statement timeout of the inspection pool, in milliseconds (0 = none).
    #[arg(long, env = "DB_ADMIN_STATEMENT_TIMEOUT", default_value_t = 10_000)]
    admin_statement_timeout_ms: u64,
    /// Key for queues with `encryptionEnabled`: 64 hex characters (AES-256-GCM). Without it,
    /// pushes to such queues are refused.
    #[arg(long, env = "QUEEN_ENCRYPTION_KEY", hide_env_values = true)]
    encryption_key: Option<String>,
    /// Earlier encryption keys, comma-separated: they still decrypt what they encrypted (stored
    /// messages, buffered records) but encrypt nothing new. For rotating QUEEN_ENCRYPTION_KEY.
    #[arg(long, env = "QUEEN_ENCRYPTION_KEY_PREVIOUS", hide_env_values = true)]
    encryption_key_previous: Option<String>,
    #[command(flatten)]
    jwt: JwtArgs,
    /// How often the retention job runs, in milliseconds.
    #[arg(long, env = "RETENTION_INTERVAL", default_value_t = 10_000)]
    retention_interval_ms: u64,
    /// How often a long-poll pop looks again without being woken, in milliseconds. Pushes wake
    /// waiting pops at once; the look again is for what no push signals: a delayed message
    /// coming due, a lease or a retry delay running out.
    #[arg(long, env = "LONG_POLL_RECHECK", default_value_t = 500)]
    long_poll_recheck_ms: u64,
    /// How often due timers are fired into their queues, in milliseconds: a timer is delivered
    /// at the soonest this long after its time.
    #[arg(long, env = "TIMER_INTERVAL", default_value_t = 250)]
    timer_interval_ms: u64,
    /// Bytes all ephemeral queues of this server may hold together: their payloads and 64 a
    /// message (docs/ephemeral.md); a push past it answers 503 `ephemeral_unavailable`.
    #[arg(long, env = "EPHEMERAL_MAX_BYTES", default_value_t = 256 << 20)]
    ephemeral_max_bytes: u64,
    /// Ephemeral queues this server may hold.
    #[arg(long, env = "EPHEMERAL_MAX_QUEUES", default_value_t = 100_000)]
    ephemeral_max_queues: usize,
    /// Seconds after which an ephemeral queue nobody configured, holding nothing, is forgotten.
    #[arg(long, env = "EPHEMERAL_IDLE_SECONDS", default_value_t = 300)]
    ephemeral_idle_seconds: u64,
    /// Where a consumer group starts reading when its first pop names no `subscriptionMode`:
    /// `all` / `from_beginning` (the first message) or `new` / `new-only` (messages pushed
    /// from then on). Empty: `all`.
    #[arg(long, env = "DEFAULT_SUBSCRIPTION_MODE", value_parser = parse_default_subscription)]
    default_subscription_mode: Option<DefaultSubscription>,
    /// How often shared settings (maintenance modes set through another server) are re-read,
    /// in milliseconds.
    #[arg(long, env = "SETTINGS_REFRESH", default_value_t = 2_000)]
    settings_refresh_ms: u64,
    /// How old the status and analytics figures may be, in milliseconds: younger ones are served
    /// as they are, older ones while one refresh runs behind them (docs/storage.md, "Counters").
    #[arg(long, env = "ANALYTICS_MAX_AGE", default_value_t = 1_000)]
    analytics_max_age_ms: u64,
}

/// Authentication flags (Queen's variables and defaults).
#[derive(Debug, Args)]
#[command(next_help_heading = "Authentication")]
struct JwtArgs {
    /// Require a JWT (`Authorization: Bearer`) on every /api/v1 route.
    #[arg(long, env = "JWT_ENABLED", value_parser = BoolishValueParser::new())]
    jwt_enabled: bool,
    /// Accepted token algorithms: HS256, RS256 (also RS384, RS512), EdDSA, or auto (any
    /// family a key is configured for).
    #[arg(long, env = "JWT_ALGORITHM", default_value = "HS256", value_parser = parse_algorithm)]
    jwt_algorithm: AlgorithmSetting,
    /// Shared secret of HS256 tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Public key (PEM, RSA or Ed25519) of RS256/EdDSA tokens.
    #[arg(long, env = "JWT_PUBLIC_KEY", hide_env_values = true)]
    jwt_public_key: Option<String>,
    /// URL of the identity provider's JWKS (RS256/EdDSA keys, refetched on an unknown `kid`).
    #[arg(long, env = "JWT_JWKS_URL")]
    jwt_jwks_url: Option<String>,
    /// Required `iss` claim.
    #[arg(long, env = "JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "JWT_CLOCK_SKEW", default_value_t = 30)]
    jwt_clock_skew: u64,
    /// How often the JWKS is refetched, in seconds.
    #[arg(long, env = "JWT_JWKS_REFRESH_INTERVAL", default_value_t = 3600)]
    jwt_jwks_refresh_interval: u64,
    /// Time allowed for a JWKS fetch, in milliseconds.
    #[arg(long, env = "JWT_JWKS_TIMEOUT_MS", default_value_t = 5000)]
    jwt_jwks_timeout_ms: u64,
    /// Claim holding the token's role.
    #[arg(long, env = "JWT_ROLES_CLAIM", default_value = "role")]
    jwt_roles_claim: String,
    /// Claim holding an array of roles.
    #[arg(long, env = "JWT_ROLES_ARRAY_CLAIM", default_value = "roles")]
    jwt_roles_array_claim: String,
    /// Name of the admin role.
    #[arg(long, env = "JWT_ROLE_ADMIN", default_value = "admin")]
    jwt_role_admin: String,
    /// Name of the read-write role.
    #[arg(long, env = "JWT_ROLE_READ_WRITE", default_value = "read-write")]
    jwt_role_read_write: String,
    /// Name of the read-only role.
    #[arg(long, env = "JWT_ROLE_READ_ONLY", default_value = "read-only")]
    jwt_role_read_only: String,
}

fn parse_algorithm(s: &str) -> Result<AlgorithmSetting, String> {
    AlgorithmSetting::parse(s)
        .ok_or_else(|| format!("must be HS256, RS256, EdDSA or auto, got `{s}`"))
}

impl JwtArgs {
    /// The verifier, when auth is on.
    fn auth(&self) -> Result<Option<Auth>, ServeError> {
        if !self.jwt_enabled {
            return Ok(None);
        }
        let some = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let auth = Auth::new(AuthConfig {
            algorithm: self.jwt_algorithm,
            secret: some(&self.jwt_secret),
            public_key_pem: some(&self.jwt_public_key),
            jwks_url: some(&self.jwt_jwks_url),
            issuer: some(&self.jwt_issuer),
            audience: some(&self.jwt_audience),
            clock_skew_secs: self.jwt_clock_skew,
            jwks_refresh: Duration::from_secs(self.jwt_jwks_refresh_interval.max(1)),
            jwks_timeout: Duration::from_millis(self.jwt_jwks_timeout_ms.max(1)),
            roles: RoleClaims {
                role_claim: self.jwt_roles_claim.clone(),
                roles_claim: self.jwt_roles_array_claim.clone(),
                admin: self.jwt_role_admin.clone(),
                read_write: self.jwt_role_read_write.clone(),
                read_only: self.jwt_role_read_only.clone(),
            },
        })?;
        Ok(Some(auth))
    }
}

/// A parsed `DEFAULT_SUBSCRIPTION_MODE` (empty: none).
#[derive(Debug, Clone, Copy)]
struct DefaultSubscription(Option<queen_engine::Subscription>);

fn parse_default_subscription(s: &str) -> Result<DefaultSubscription, String> {
    if s.is_empty() {
        return Ok(DefaultSubscription(None));
    }
    queen_http::parse_subscription_mode(s).map(|m| DefaultSubscription(Some(m)))
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
    #[error("JWT: {0}")]
    Auth(#[from] AuthSetupError),
    #[error("encryption key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let auth = args.jwt.auth()?;
    if let Some(a) = &auth {
        a.start_refresh();
    }
    let external = match &args.database_url {
        Some(url) => Some(Config::parse_beside_env(url).map_err(ServeError::Config)?),
        None => Config::from_env().map_err(ServeError::Config)?,
    };
    if let Some(c) = &external {
        c.check_tls().map_err(ServeError::Config)?;
    }
    // Settings that can be wrong are checked before anything starts.
    let cipher = cipher(&args, external.is_none())?;
    let (mut config, cluster) = match external {
        Some(c) => {
            let servers: Vec<_> = c.servers().collect();
            tracing::info!(?servers, db = %c.dbname, "using external PostgreSQL");
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
    // A queue server has no use for a server that takes no writes: a standby (or one made
    // read-only) is refused at connect, and a connection whose server turns read-only under it
    // is closed and made again, so a failover ends with the pools on the new primary.
    config.target_session_attrs = TargetSessionAttrs::ReadWrite;
    // Just-in-time compilation pays for long analytical queries, not for a queue server's
    // statements. PostgreSQL compiles every execution whose estimated cost passes
    // `jit_above_cost`, and as the message table grows the estimates of short, index-bound
    // statements pass it: the dashboard's pending listing went from 2.5 to 24 ms a call once
    // ~1.4M messages were stored, 19 ms of it compiling. Off for the server's own sessions;
    // other sessions keep the cluster's setting.
    config.settings.push(("jit".into(), "off".into()));

    config.connect_timeout = Duration::from_millis(args.db_connect_timeout_ms.max(100));
    config.keepalive_idle = Some(Duration::from_secs(5));
    let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
    // A busy connection is judged by the frames it receives; one silent for longer than the
    // longest statement the server allows (plus a margin) is stalled.
    let stall = |timeout: Option<Duration>| {
        timeout.unwrap_or(Duration::from_secs(300)) + Duration::from_secs(30)
    };
    let pool_config = PoolConfig {
        size: args.pool_size,
        acquire_timeout: Duration::from_secs(1),
        health_interval: Duration::from_millis(args.health_interval_ms.max(10)),
        health_timeout: Duration::from_millis(args.health_timeout_ms.max(10)),
        stall_timeout: stall(config.statement_timeout),
        ..PoolConfig::default()
    };
    let admin_config = queen_wire::Config {
        statement_timeout: ms(args.admin_statement_timeout_ms),
        ..config.clone()
    };
    let side_pool = |config: queen_wire::Config, size: usize| {
        let stall_timeout = stall(config.statement_timeout);
        Pool::new(
            config,
            PoolConfig {
                size: size.max(1),
                acquire_timeout: Duration::from_secs(5),
                stall_timeout,
                ..pool_config
            },
        )
    };
    let admin_pool = side_pool(admin_config.clone(), args.admin_pool_size);
    // The refreshes aggregate a row per cursor (100,000 at 10,000 partitions and 10 groups):
    // with the default 4 MB of work_mem the planner sorted them on disk, in parallel with a
    // second process (72 ms); hashed in memory by one process it is 43 ms (pgbench, that data).
    let analytics_config = queen_wire::Config {
        settings: vec![
            ("work_mem".into(), "16MB".into()),
            ("max_parallel_workers_per_gather".into(), "0".into()),
        ],
        ..admin_config
    };
    let analytics_pool = side_pool(analytics_config, args.analytics_pool_size);
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
    engine_config.push_batch.max_in_flight = args.push_in_flight.max(1);
    engine_config.ack_batch.max_in_flight = (args.pool_size / 2).max(1);
    engine_config.cipher = cipher;
    engine_config.retention_interval = Duration::from_millis(args.retention_interval_ms.max(100));
    engine_config.timer_interval = Duration::from_millis(args.timer_interval_ms.max(10));
    engine_config.long_poll_recheck = Duration::from_millis(args.long_poll_recheck_ms.max(10));
    engine_config.ephemeral.max_bytes = args.ephemeral_max_bytes.max(1);
    engine_config.ephemeral.max_queues = args.ephemeral_max_queues.max(1);
    engine_config.ephemeral.idle = Duration::from_secs(args.ephemeral_idle_seconds);
    engine_config.ephemeral.defaults.max_bytes = engine_config
        .ephemeral
        .defaults
        .max_bytes
        .min(engine_config.ephemeral.max_bytes);
    engine_config.settings_refresh = Duration::from_millis(args.settings_refresh_ms.max(1));
    engine_config.analytics.max_age = Duration::from_millis(args.analytics_max_age_ms);
    engine_config.analytics.stale_limit = engine_config
        .analytics
        .stale_limit
        .max(engine_config.analytics.max_age * 2);
    let pools = queen_engine::Pools {
        hot: pool.clone(),
        admin: admin_pool,
        analytics: analytics_pool,
    };
    let engine = Engine::start(pools, engine_config).await?;
    tracing::info!("schema is up to date");
    let app = App::new(
        engine,
        HttpConfig {
            body_limit: args.max_body_size,
            body_budget_bytes: args.max_body_bytes_in_flight.max(args.max_body_size),
            body_read_timeout: Duration::from_millis(args.body_read_timeout_ms.max(1)),
            max_long_poll: Duration::from_millis(args.max_poll_timeout_ms),
            default_subscription: args.default_subscription_mode.and_then(|d| d.0),
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

/// Name of the generated key file in the data directory (embedded cluster only).
const KEY_FILE: &str = "encryption.key";

/// The payload cipher. `QUEEN_ENCRYPTION_KEY` wins; without it, a server running its own
/// embedded cluster uses the key kept in `<data-dir>/encryption.key`, generated on first start
/// (mode 0600), so encrypting queues work out of the box. Servers on an external database get
/// no generated key: several of them would each make their own.
fn cipher(args: &ServeArgs, embedded: bool) -> Result<Option<Cipher>, ServeError> {
    let set = |k: &Option<String>| {
        k.as_deref()
            .filter(|k| !k.trim().is_empty())
            .map(str::to_owned)
    };
    let (key, previous) = (
        set(&args.encryption_key),
        set(&args.encryption_key_previous),
    );
    let path = args.data_dir.join(KEY_FILE);
    let key = match key {
        Some(k) => {
            let mut previous = previous.unwrap_or_default();
            // A key this server generated earlier keeps opening what it sealed.
            if embedded {
                if let Some(old) = read_key_file(&path)? {
                    if old.trim() != k.trim() {
                        tracing::info!(file = %path.display(), "QUEEN_ENCRYPTION_KEY is set: the generated key in the data directory only decrypts");
                        previous = format!("{previous},{old}");
                    }
                }
            }
            return Ok(Some(Cipher::from_hex(&k)?.with_previous(&previous)?));
        }
        None if previous.is_some() && !embedded => return Err(ServeError::PreviousKeyAlone),
        None if !embedded => return Ok(None),
        None => match read_key_file(&path)? {
            Some(k) => k,
            None => {
                let k = queen_engine::crypto::generate_key_hex();
                write_key_file(&path, &k)?;
                tracing::info!(
                    file = %path.display(),
                    "generated the encryption key for queues with encryptionEnabled (kept with the \
                     data directory; back it up with it, or set QUEEN_ENCRYPTION_KEY)"
                );
                k
            }
        },
    };
    Ok(Some(
        Cipher::from_hex(&key)?.with_previous(previous.as_deref().unwrap_or(""))?,
    ))
}

fn key_file_error(path: &std::path::Path, source: std::io::Error) -> ServeError {
    ServeError::KeyFile {
        path: path.display().to_string(),
        source,
    }
}

fn read_key_file(path: &std::path::Path) -> Result<Option<String>, ServeError> {
    match std::fs::read_to_string(path) {
        Ok(k) => Ok(Some(k.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(key_file_error(path, e)),
    }
}

/// Writes a new key file, readable by its owner only; never replaces one.
fn write_key_file(path: &std::path::Path, key: &str) -> Result<(), ServeError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail = |e| key_file_error(path, e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    f.write_all(format!("{key}\n").as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)
}

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
