//! Pipelines: many statements sent in one flight.
//!
//! A [`Pipeline`] is encoded by the caller (so encoding cost is spread over the calling tasks, not
//! paid by the connection task) and handed to a connection as a whole. It is a sequence of
//! *segments*: the statements between two `Sync`s. PostgreSQL runs each segment as one implicit
//! transaction: it commits at the `Sync` if every statement succeeded and rolls back otherwise, and
//! after an error it skips the rest of the segment. The next segment runs normally.
//!
//! That is also how a transaction is sent: put its statements in one segment. No `BEGIN`/`COMMIT`
//! is sent on purpose — inside an explicit block a failure leaves the session in an aborted
//! transaction at `Sync`, which would fail the pipelines already queued behind it on the same
//! connection; the implicit transaction rolls back by itself.

use bytes::BytesMut;
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;

use crate::error::Error;
use crate::statement::{QueryResult, Statement};
use crate::types::ToSql;

/// What the connection expects back for one encoded step.
#[derive(Debug)]
pub(crate) enum Op {
    /// `Parse` → `ParseComplete`. `Some(name)` when it prepares a named statement on this
    /// connection (the task then records it as prepared).
    Parse(Option<String>),
    /// `Describe(Statement)` → `ParameterDescription`, `RowDescription | NoData`.
    DescribeStatement,
    /// `Bind`, [`Describe(Portal)`], `Execute` → `BindComplete`, [`RowDescription | NoData`],
    /// `DataRow*`, `CommandComplete | EmptyQueryResponse`.
    Execute {
        columns: Option<std::sync::Arc<[crate::statement::Column]>>,
    },
    /// `Sync` → `ReadyForQuery`; ends a segment.
    Sync,
    /// A simple `Query` → results, then `ReadyForQuery`; a segment of its own.
    Simple,
}

/// Statements and `Sync`s to send in one flight. See the module docs.
#[derive(Debug, Default)]
pub struct Pipeline {
    pub(crate) buf: BytesMut,
    pub(crate) ops: Vec<Op>,
    /// Named statements this pipeline binds; a connection that has not parsed one yet parses it
    /// first.
    pub(crate) statements: Vec<Statement>,
    open_segment: bool,
}

/// The outcome of one segment: every statement's result, or the first error.
pub type SegmentResult = Result<Vec<QueryResult>, Error>;

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline {
            // Enough for a typical Bind/Execute/Sync without regrowing.
            buf: BytesMut::with_capacity(256),
            ..Pipeline::default()
        }
    }

    /// Bytes encoded so far.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Number of segments (after [`Pipeline::sync`] or at send time, an open segment is closed).
    pub fn segments(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Sync | Op::Simple))
            .count()
            + usize::from(self.open_segment)
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds an execution of a prepared statement to the current segment.
    ///
    /// The values are checked against the statement's parameter types; a mismatch is an
    /// [`Error::Encode`] and leaves the pipeline unchanged.
    pub fn query(&mut self, stmt: &Statement, params: &[&dyn ToSql]) -> Result<&mut Self, Error> {
        if params.len() != stmt.params().len() {
            return Err(Error::Encode {
                index: params.len().min(stmt.params().len()),
                reason: format!(
                    "statement takes {} parameters, {} given",
                    stmt.params().len(),
                    params.len()
                )
                .into(),
            });
        }
        for (index, (p, want)) in params.iter().zip(stmt.params()).enumerate() {
            if p.sql_oid() != *want {
                return Err(Error::Encode {
                    index,
                    reason: format!(
                        "value of type {} for parameter of type {}",
                        p.sql_oid(),
                        want
                    )
                    .into(),
                });
            }
        }
        let mark = self.buf.len();
        let result = self
            .bind(stmt.name(), params)
            .and_then(|()| frontend::execute("", 0, &mut self.buf).map_err(Error::Io));
        if let Err(e) = result {
            self.buf.truncate(mark);
            return Err(e);
        }
        self.ops.push(Op::Execute {
            columns: Some(stmt.columns().clone()),
        });
        if !self.statements.iter().any(|s| s.name() == stmt.name()) {
            self.statements.push(stmt.clone());
        }
        self.open_segment = true;
        Ok(self)
    }

    /// Adds a one-off statement (unnamed, parsed in the same flight) to the current segment.
    /// Parameter types are taken from the values.
    pub fn query_sql(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<&mut Self, Error> {
        let mark = self.buf.len();
        let result = (|| {
            let types: Vec<_> = params.iter().map(|p| p.sql_oid()).collect();
            frontend::parse("", sql, types, &mut self.buf).map_err(Error::Io)?;
            self.bind("", params)?;
            frontend::describe(b'P', "", &mut self.buf).map_err(Error::Io)?;
            frontend::execute("", 0, &mut self.buf).map_err(Error::Io)
        })();
        if let Err(e) = result {
            self.buf.truncate(mark);
            return Err(e);
        }
        self.ops.push(Op::Parse(None));
        self.ops.push(Op::Execute { columns: None });
        self.open_segment = true;
        Ok(self)
    }

    /// Ends the current segment: its statements commit together (or, after an error, none does).
    pub fn sync(&mut self) -> &mut Self {
        frontend::sync(&mut self.buf);
        self.ops.push(Op::Sync);
        self.open_segment = false;
        self
    }

    /// [`Pipeline::sync`] for a pipeline built in one expression (e.g. a bare `Sync` as a ping).
    pub fn sync_owned(mut self) -> Self {
        self.sync();
        self
    }

    /// Adds a simple-protocol query (several `;`-separated statements allowed, no parameters, text
    /// results) as a segment of its own. Meant for DDL and session commands.
    pub fn simple(&mut self, sql: &str) -> Result<&mut Self, Error> {
        if self.open_segment {
            self.sync();
        }
        frontend::query(sql, &mut self.buf).map_err(Error::Io)?;
        self.ops.push(Op::Simple);
        Ok(self)
    }

    /// Closes an open segment; called before sending.
    pub(crate) fn finish(&mut self) {
        if self.open_segment {
            self.sync();
        }
    }

    pub(crate) fn prepare(
        name: &str,
        sql: &str,
        types: &[postgres_protocol::Oid],
    ) -> Result<Pipeline, Error> {
        let mut p = Pipeline::new();
        frontend::parse(name, sql, types.iter().copied(), &mut p.buf).map_err(Error::Io)?;
        frontend::describe(b'S', name, &mut p.buf).map_err(Error::Io)?;
        p.ops.push(Op::Parse(Some(name.to_owned())));
        p.ops.push(Op::DescribeStatement);
        p.sync();
        Ok(p)
    }

    fn bind(&mut self, statement: &str, params: &[&dyn ToSql]) -> Result<(), Error> {
        let mut failed = None;
        let r = frontend::bind(
            "",
            statement,
            Some(1),
            params.iter().enumerate(),
            |(i, p), buf| match p.to_sql(buf) {
                Ok(n) => Ok(n),
                Err(e) => {
                    failed = Some((i, e));
                    Ok(IsNull::Yes)
                }
            },
            Some(1),
            &mut self.buf,
        );
        if let Some((index, reason)) = failed {
            return Err(Error::Encode { index, reason });
        }
        match r {
            Ok(()) => Ok(()),
            Err(frontend::BindError::Conversion(reason)) => Err(Error::Encode { index: 0, reason }),
            Err(frontend::BindError::Serialization(e)) => Err(Error::Io(e)),
        }
    }
}
