//! Versioned schema migrations, embedded from `sql/migrations/` at build time.
//!
//! [`migrate`] may run on several servers at once: it holds a session advisory lock while it
//! compares the applied versions with the embedded ones, and applies each missing migration
//! together with its bookkeeping row in one implicit transaction (one simple-protocol query), so
//! a crash never leaves a migration half-applied or applied but unrecorded. Running it again is a
//! no-op.

use queen_wire::{Client, Pool, sqlstate};

use crate::error::EngineError;

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version number; applied in increasing order.
    pub version: i32,
    /// File name.
    pub name: &'static str,
    /// SQL text.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_schema.sql",
        sql: include_str!("../../sql/migrations/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "0002_dlq_retry_groups.sql",
        sql: include_str!("../../sql/migrations/0002_dlq_retry_groups.sql"),
    },
    Migration {
        version: 3,
        name: "0003_storage_v2.sql",
        sql: include_str!("../../sql/migrations/0003_storage_v2.sql"),
    },
    Migration {
        version: 4,
        name: "0004_analytics_counters.sql",
        sql: include_str!("../../sql/migrations/0004_analytics_counters.sql"),
    },
    Migration {
        version: 5,
        name: "0005_kv.sql",
        sql: include_str!("../../sql/migrations/0005_kv.sql"),
    },
    Migration {
        version: 6,
        name: "0006_timers.sql",
        sql: include_str!("../../sql/migrations/0006_timers.sql"),
    },
    Migration {
        version: 7,
        name: "0007_ephemeral.sql",
        sql: include_str!("../../sql/migrations/0007_ephemeral.sql"),
    },
    Migration {
        version: 8,
        name: "0008_streams.sql",
        sql: include_str!("../../sql/migrations/0008_streams.sql"),
    },
    Migration {
        version: 9,
        name: "0009_requeued_index.sql",
        sql: include_str!("../../sql/migrations/0009_requeued_index.sql"),
    },
    Migration {
        version: 10,
        name: "0010_dead_letter_positions.sql",
        sql: include_str!("../../sql/migrations/0010_dead_letter_positions.sql"),
    },
];

/// Server-side functions, one file per operation (`sql/functions/`), replaced as a whole after
/// the migrations: the first file drops every function of the schema, the others create the
/// current ones, all in one transaction.
pub const FUNCTIONS: &str = concat!(
    include_str!("../../sql/functions/00_reset.sql"),
    include_str!("../../sql/functions/01_common.sql"),
    include_str!("../../sql/functions/queues.sql"),
    include_str!("../../sql/functions/push.sql"),
    include_str!("../../sql/functions/pop.sql"),
    include_str!("../../sql/functions/leases.sql"),
    include_str!("../../sql/functions/ack.sql"),
    include_str!("../../sql/functions/dead_letters.sql"),
    include_str!("../../sql/functions/retention.sql"),
    include_str!("../../sql/functions/inspection.sql"),
    include_str!("../../sql/functions/reads.sql"),
    include_str!("../../sql/functions/analytics.sql"),
    include_str!("../../sql/functions/counters.sql"),
    include_str!("../../sql/functions/kv.sql"),
    include_str!("../../sql/functions/locks.sql"),
    include_str!("../../sql/functions/timers.sql"),
    include_str!("../../sql/functions/streams.sql"),
);

/// Key of the advisory lock that serialises migrations across servers.
const MIGRATION_LOCK: i64 = 0x5155_4545_4e00_0001;

/// Applies every migration the database does not have yet. Returns the versions applied.
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>, EngineError> {
    let conn = pool.acquire().await?;
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS public.queen_schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .or_else(ignore_concurrent_create)?;
    conn.query_sql("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = match apply_missing(&conn).await {
        // The functions are replaced on every start so they always match this build.
        Ok(applied) => conn
            .batch_execute(FUNCTIONS)
            .await
            .map(|()| applied)
            .map_err(|cause| EngineError::Migration {
                name: "functions.sql",
                cause: cause.into(),
            }),
        Err(e) => Err(e),
    };
    // Released in any case; also released by the server if the session dies.
    let unlock = conn
        .query_sql("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let applied = result?;
    unlock?;
    Ok(applied)
}

async fn apply_missing(conn: &queen_wire::Connection) -> Result<Vec<i32>, EngineError> {
    let rows = conn
        .query_sql("SELECT version FROM public.queen_schema_migrations", &[])
        .await?;
    let done: Vec<i32> = rows
        .iter()
        .map(|r| r.get("version"))
        .collect::<Result<_, _>>()?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        let sql = format!(
            "{}\n;INSERT INTO public.queen_schema_migrations (version, name) VALUES ({}, '{}');",
            m.sql, m.version, m.name
        );
        conn.batch_execute(&sql)
            .await
            .map_err(|cause| EngineError::Migration {
                name: m.name,
                cause: cause.into(),
            })?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        applied.push(m.version);
    }
    Ok(applied)
}

/// Two servers creating the bookkeeping table at the same moment: one of them sees a unique
/// violation on the catalog; the table exists either way.
fn ignore_concurrent_create(e: queen_wire::Error) -> Result<(), queen_wire::Error> {
    match e.code() {
        Some(sqlstate::UNIQUE_VIOLATION | sqlstate::DUPLICATE_TABLE) => Ok(()),
        _ => Err(e),
    }
}
