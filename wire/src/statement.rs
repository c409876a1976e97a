//! Prepared statements and result rows.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use fallible_iterator::FallibleIterator;
use postgres_protocol::Oid;
use postgres_protocol::message::backend::{CommandCompleteBody, DataRowBody, RowDescriptionBody};

use crate::error::Error;
use crate::types::FromSql;

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: Oid,
}

pub(crate) fn columns_from(body: &RowDescriptionBody) -> Result<Arc<[Column]>, Error> {
    body.fields()
        .map(|f| {
            Ok(Column {
                name: f.name().to_owned(),
                type_oid: f.type_oid(),
            })
        })
        .collect::<Vec<_>>()
        .map(Arc::from)
        .map_err(|e| Error::protocol(format!("bad RowDescription: {e}")))
}

/// A named prepared statement.
///
/// A statement is prepared once (on any connection, which reports its parameter and column types)
/// and is then valid on every connection of the process: a connection that has not parsed it yet
/// sends the `Parse` in front of the first pipeline that uses it, in the same flight, so lazy
/// preparation never costs a round trip. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Statement(Arc<StatementInner>);

#[derive(Debug)]
struct StatementInner {
    name: String,
    sql: String,
    params: Vec<Oid>,
    columns: Arc<[Column]>,
}

static NEXT_STATEMENT: AtomicU64 = AtomicU64::new(0);

impl Statement {
    pub(crate) fn new_name() -> String {
        format!("qs{}", NEXT_STATEMENT.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn new(
        name: String,
        sql: String,
        params: Vec<Oid>,
        columns: Arc<[Column]>,
    ) -> Statement {
        Statement(Arc::new(StatementInner {
            name,
            sql,
            params,
            columns,
        }))
    }

    /// The server-side name.
    pub fn name(&self) -> &str {
        &self.0.name
    }
    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.0.sql
    }
    /// Parameter type OIDs as the server resolved them.
    pub fn params(&self) -> &[Oid] {
        &self.0.params
    }
    /// Result columns.
    pub fn columns(&self) -> &Arc<[Column]> {
        &self.0.columns
    }

    /// The position of the result column called `name`, to read rows of this statement with.
    ///
    /// Callers resolve the columns they read once, right after preparing, and keep the
    /// [`ColumnIndex`]es: rows are then read by name without comparing a string per row, and a
    /// statement whose columns change fails where it is prepared rather than on some later row.
    pub fn column(&self, name: &str) -> Result<ColumnIndex, Error> {
        self.0
            .columns
            .iter()
            .position(|c| c.name == name)
            .map(ColumnIndex)
            .ok_or_else(|| Error::Decode {
                column: usize::MAX,
                reason: format!("statement {} has no column {name:?}", self.0.name).into(),
            })
    }
}

/// A result column's position, resolved by name from a [`Statement`] (see
/// [`Statement::column`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnIndex(usize);

impl ColumnIndex {
    /// The position.
    pub fn get(self) -> usize {
        self.0
    }
}

/// What [`Row::get`] accepts to pick a column: a [`ColumnIndex`] resolved once per statement, a
/// column name (looked up on every call: for one-off reads), or a bare position.
pub trait RowIndex {
    /// The position of the column in `columns`, if there is one.
    fn index(self, columns: &[Column]) -> Option<usize>;
}

impl RowIndex for ColumnIndex {
    fn index(self, columns: &[Column]) -> Option<usize> {
        (self.0 < columns.len()).then_some(self.0)
    }
}

impl RowIndex for usize {
    fn index(self, columns: &[Column]) -> Option<usize> {
        (self < columns.len()).then_some(self)
    }
}

impl RowIndex for &str {
    fn index(self, columns: &[Column]) -> Option<usize> {
        columns.iter().position(|c| c.name == self)
    }
}

/// One result row. Values are decoded lazily from the received buffer.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[Column]>,
    body: Bytes,
    ranges: Vec<Option<Range<usize>>>,
}

impl Row {
    pub(crate) fn new(columns: Arc<[Column]>, body: &DataRowBody) -> Result<Row, Error> {
        let ranges: Vec<_> = body
            .ranges()
            .collect()
            .map_err(|e| Error::protocol(format!("bad DataRow: {e}")))?;
        if ranges.len() != columns.len() {
            return Err(Error::protocol(format!(
                "DataRow has {} values for {} columns",
                ranges.len(),
                columns.len()
            )));
        }
        Ok(Row {
            columns,
            body: body.buffer_bytes().clone(),
            ranges,
        })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }
    /// True for a row without columns.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Decodes the column `idx` picks as `T`.
    pub fn get<'a, T: FromSql<'a>>(&'a self, idx: impl RowIndex) -> Result<T, Error> {
        let Some(idx) = idx.index(&self.columns) else {
            return Err(Error::Decode {
                column: usize::MAX,
                reason: "no such column".into(),
            });
        };
        let decode_err = |reason| Error::Decode {
            column: idx,
            reason,
        };
        let column = &self.columns[idx];
        if !T::accepts(column.type_oid) {
            return Err(decode_err(
                format!(
                    "type {} (oid {}) cannot be read as {}",
                    column.name,
                    column.type_oid,
                    std::any::type_name::<T>()
                )
                .into(),
            ));
        }
        match &self.ranges[idx] {
            Some(r) => T::from_sql(column.type_oid, &self.body[r.clone()]),
            None => T::from_sql_null(column.type_oid),
        }
        .map_err(decode_err)
    }

    /// Decodes the only column of a one-column row (the answer of `SELECT f(...)`).
    pub fn single<'a, T: FromSql<'a>>(&'a self) -> Result<T, Error> {
        if self.columns.len() != 1 {
            return Err(Error::Decode {
                column: 0,
                reason: format!("expected one column, the row has {}", self.columns.len()).into(),
            });
        }
        self.get(0usize)
    }
}

/// One statement's answer as the connection task collected it: raw frames, decoded by the
/// caller (so the single task that owns the socket does as little per row as possible).
pub(crate) struct RawResult {
    pub columns: Option<Arc<[Column]>>,
    pub rows: Vec<DataRowBody>,
    pub tag: Option<CommandCompleteBody>,
}

impl std::fmt::Debug for RawResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawResult")
            .field("columns", &self.columns)
            .field("rows", &self.rows.len())
            .finish_non_exhaustive()
    }
}

impl RawResult {
    pub(crate) fn decode(self) -> Result<QueryResult, Error> {
        let rows = match self.columns {
            Some(cols) => self
                .rows
                .iter()
                .map(|r| Row::new(cols.clone(), r))
                .collect::<Result<_, _>>()?,
            None if self.rows.is_empty() => Vec::new(),
            None => return Err(Error::protocol("DataRow before its description")),
        };
        let tag = match &self.tag {
            Some(t) => t.tag().map_err(Error::Io)?.to_owned(),
            None => String::new(),
        };
        Ok(QueryResult { rows, tag })
    }
}

/// What one statement of a pipeline returned.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// The rows, in order.
    pub rows: Vec<Row>,
    /// The command tag, e.g. `INSERT 0 1`.
    pub tag: String,
}

impl QueryResult {
    /// Rows inserted, updated, deleted, selected… as reported by the command tag.
    pub fn rows_affected(&self) -> u64 {
        self.tag
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}
