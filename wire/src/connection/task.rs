//! The task that owns a connection's socket.
//!
//! Callers hand it whole [`Pipeline`]s through a bounded channel. The task appends each one to
//! its write buffer (preceded by `Parse` messages for statements this connection has not prepared
//! yet) and queues what it expects back. Reading and writing proceed at the same time in one
//! `select!` loop, so a large pipeline can never deadlock against a server that is blocked writing
//! its results. Responses are matched in order against the queue of expectations; PostgreSQL
//! answers strictly in order, so the front of the queue is always the statement being answered.
//!
//! Error mapping: an `ErrorResponse` fails the current segment; the server then skips to the next
//! `Sync`, and so does the task's expectation queue (the segment's `Sync` still answers with
//! `ReadyForQuery`). Everything after that runs normally.
//!
//! Every branch of the loop is cancel-safe (`recv`, `read_buf` and a single `write_buf` either
//! complete or have no effect), which is what makes the `select!` correct.
//!
//! When the socket fails, every pipeline in flight and every request still queued receives a
//! connection error; the task then exits, which callers observe through `Connection::is_closed`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::error::{DbError, Error, Severity, replicate};
use crate::notify::Notification;
use crate::pipeline::{Op, Pipeline};
use postgres_protocol::message::backend::DataRowBody;

use crate::statement::{Column, RawResult, columns_from};

/// Largest backend frame accepted (a row of several large payloads fits many times over).
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Stop taking new requests while this much is waiting to be written.
const WRITE_HIGH_WATER: usize = 256 * 1024;

/// What a request gets back: one result per segment, or a connection-level error.
pub(crate) type Reply = Result<Response, Error>;

/// The answer to a pipeline.
#[derive(Debug, Default)]
pub(crate) struct Response {
    /// Per segment: the statements' raw results, or the segment's error.
    pub segments: Vec<Result<Vec<RawResult>, Error>>,
    /// From `Describe(Statement)`: parameter types and result columns.
    pub described: Option<(Vec<postgres_protocol::Oid>, Arc<[Column]>)>,
}

pub(crate) struct Request {
    pub pipeline: Pipeline,
    pub reply: oneshot::Sender<Reply>,
}

/// A pipeline whose responses are being read.
struct InFlight {
    ops: VecDeque<Op>,
    reply: Option<oneshot::Sender<Reply>>,
    response: Response,
    /// Results of the segment being read.
    current: Vec<RawResult>,
    /// First error of the segment being read.
    error: Option<Error>,
    /// Rows of the statement being read, and its columns.
    rows: Vec<DataRowBody>,
    columns: Option<Arc<[Column]>>,
    params: Vec<postgres_protocol::Oid>,
}

pub(crate) struct Task<R, W> {
    reader: R,
    writer: W,
    rx: mpsc::Receiver<Request>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    in_flight: VecDeque<InFlight>,
    /// Statements parsed (or being parsed) on this connection.
    prepared: HashSet<String>,
    notifications: Option<mpsc::UnboundedSender<Notification>>,
    kill: Arc<Notify>,
    activity: Arc<super::Activity>,
}

impl<R, W> Task<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub(crate) fn new(
        reader: R,
        writer: W,
        rx: mpsc::Receiver<Request>,
        read_buf: BytesMut,
        notifications: Option<mpsc::UnboundedSender<Notification>>,
        kill: Arc<Notify>,
        activity: Arc<super::Activity>,
    ) -> Self {
        Task {
            reader,
            writer,
            rx,
            read_buf,
            write_buf: BytesMut::with_capacity(64 * 1024),
            in_flight: VecDeque::new(),
            prepared: HashSet::new(),
            notifications,
            kill,
            activity,
        }
    }

    /// Runs until the socket fails or every handle is dropped and all work is answered.
    pub(crate) async fn run(mut self) {
        let err = match self.serve().await {
            Ok(()) => {
                let mut buf = BytesMut::new();
                frontend::terminate(&mut buf);
                let _ = self.writer.write_all(&buf).await;
                let _ = self.writer.shutdown().await;
                Error::Closed
            }
            Err(e) => {
                tracing::debug!(error = %e, "connection task stopped");
                e
            }
        };
        for f in self.in_flight.drain(..) {
            if let Some(reply) = f.reply {
                let _ = reply.send(Err(replicate(&err)));
            }
        }
        self.rx.close();
        while let Ok(req) = self.rx.try_recv() {
            let _ = req.reply.send(Err(Error::Closed));
        }
    }

    async fn serve(&mut self) -> Result<(), Error> {
        let mut open = true;
        // Messages may already be buffered from startup.
        self.process_input()?;
        // One registration for the whole life of the task, not one per loop turn.
        let kill = self.kill.clone();
        let mut killed = std::pin::pin!(kill.notified());
        loop {
            if !open && self.in_flight.is_empty() && self.write_buf.is_empty() {
                return Ok(());
            }
            let can_take = open && self.write_buf.len() < WRITE_HIGH_WATER;
            tokio::select! {
                _ = &mut killed => {
                    return Err(Error::Io(std::io::ErrorKind::ConnectionAborted.into()));
                }
                req = self.rx.recv(), if can_take => match req {
                    Some(req) => {
                        self.enqueue(req);
                        // Fold whatever else is already waiting into the same write.
                        while self.write_buf.len() < WRITE_HIGH_WATER {
                            match self.rx.try_recv() {
                                Ok(req) => self.enqueue(req),
                                Err(_) => break,
                            }
                        }
                    }
                    None => open = false,
                },
                r = self.writer.write_buf(&mut self.write_buf), if !self.write_buf.is_empty() => {
                    if r? == 0 {
                        return Err(Error::Io(std::io::ErrorKind::WriteZero.into()));
                    }
                    if self.write_buf.is_empty() {
                        self.writer.flush().await?;
                        // Do not keep a large pipeline's buffer for ever.
                        if self.write_buf.capacity() > 1 << 20 {
                            self.write_buf = BytesMut::with_capacity(64 * 1024);
                        }
                    }
                }
                r = self.reader.read_buf(&mut self.read_buf) => {
                    if r? == 0 {
                        return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                    self.activity.frame_received();
                    self.process_input()?;
                    self.activity.set_pending(self.in_flight.len());
                }
            }
        }
    }

    fn enqueue(&mut self, req: Request) {
        let Request {
            mut pipeline,
            reply,
        } = req;
        pipeline.finish();
        if pipeline.ops.is_empty() {
            let _ = reply.send(Ok(Response::default()));
            return;
        }
        // Statements this connection has not parsed yet are parsed first, in the same flight.
        let mut parses = Vec::new();
        for stmt in &pipeline.statements {
            if !self.prepared.contains(stmt.name()) {
                if let Err(e) = frontend::parse(
                    stmt.name(),
                    stmt.sql(),
                    stmt.params().iter().copied(),
                    &mut self.write_buf,
                ) {
                    let _ = reply.send(Err(Error::Io(e)));
                    return;
                }
                self.prepared.insert(stmt.name().to_owned());
                parses.push(Op::Parse(Some(stmt.name().to_owned())));
            }
        }
        for op in &pipeline.ops {
            if let Op::Parse(Some(name)) = op {
                self.prepared.insert(name.clone());
            }
        }
        let mut ops = VecDeque::from(std::mem::take(&mut pipeline.ops));
        self.activity.set_pending(self.in_flight.len() + 1);
        for p in parses.into_iter().rev() {
            ops.push_front(p);
        }
        self.write_buf.extend_from_slice(&pipeline.buf);
        self.in_flight.push_back(InFlight {
            ops,
            reply: Some(reply),
            response: Response::default(),
            current: Vec::new(),
            error: None,
            rows: Vec::new(),
            columns: None,
            params: Vec::new(),
        });
    }

    fn process_input(&mut self) -> Result<(), Error> {
        loop {
            // A frame's length is checked before the parser reserves room for it: a backend (or
            // a corrupted stream) claiming a gigantic frame is a protocol error, not an
            // allocation.
            if self.read_buf.len() >= 5 {
                let b = &self.read_buf;
                let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
                if len > MAX_FRAME {
                    return Err(Error::protocol(format!(
                        "a backend frame of {len} bytes (more than {MAX_FRAME})"
                    )));
                }
            }
            match Message::parse(&mut self.read_buf).map_err(|e| Error::protocol(e.to_string()))? {
                Some(msg) => self.handle(msg)?,
                None => break,
            }
        }
        // Keep the buffer from growing without bound after a large result.
        if self.read_buf.is_empty() && self.read_buf.capacity() > 1 << 20 {
            self.read_buf = BytesMut::with_capacity(64 * 1024);
        } else if self.read_buf.capacity() - self.read_buf.len() < 8192 {
            self.read_buf.reserve(64 * 1024);
        }
        Ok(())
    }

    fn handle(&mut self, msg: Message) -> Result<(), Error> {
        // Messages that may arrive at any time.
        match msg {
            Message::NoticeResponse(n) => {
                if let Ok(n) = DbError::parse(n.fields()) {
                    tracing::debug!(notice = %n, "server notice");
                }
                return Ok(());
            }
            Message::ParameterStatus(_) => return Ok(()),
            Message::NotificationResponse(n) => {
                if let Some(tx) = &self.notifications {
                    let _ = tx.send(Notification {
                        process_id: n.process_id(),
                        channel: n.channel().map_err(Error::Io)?.to_owned(),
                        payload: n.message().map_err(Error::Io)?.to_owned(),
                    });
                }
                return Ok(());
            }
            _ => {}
        }
        let Some(f) = self.in_flight.front_mut() else {
            return match msg {
                // A FATAL error outside any request (e.g. administrator shutdown).
                Message::ErrorResponse(e) => Err(DbError::parse(e.fields())?.into()),
                _ => Err(Error::protocol("message received with nothing in flight")),
            };
        };
        let Some(op) = f.ops.front() else {
            return Err(Error::protocol(
                "message received past the end of a pipeline",
            ));
        };
        let kind = Kind::of(op);
        match (kind, msg) {
            (_, Message::ErrorResponse(body)) => {
                let err = DbError::parse(body.fields())?;
                if matches!(err.severity, Severity::Fatal | Severity::Panic) {
                    return Err(err.into());
                }
                f.error.get_or_insert(err.into());
                f.rows.clear();
                // The server skips to the next Sync; so do we. A skipped Parse did not happen.
                while let Some(op) = f.ops.front() {
                    match op {
                        Op::Sync | Op::Simple => break,
                        Op::Parse(Some(name)) => {
                            self.prepared.remove(name);
                        }
                        _ => {}
                    }
                    f.ops.pop_front();
                }
            }
            (Kind::Parse, Message::ParseComplete) => {
                f.ops.pop_front();
            }
            (Kind::Describe, Message::ParameterDescription(p)) => {
                use fallible_iterator::FallibleIterator;
                f.params = p.parameters().collect().map_err(Error::Io)?;
            }
            (Kind::Describe, Message::RowDescription(body)) => {
                let cols = columns_from(&body)?;
                f.response.described = Some((std::mem::take(&mut f.params), cols));
                f.ops.pop_front();
            }
            (Kind::Describe, Message::NoData) => {
                f.response.described = Some((std::mem::take(&mut f.params), Arc::from(Vec::new())));
                f.ops.pop_front();
            }
            (Kind::Execute, Message::BindComplete) => {
                if let Some(Op::Execute { columns }) = f.ops.front() {
                    f.columns = columns.clone();
                }
            }
            (Kind::Execute | Kind::Simple, Message::RowDescription(body)) => {
                f.columns = Some(columns_from(&body)?);
            }
            (Kind::Execute, Message::NoData) => {
                f.columns = Some(Arc::from(Vec::new()));
            }
            (Kind::Execute | Kind::Simple, Message::DataRow(body)) => {
                if f.columns.is_none() {
                    return Err(Error::protocol("DataRow before its description"));
                }
                f.rows.push(body);
            }
            (Kind::Execute | Kind::Simple, Message::CommandComplete(body)) => {
                f.current.push(RawResult {
                    columns: f.columns.take(),
                    rows: std::mem::take(&mut f.rows),
                    tag: Some(body),
                });
                if kind == Kind::Execute {
                    f.ops.pop_front();
                }
            }
            (Kind::Execute | Kind::Simple, Message::EmptyQueryResponse) => {
                f.current.push(RawResult {
                    columns: None,
                    rows: Vec::new(),
                    tag: None,
                });
                if kind == Kind::Execute {
                    f.ops.pop_front();
                }
            }
            (Kind::Execute, Message::PortalSuspended) => {
                return Err(Error::protocol(
                    "portal suspended although no row limit was set",
                ));
            }
            (Kind::Sync | Kind::Simple, Message::ReadyForQuery(_)) => {
                f.ops.pop_front();
                let result = match f.error.take() {
                    Some(e) => Err(e),
                    None => Ok(std::mem::take(&mut f.current)),
                };
                f.current.clear();
                f.response.segments.push(result);
                if f.ops.is_empty() {
                    let mut done = self
                        .in_flight
                        .pop_front()
                        .ok_or_else(|| Error::protocol("in-flight queue empty"))?;
                    if let Some(reply) = done.reply.take() {
                        // The caller may have given up waiting; the work is done either way.
                        let _ = reply.send(Ok(std::mem::take(&mut done.response)));
                    }
                }
            }
            (kind, msg) => {
                return Err(Error::protocol(format!(
                    "unexpected message {} while expecting the answer to {kind:?}",
                    message_name(&msg)
                )));
            }
        }
        Ok(())
    }
}

/// The kind of the expectation at the front of the queue (a copy, so the queue can be mutated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Parse,
    Describe,
    Execute,
    Sync,
    Simple,
}

impl Kind {
    fn of(op: &Op) -> Kind {
        match op {
            Op::Parse(_) => Kind::Parse,
            Op::DescribeStatement => Kind::Describe,
            Op::Execute { .. } => Kind::Execute,
            Op::Sync => Kind::Sync,
            Op::Simple => Kind::Simple,
        }
    }
}

fn message_name(m: &Message) -> &'static str {
    match m {
        Message::BindComplete => "BindComplete",
        Message::CloseComplete => "CloseComplete",
        Message::CommandComplete(_) => "CommandComplete",
        Message::CopyInResponse(_) => "CopyInResponse",
        Message::CopyOutResponse(_) => "CopyOutResponse",
        Message::DataRow(_) => "DataRow",
        Message::EmptyQueryResponse => "EmptyQueryResponse",
        Message::NoData => "NoData",
        Message::ParameterDescription(_) => "ParameterDescription",
        Message::ParseComplete => "ParseComplete",
        Message::PortalSuspended => "PortalSuspended",
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::RowDescription(_) => "RowDescription",
        _ => "other",
    }
}
