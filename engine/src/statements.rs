//! Every statement the engine prepares, embedded from `sql/statements/` at build time. The heavy
//! lifting lives in the server-side functions of `sql/functions.sql`, so each operation is one
//! statement and one round trip.

use queen_wire::{Client, FromSql, Pool, Row, Statement};

use crate::error::EngineError;

macro_rules! statements {
    ($($field:ident => $file:literal),* $(,)?) => {
        /// The prepared statements.
        #[derive(Debug, Clone)]
        pub(crate) struct Statements {
            $(pub(crate) $field: Statement,)*
        }

        impl Statements {
            /// Prepares every statement (once per process; connections parse lazily).
            pub(crate) async fn prepare(pool: &Pool) -> Result<Statements, EngineError> {
                Ok(Statements {
                    $($field: pool
                        .prepare(include_str!(concat!("../../sql/statements/", $file)))
                        .await?,)*
                })
            }
        }
    };
}

statements! {
    push => "push.sql",
    pop => "pop.sql",
    ensure_group => "ensure_group.sql",
    unpop => "unpop.sql",
    ack => "ack.sql",
    extend_lease => "extend_lease.sql",
    ensure_partitions => "ensure_partitions.sql",
    require_leases => "require_leases.sql",
    sweep => "sweep_expired_leases.sql",
    retention => "retention.sql",
    retry_dead_letter => "retry_dead_letter.sql",
    configure => "configure.sql",
    default_partition => "default_partition.sql",
    queue_stats => "queue_stats.sql",
    queue_options => "queue_options.sql",
    delete_queue => "delete_queue.sql",
    queues_by_tag => "queues_by_tag.sql",
    get_setting => "get_setting.sql",
    set_setting => "set_setting.sql",
    list_messages => "list_messages.sql",
    message_detail => "message_detail.sql",
    delete_message => "delete_message.sql",
    list_dead_letters => "list_dead_letters.sql",
    add_trace => "add_trace.sql",
    message_traces => "message_traces.sql",
    traces_by_name => "traces_by_name.sql",
    trace_names => "trace_names.sql",
    consumer_groups => "consumer_groups.sql",
    consumer_group => "consumer_group.sql",
    delete_consumer_group => "delete_consumer_group.sql",
    set_subscription => "set_subscription.sql",
    seek => "seek.sql",
}

/// The first column of the first row of an answer (None for no row or NULL): the shape of every
/// statement that returns one value.
pub(crate) fn first_value<T>(rows: &[Row]) -> Result<Option<T>, EngineError>
where
    T: for<'a> FromSql<'a>,
{
    match rows.first() {
        Some(r) => Ok(r.get::<Option<T>>(0)?),
        None => Ok(None),
    }
}
