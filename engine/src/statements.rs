//! Every statement the engine prepares, embedded from `sql/statements/` at build time. The heavy
//! lifting lives in the server-side functions of `sql/functions.sql`, so each operation is one
//! statement and one round trip.

use queen_wire::{Client, FromSql, Pool, Row, Statement};

use crate::error::EngineError;

macro_rules! statements {
    ($($field:ident => $file:literal $({ $($col:ident),* $(,)? })? $(like $like:ident)?),* $(,)?) => {
        /// The prepared statements, with the result columns the engine reads resolved by name.
        #[derive(Debug, Clone)]
        pub(crate) struct Statements {
            $(pub(crate) $field: Statement,)*
            /// Column positions of the statements whose rows are read column by column.
            pub(crate) cols: Columns,
        }

        /// Per statement, the positions of the columns the engine reads, resolved once when the
        /// statement is prepared (a renamed or missing column fails startup, not a request).
        pub(crate) mod columns {
            $($(
                #[allow(non_camel_case_types)]
                #[derive(Debug, Clone, Copy)]
                #[doc = concat!("The columns of `sql/statements/", $file, "`.")]
                pub(crate) struct $field {
                    $(pub(crate) $col: queen_wire::ColumnIndex,)*
                }

                impl $field {
                    pub(super) fn resolve(
                        st: &queen_wire::Statement,
                    ) -> Result<$field, queen_wire::Error> {
                        Ok($field { $($col: st.column(stringify!($col))?,)* })
                    }
                }
            )?)*
        }

        /// The column sets, one per statement that has one.
        #[derive(Debug, Clone, Copy)]
        pub(crate) struct Columns {
            $($(
                #[doc = concat!("`", $file, "` (", $(stringify!($col), " ",)* ")")]
                pub(crate) $field: columns::$field,
            )?)*
            $($(
                #[doc = concat!("`", $file, "` (the columns of `", stringify!($like), "`)")]
                pub(crate) $field: columns::$like,
            )?)*
        }

        impl Statements {
            /// Prepares every statement (once per process; connections parse lazily).
            pub(crate) async fn prepare(pool: &Pool) -> Result<Statements, EngineError> {
                $(let $field = pool
                    .prepare(include_str!(concat!("../../sql/statements/", $file)))
                    .await?;)*
                let cols = Columns {
                    $($($field: {
                        $(let _ = stringify!($col);)*
                        columns::$field::resolve(&$field)?
                    },)?)*
                    $($($field: columns::$like::resolve(&$field)?,)?)*
                };
                Ok(Statements { $($field,)* cols })
            }
        }
    };
}

statements! {
    push => "push.sql" { ord, message_id },
    pop => "pop.sql" {
        slot, partition_id, partition_name, pos, message_id, transaction_id, trace_id,
        payload, sealed, producer_sub, created_at, retry_count, lease_expires_at, queue_priority,
    },
    ensure_group => "ensure_group.sql",
    unpop => "unpop.sql",
    ack => "ack.sql" {
        idx, success, error, queue_name, partition_name, lease_released, dlq, noop,
    },
    extend_lease => "extend_lease.sql" { renewed, expires_at, error },
    ensure_partitions => "ensure_partitions.sql" {
        queue_name, partition_name, partition_id, partition_num, encrypted,
    },
    require_leases => "require_leases.sql",
    sweep => "sweep_expired_leases.sql",
    summarize_time_index => "summarize_time_index.sql" { top, low, summarised },
    retention => "retention.sql" { deleted, completed, partitions },
    retry_dead_letter => "retry_dead_letter.sql",
    configure => "configure.sql" {
        id, name, namespace, task, lease_time, max_size, ttl, retry_limit, retry_delay,
        dead_letter_queue, dlq_after_max_retries, priority, delayed_processing, window_buffer,
        retention_seconds, completed_retention_seconds, retention_enabled, encryption_enabled,
        max_wait_time_seconds, created_at,
    },
    default_partition => "default_partition.sql" { id, num },
    partition_stats => "partition_stats.sql" {
        queue_id, queue_name, namespace, task, priority, queue_created_at, partition_id,
        partition_name, partition_created_at, last_position, removed, dead_lettered,
        last_message_at, committed, leased, failed,
    },
    group_stats => "group_stats.sql" {
        consumer_group, queue_name, members, partitions, partitions_with_lag, total_lag,
        max_time_lag, last_consumed_at, subscription_mode, subscription_from,
    },
    group_partitions => "group_partitions.sql" {
        queue_name, partition_name, worker_id, last_consumed_at, total_consumed, offset_lag,
        time_lag, lease_active,
    },
    queue_options => "queue_options.sql" like configure,
    delete_queue => "delete_queue.sql",
    queues_by_tag => "queues_by_tag.sql" { name },
    get_setting => "get_setting.sql" { value },
    set_setting => "set_setting.sql",
    list_messages => "list_messages.sql" {
        message_id, transaction_id, partition_id, queue_name, partition_name, namespace, task,
        status, trace_id, producer_sub, created_at, lease_expires_at, pnum, pos,
    },
    message_detail => "message_detail.sql" {
        message_id, transaction_id, partition_id, queue_name, partition_name, namespace, task, status,
        trace_id, producer_sub, created_at, lease_expires_at, retry_count, error_message,
        group_names, group_consumed, group_leases, payload, sealed,
    },
    delete_message => "delete_message.sql",
    list_dead_letters => "list_dead_letters.sql" {
        id, message_id, transaction_id, partition_id, queue_name, partition_name,
        consumer_group, error_message, retry_count, created_at, failed_at, payload, sealed,
    },
    count_dead_letters => "count_dead_letters.sql",
    add_trace => "add_trace.sql",
    message_traces => "message_traces.sql" like traces_by_name,
    traces_by_name => "traces_by_name.sql" {
        total, id, transaction_id, partition_id, event_type, data, consumer_group, worker_id,
        created_at, trace_names,
    },
    trace_names => "trace_names.sql" { total, trace_name, trace_count, message_count, last_seen },
    delete_consumer_group => "delete_consumer_group.sql",
    set_subscription => "set_subscription.sql",
    seek => "seek.sql",
    fetch => "fetch.sql" {
        ord, found, high_watermark, log_start, record_offset, transaction_id, payload, sealed,
        created_at,
    },
    changed_partitions => "changed_partitions.sql" {
        queue_found, safe_time, num, id, name, last_position, log_start, last_message_at,
    },
    kv => "kv.sql" { results },
    kv_prune => "kv_prune.sql" { pruned },
    locks => "locks.sql" { results },
    timers => "timers.sql" { results },
    timers_claim => "timers_claim.sql" {
        queue, timer_key, partition, txn, message_id, payload, sealed,
    },
    timers_settle => "timers_settle.sql",
    timers_read => "timers_read.sql" { timer, payload, sealed },
    stream_register => "stream_register.sql" { query_id, fresh, did_reset, mismatch },
    stream_state_get => "stream_state_get.sql" { rows },
    stream_state_apply => "stream_state_apply.sql",
    ephemeral_declare => "ephemeral_declare.sql",
    ephemeral_undeclare => "ephemeral_undeclare.sql",
    ephemeral_declared => "ephemeral_declared.sql" { name, options },
}

/// The first column of the first row of an answer (None for no row or NULL): the shape of every
/// statement that returns one value.
pub(crate) fn first_value<T>(rows: &[Row]) -> Result<Option<T>, EngineError>
where
    T: for<'a> FromSql<'a>,
{
    match rows.first() {
        Some(r) => Ok(r.single::<Option<T>>()?),
        None => Ok(None),
    }
}
