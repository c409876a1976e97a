//! The operations shared by a single [`Connection`](crate::Connection) and a
//! [`Pool`](crate::Pool): send a pipeline, prepare a statement, and conveniences built on those.

use std::future::Future;

use postgres_protocol::Oid;

use crate::error::Error;
use crate::pipeline::{Pipeline, SegmentResult};
use crate::statement::{QueryResult, Row, Statement};
use crate::types::ToSql;

/// Something pipelines can be sent to.
pub trait Client: Sync {
    /// Sends a pipeline and waits for all of it. `Err` only for connection-level failures (the
    /// outcome is then unknown); statement errors come back per segment.
    fn send(
        &self,
        pipeline: Pipeline,
    ) -> impl Future<Output = Result<Vec<SegmentResult>, Error>> + Send;

    /// Prepares a named statement with explicit parameter types (`0` lets the server infer one).
    fn prepare_typed(
        &self,
        sql: &str,
        types: &[Oid],
    ) -> impl Future<Output = Result<Statement, Error>> + Send;

    /// Prepares a named statement, the server inferring parameter types.
    fn prepare(&self, sql: &str) -> impl Future<Output = Result<Statement, Error>> + Send {
        self.prepare_typed(sql, &[])
    }

    /// Sends a one-segment pipeline and returns its results.
    fn send_segment(
        &self,
        pipeline: Pipeline,
    ) -> impl Future<Output = Result<Vec<QueryResult>, Error>> + Send {
        async move {
            self.send(pipeline)
                .await?
                .into_iter()
                .next()
                .unwrap_or_else(|| Ok(Vec::new()))
        }
    }

    /// Runs one prepared statement and returns its rows.
    fn query(
        &self,
        stmt: &Statement,
        params: &[&dyn ToSql],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send {
        let p = one(|p| p.query(stmt, params).map(drop));
        async move { Ok(first(self.send_segment(p?).await?).rows) }
    }

    /// Runs one prepared statement and returns the number of rows it affected.
    fn execute(
        &self,
        stmt: &Statement,
        params: &[&dyn ToSql],
    ) -> impl Future<Output = Result<u64, Error>> + Send {
        let p = one(|p| p.query(stmt, params).map(drop));
        async move { Ok(first(self.send_segment(p?).await?).rows_affected()) }
    }

    /// Runs one SQL statement without preparing it by name (parsed in the same flight).
    fn query_sql(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send {
        let p = one(|p| p.query_sql(sql, params).map(drop));
        async move { Ok(first(self.send_segment(p?).await?).rows) }
    }

    /// Runs `;`-separated statements through the simple protocol (DDL, session settings).
    fn batch_execute(&self, sql: &str) -> impl Future<Output = Result<(), Error>> + Send {
        let p = one(|p| p.simple(sql).map(drop));
        async move { self.send_segment(p?).await.map(drop) }
    }
}

fn one(build: impl FnOnce(&mut Pipeline) -> Result<(), Error>) -> Result<Pipeline, Error> {
    let mut p = Pipeline::new();
    build(&mut p)?;
    Ok(p)
}

fn first(results: Vec<QueryResult>) -> QueryResult {
    results.into_iter().next().unwrap_or_default()
}
