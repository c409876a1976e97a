//! One PostgreSQL connection: a cheap, clonable handle in front of a task that owns the socket.
//!
//! `send` is cancel-safe in the sense that matters for a database client: dropping the future
//! before the pipeline was handed to the task sends nothing; dropping it afterwards does not stop
//! the statements (they run and their results are discarded). Only [`CancelToken::cancel`] stops
//! a running statement.

mod startup;
pub(crate) mod task;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::client::Client;
use crate::config::{Config, Host, TargetSessionAttrs};
use crate::error::Error;
use crate::notify::Notification;
use crate::pipeline::{Pipeline, SegmentResult};
use crate::statement::{RawResult, Statement};
use crate::tls::Negotiated;
use task::{Request, Response, Task};

/// Pipelines that may wait in a connection's queue before `send` waits for room.
const QUEUE_DEPTH: usize = 1024;

/// A handle to one connection. Clones share the connection; requests from all clones are
/// pipelined on it in the order they arrive.
#[derive(Clone, Debug)]
pub struct Connection {
    tx: mpsc::Sender<Request>,
    info: Arc<Info>,
}

#[derive(Debug)]
struct Info {
    cancel: CancelToken,
    kill: Arc<Notify>,
    server_version: String,
    activity: Arc<Activity>,
    /// `target_session_attrs=read-write`: a statement refused as read-only closes the
    /// connection.
    read_write: bool,
}

/// What the connection task is doing, for the pool's health checks: a connection that is busy
/// and receiving frames is alive however long its statements take.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Pipelines sent to the server and not fully answered.
    pending: std::sync::atomic::AtomicUsize,
    /// When the last frame arrived, in milliseconds since `epoch`.
    last_frame_ms: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            pending: std::sync::atomic::AtomicUsize::new(0),
            last_frame_ms: std::sync::atomic::AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    pub(crate) fn set_pending(&self, n: usize) {
        self.pending.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn frame_received(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_frame_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Connection {
    /// Connects (TCP, with TLS as `config.ssl_mode` says, or a Unix socket), authenticates and
    /// starts the connection task. The whole sequence is bounded by `config.connect_timeout`.
    pub async fn connect(config: &Config) -> Result<Connection, Error> {
        Connection::connect_inner(config, None).await
    }

    /// Tries each of `config`'s servers in order ([`Config::servers`]), each within
    /// `connect_timeout`, and returns the first connection made. As libpq, it moves on when a
    /// server cannot be reached, refuses TLS the settings require, or takes no writes where
    /// they must be taken; an error the server reports (a wrong password, say) ends the search.
    pub(crate) async fn connect_inner(
        config: &Config,
        notifications: Option<mpsc::UnboundedSender<Notification>>,
    ) -> Result<Connection, Error> {
        let mut last = None;
        for (host, port) in config.servers() {
            let one = config.for_server(host, port);
            match Connection::connect_one(&one, notifications.clone()).await {
                Ok(c) => return Ok(c),
                Err(e) if e.is_connection() || matches!(e, Error::Tls(_)) => {
                    tracing::debug!(?host, port, error = %e, "server skipped; trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::Unavailable))
    }

    /// Connects to `config.host:config.port`.
    async fn connect_one(
        config: &Config,
        notifications: Option<mpsc::UnboundedSender<Notification>>,
    ) -> Result<Connection, Error> {
        let fut = async {
            match &config.host {
                Host::Tcp(host) => {
                    let tls = config.tls();
                    let negotiated =
                        match crate::tls::negotiate(tcp(host, config).await?, host, &tls).await {
                            // As libpq: `prefer` and `allow` settle for plaintext, on a new
                            // socket, when the handshake fails (no version or cipher in common).
                            Err(Error::Tls(e)) if !tls.mode.requires_tls() => {
                                tracing::warn!(
                                    error = %e,
                                    "TLS handshake failed; connecting without TLS (sslmode={})",
                                    tls.mode
                                );
                                Negotiated::Plain(tcp(host, config).await?)
                            }
                            r => r?,
                        };
                    match negotiated {
                        Negotiated::Plain(stream) => {
                            let (h, stream) = handshake(stream, config).await?;
                            let (r, w) = stream.into_split();
                            Ok(h.start(r, w, notifications))
                        }
                        Negotiated::Tls(stream) => {
                            let (h, stream) = handshake(*stream, config).await?;
                            let (r, w) = tokio::io::split(stream);
                            Ok(h.start(r, w, notifications))
                        }
                    }
                }
                Host::Unix(dir) => {
                    let stream = UnixStream::connect(socket_path(dir, config.port)).await?;
                    let (h, stream) = handshake(stream, config).await?;
                    let (r, w) = stream.into_split();
                    Ok(h.start(r, w, notifications))
                }
            }
        };
        tokio::time::timeout(config.connect_timeout, fut)
            .await
            .map_err(|_| Error::Timeout("connect"))?
    }

    /// Runs startup over any byte stream and starts the connection task on it. Used with a
    /// scripted backend in tests; real connections use [`Connection::connect`].
    pub async fn from_stream<S>(stream: S, config: &Config) -> Result<Connection, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (h, stream) = handshake(stream, config).await?;
        let (r, w) = tokio::io::split(stream);
        Ok(h.start(r, w, None))
    }

    /// The server's `server_version`.
    pub fn server_version(&self) -> &str {
        &self.info.server_version
    }

    /// A token that can cancel the statement this connection is running.
    pub fn cancel_token(&self) -> CancelToken {
        self.info.cancel.clone()
    }

    /// Pipelines sent to the server and not fully answered yet.
    pub fn pending(&self) -> usize {
        self.info
            .activity
            .pending
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long ago the server last sent anything on this connection.
    pub fn since_last_frame(&self) -> std::time::Duration {
        let a = &self.info.activity;
        let last = a.last_frame_ms.load(std::sync::atomic::Ordering::Relaxed);
        a.epoch
            .elapsed()
            .saturating_sub(std::time::Duration::from_millis(last))
    }

    /// Stops the connection task now: pipelines in flight fail with a connection error. Used when
    /// a connection stops answering (a health check timed out).
    pub fn abort(&self) {
        self.info.kill.notify_one();
    }

    /// True once the connection task has stopped (socket closed or failed).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes when the connection task stops.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Pipelines submitted and not yet answered (including queued ones), approximately.
    pub fn queued(&self) -> usize {
        QUEUE_DEPTH - self.tx.capacity()
    }

    pub(crate) async fn send_raw(&self, pipeline: Pipeline) -> Result<Response, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { pipeline, reply })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

impl Client for Connection {
    async fn send(&self, pipeline: Pipeline) -> Result<Vec<SegmentResult>, Error> {
        let segments = self.send_raw(pipeline).await?.segments;
        if self.info.read_write && segments.iter().any(refused_as_read_only) {
            // The server was demoted or made read-only under us: this connection no longer
            // meets its target. Closing it makes a pool connect again (to the new primary,
            // once a failover is done); what is in flight on it fails as a lost connection.
            tracing::warn!("the server refused a write as read-only; closing the connection");
            self.abort();
        }
        // Rows are decoded here, in the caller's task, not in the connection task.
        Ok(segments
            .into_iter()
            .map(|seg| seg.and_then(|stmts| stmts.into_iter().map(RawResult::decode).collect()))
            .collect())
    }

    async fn prepare_typed(
        &self,
        sql: &str,
        types: &[postgres_protocol::Oid],
    ) -> Result<Statement, Error> {
        let name = Statement::new_name();
        let resp = self.send_raw(Pipeline::prepare(&name, sql, types)?).await?;
        if let Some(Err(e)) = resp.segments.into_iter().next() {
            return Err(e);
        }
        let (params, columns) = resp
            .described
            .ok_or_else(|| Error::protocol("no description for a prepared statement"))?;
        Ok(Statement::new(name, sql.to_owned(), params, columns))
    }
}

fn refused_as_read_only(segment: &Result<Vec<RawResult>, Error>) -> bool {
    matches!(segment, Err(Error::Db(db)) if db.code == crate::sqlstate::READ_ONLY_SQL_TRANSACTION)
}

/// A TCP socket to `host`, without Nagle's delay, with keepalive probes as configured.
async fn tcp(host: &str, config: &Config) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect((host, config.port)).await?;
    stream.set_nodelay(true)?;
    if let Some(idle) = config.keepalive_idle {
        let ka = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(idle.min(std::time::Duration::from_secs(5)))
            .with_retries(3);
        socket2::SockRef::from(&stream).set_tcp_keepalive(&ka)?;
    }
    Ok(stream)
}

/// A connection that finished startup, before its task is started.
struct Handshake {
    conn: Connection,
    rx: mpsc::Receiver<Request>,
    read_buf: bytes::BytesMut,
}

impl Handshake {
    fn start<R, W>(
        self,
        r: R,
        w: W,
        notifications: Option<mpsc::UnboundedSender<Notification>>,
    ) -> Connection
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let kill = self.conn.info.kill.clone();
        let activity = self.conn.info.activity.clone();
        activity.frame_received();
        tokio::spawn(Task::new(r, w, self.rx, self.read_buf, notifications, kill, activity).run());
        self.conn
    }
}

async fn handshake<S>(mut stream: S, config: &Config) -> Result<(Handshake, S), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (session, read_buf) = startup::startup(&mut stream, config).await?;
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let conn = Connection {
        tx,
        info: Arc::new(Info {
            cancel: CancelToken {
                host: config.host.clone(),
                port: config.port,
                process_id: session.process_id,
                secret_key: session.secret_key,
            },
            kill: Arc::new(Notify::new()),
            server_version: session.server_version,
            activity: Arc::new(Activity::new()),
            read_write: config.target_session_attrs == TargetSessionAttrs::ReadWrite,
        }),
    };
    Ok((Handshake { conn, rx, read_buf }, stream))
}

fn socket_path(dir: &std::path::Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// Cancels whatever statement a connection is running, from any task, over a new socket.
#[derive(Debug, Clone)]
pub struct CancelToken {
    host: Host,
    port: u16,
    process_id: i32,
    secret_key: i32,
}

impl CancelToken {
    /// Sends a CancelRequest. The server gives no answer; the cancelled statement fails with
    /// SQLSTATE `57014` on its own connection.
    pub async fn cancel(&self) -> Result<(), Error> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = bytes::BytesMut::new();
        postgres_protocol::message::frontend::cancel_request(
            self.process_id,
            self.secret_key,
            &mut buf,
        );
        async fn send<S: AsyncRead + AsyncWrite + Unpin>(
            mut s: S,
            buf: &[u8],
        ) -> Result<(), Error> {
            s.write_all(buf).await?;
            // The server closes the socket once it has read the request.
            let mut sink = [0u8; 1];
            let _ = s.read(&mut sink).await;
            Ok(())
        }
        match &self.host {
            Host::Tcp(h) => send(TcpStream::connect((h.as_str(), self.port)).await?, &buf).await,
            Host::Unix(dir) => {
                send(
                    UnixStream::connect(socket_path(dir, self.port)).await?,
                    &buf,
                )
                .await
            }
        }
    }
}
