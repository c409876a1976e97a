//! Shared set-up of the benches: a durable PostgreSQL (`synchronous_commit` on, `fsync` on).
//!
//! `DATABASE_URL` (or `PG_*`) selects an external server; otherwise a private embedded cluster is
//! started for the bench run in a temporary directory and removed afterwards.

use queen_wire::Config;
use queen_wire::embedded::{Cluster, Options};

/// The server to bench against, and the cluster to keep alive while benching (if embedded).
pub fn bench_server() -> (Config, Option<Cluster>) {
    if let Ok(Some(c)) = Config::from_env() {
        return (c, None);
    }
    let dir = std::env::temp_dir().join(format!("queen-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut opts = Options::new(dir);
    opts.durable = true;
    opts.stop_with_process = true;
    opts.remove_on_stop = true;
    let cluster = Cluster::start(opts).expect("start the bench PostgreSQL");
    (cluster.config("postgres"), Some(cluster))
}

/// The machine, for the record.
pub fn describe_machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores")
}

/// The benches' runtime: two worker threads, as many as the machine has cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
