//! The application: shared state and the router.
//!
//! Routing is a `match` on the method and the percent-decoded path segments — every route of
//! the contract is visible in one place. Unknown paths answer `404 not_found`, a known path
//! with another method `405 method_not_allowed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use queen_engine::Engine;

use crate::auth::{Auth, Role};
use crate::body::{self, Resp};
use crate::console;
use crate::error::{ApiError, Code};
use crate::query::{Query, percent_decode};
use crate::routes::messages::{self, PopTarget};
use crate::routes::{ephemeral, inspect, kv, ops, queues, reads, streams};
use crate::stats::{RequestStats, Throughput};
use queen_engine::maintenance::Mode;

/// HTTP settings.
#[derive(Debug, Clone, Copy)]
pub struct HttpConfig {
    /// Largest request body accepted (`413` above).
    pub body_limit: usize,
    /// Bytes of request bodies held at once over all requests; a body that does not fit waits
    /// for no one: `503 busy` (bounded memory under any mix of requests).
    pub body_budget_bytes: usize,
    /// Time allowed to receive a whole request body (`408` after).
    pub body_read_timeout: Duration,
    /// Time allowed for a client to send the request headers.
    pub header_read_timeout: Duration,
    /// Upper bound of a long-poll's `timeout`.
    pub max_long_poll: Duration,
    /// Where a named consumer group starts when a pop gives no `subscriptionMode`
    /// (`DEFAULT_SUBSCRIPTION_MODE`; none: at the first message).
    pub default_subscription: Option<queen_engine::Subscription>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            body_limit: 16 * 1024 * 1024,
            body_budget_bytes: 64 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_long_poll: Duration::from_secs(60),
            default_subscription: None,
        }
    }
}

/// Shared state of the HTTP layer.
#[derive(Debug)]
pub struct App {
    pub(crate) engine: Engine,
    pub(crate) config: HttpConfig,
    pub(crate) started: Instant,
    pub(crate) requests: RequestStats,
    pub(crate) throughput: Throughput,
    pub(crate) auth: Option<Auth>,
    /// Queue details rendered once per analytics snapshot.
    pub(crate) details: Arc<crate::rendered::RenderedDetails>,
    /// Bytes of request bodies being read or served, at most `body_budget_bytes`.
    pub(crate) body_budget: Arc<tokio::sync::Semaphore>,
    ready: AtomicBool,
}

impl App {
    /// A new application over an engine; `auth` turns on JWT checks (docs/api.md, "Operations").
    pub fn new(engine: Engine, config: HttpConfig, auth: Option<Auth>) -> Arc<App> {
        let app = Arc::new(App {
            engine,
            config,
            started: Instant::now(),
            requests: RequestStats::default(),
            throughput: Throughput::default(),
            auth,
            details: Arc::default(),
            body_budget: Arc::new(tokio::sync::Semaphore::new(config.body_budget_bytes)),
            ready: AtomicBool::new(true),
        });
        let weak = Arc::downgrade(&app);
        tokio::spawn(async move {
            loop {
                let Some(app) = weak.upgrade() else { return };
                let (pushed, popped, acked) = app.engine.metrics().snapshot();
                app.throughput.sample([pushed, popped, acked]);
                drop(app);
                tokio::time::sleep(Throughput::INTERVAL).await;
            }
        });
        app
    }

    /// Marks the server ready (or not) for `/ready`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether a maintenance mode is on on this server.
    pub(crate) fn maintenance_on(&self, mode: Mode) -> bool {
        self.engine.maintenance_on(mode)
    }

    /// The request statistics.
    pub fn requests(&self) -> &RequestStats {
        &self.requests
    }

    /// Serves one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        let started = Instant::now();
        let _in_flight = self.requests.start();
        let is_long_poll = req
            .uri()
            .query()
            .is_some_and(|q| q.contains("wait=true") || q.contains("wait=1"));
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let mut resp = match self.route(req).await {
            Ok(r) => r,
            Err(e) => body::error(&e),
        };
        body::cors(&mut resp);
        tracing::debug!(%method, %uri, status = resp.status().as_u16(), elapsed = ?started.elapsed(), "request");
        self.requests.finish(
            started.elapsed(),
            resp.status().is_server_error(),
            !is_long_poll,
        );
        resp
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Resp, ApiError> {
        let (parts, incoming) = req.into_parts();
        if parts.method == Method::OPTIONS {
            return Ok(body::empty(StatusCode::NO_CONTENT));
        }
        let segs: Vec<String> = parts
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                ApiError::bad_request(Code::InvalidPath, "malformed percent-encoding in the path")
            })?;
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let query = Query::parse(parts.uri.query())?;
        let m = &parts.method;
        let get = *m == Method::GET;
        let post = *m == Method::POST;
        let delete = *m == Method::DELETE;
        let allow = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Code::MethodNotAllowed,
                    format!("{m} is not allowed here"),
                ))
            }
        };
        // The public probes answer GET and HEAD (hyper sends no body for HEAD).
        let probe = get || *m == Method::HEAD;
        match segs.as_slice() {
            ["health"] => {
                allow(probe)?;
                Ok(ops::health(self).await)
            }
            ["ready"] => {
                allow(probe)?;
                Ok(ops::ready(self))
            }
            ["metrics"] => {
                allow(probe)?;
                Ok(ops::metrics(self))
            }
            ["metrics", "prometheus"] => {
                allow(probe)?;
                Ok(ops::prometheus(self))
            }
            // Path first, then method: a known path with another method is a 405. Stream
            // processing has a prefix of its own (`/streams/v1/…`), behind the same token check;
            // its routes are matched as `["streams", …]`.
            [area @ ("api" | "streams"), "v1", tail @ ..] => {
                let streams = *area == "streams";
                let streams_path: Vec<&str>;
                let rest: &[&str] = if streams {
                    streams_path = std::iter::once("streams")
                        .chain(tail.iter().copied())
                        .collect();
                    &streams_path
                } else {
                    tail
                };
                let principal = match &self.auth {
                    Some(auth) => Some(
                        auth.check(
                            parts
                                .headers
                                .get(hyper::header::AUTHORIZATION)
                                .and_then(|v| v.to_str().ok()),
                            required_role(m, rest),
                        )
                        .await?,
                    ),
                    None => None,
                };
                let sub = principal.as_ref().and_then(|p| p.sub.as_deref());
                // The body is read only now: after the token, before any other work.
                let (bytes, _budget) = if post || *m == Method::PUT {
                    body::read(&parts.headers, incoming, &self.config, &self.body_budget).await?
                } else {
                    (Bytes::new(), None)
                };
                let body = post.then_some(&bytes[..]);
                match rest {
                    ["push"] => {
                        allow(post)?;
                        messages::push(self, &bytes, sub).await
                    }
                    ["pop"] => {
                        allow(get)?;
                        let target = PopTarget::Tagged {
                            namespace: query.text("namespace"),
                            task: query.text("task"),
                        };
                        messages::pop(self, target, &query).await
                    }
                    ["pop", "queue", q] => {
                        allow(get)?;
                        messages::pop(self, PopTarget::Queue((*q).to_owned()), &query).await
                    }
                    ["pop", "queue", q, "partition", p] => {
                        allow(get)?;
                        let target = PopTarget::Partition((*q).to_owned(), (*p).to_owned());
                        messages::pop(self, target, &query).await
                    }
                    ["ack"] => {
                        allow(post)?;
                        messages::ack(self, &bytes).await
                    }
                    ["ack", "batch"] => {
                        allow(post)?;
                        messages::ack_batch(self, &bytes).await
                    }
                    ["transaction"] => {
                        allow(post)?;
                        messages::transaction(self, &bytes, sub).await
                    }
                    ["lease", id, "extend"] => {
                        allow(post)?;
                        messages::extend_lease(self, id, &bytes).await
                    }
                    ["fetch"] => {
                        allow(post)?;
                        reads::fetch(self, &bytes).await
                    }
                    ["partitions", "changed"] => {
                        allow(post)?;
                        reads::changed(self, &bytes).await
                    }
                    ["kv"] => {
                        allow(post)?;
                        kv::apply(self, &bytes).await
                    }
                    ["locks"] => {
                        allow(post)?;
                        kv::locks(self, &bytes).await
                    }
                    ["timers"] => {
                        allow(post)?;
                        kv::timers(self, &bytes).await
                    }
                    ["timers", q, key @ ..] if delete && !key.is_empty() => {
                        kv::cancel_timer(self, q, key, &query).await
                    }
                    ["timers", q, key @ ..] => {
                        allow(get)?;
                        kv::read_timers(self, q, key, &query).await
                    }
                    ["configure"] => {
                        allow(post)?;
                        queues::configure(self, &bytes).await
                    }
                    ["ephemeral", "push"] => {
                        allow(post)?;
                        ephemeral::push(self, &bytes)
                    }
                    ["ephemeral", "pop"] => {
                        allow(get)?;
                        ephemeral::pop(self, &query).await
                    }
                    ["ephemeral", "ack"] => {
                        allow(post)?;
                        ephemeral::ack(self, &bytes)
                    }
                    ["ephemeral", "configure"] => {
                        allow(post)?;
                        ephemeral::configure(self, &bytes).await
                    }
                    ["ephemeral", "reset"] => {
                        allow(post)?;
                        ephemeral::reset(self, &bytes)
                    }
                    ["ephemeral", "queue", q] => {
                        allow(delete)?;
                        ephemeral::delete(self, q).await
                    }
                    ["ephemeral", "queues"] => {
                        allow(get)?;
                        Ok(ephemeral::queues(self))
                    }
                    ["ephemeral", "queues", q, "depth"] => {
                        allow(get)?;
                        ephemeral::depth(self, q, &query)
                    }
                    ["resources", "queues"] => {
                        allow(get)?;
                        queues::list_queues(self).await
                    }
                    ["resources", "queues", q] if delete => queues::delete_queue(self, q).await,
                    ["resources", "queues", q] => {
                        allow(get)?;
                        queues::get_queue(self, q).await
                    }
                    ["resources", "namespaces"] => {
                        allow(get)?;
                        queues::namespaces(self).await
                    }
                    ["resources", "tasks"] => {
                        allow(get)?;
                        queues::tasks(self).await
                    }
                    ["resources", "overview"] => {
                        allow(get)?;
                        queues::overview(self).await
                    }
                    ["messages"] => {
                        allow(get)?;
                        inspect::list_messages(self, &query).await
                    }
                    ["messages", pid, txid] if delete => {
                        inspect::delete_message(self, pid, txid).await
                    }
                    ["messages", pid, txid] => {
                        allow(get)?;
                        inspect::message(self, pid, txid).await
                    }
                    ["messages", pid, txid, "retry"] => {
                        allow(post)?;
                        inspect::retry_message(self, pid, txid).await
                    }
                    ["dlq"] => {
                        allow(get)?;
                        inspect::dead_letters(self, &query).await
                    }
                    ["traces"] => {
                        allow(post)?;
                        inspect::add_trace(self, &bytes).await
                    }
                    ["traces", "names"] => {
                        allow(get)?;
                        inspect::trace_names(self, &query).await
                    }
                    ["traces", "by-name", name] => {
                        allow(get)?;
                        inspect::traces_by_name(self, name, &query).await
                    }
                    ["traces", pid, txid] => {
                        allow(get)?;
                        inspect::message_traces(self, pid, txid).await
                    }
                    ["consumer-groups"] => {
                        allow(get)?;
                        inspect::consumer_groups(self).await
                    }
                    ["consumer-groups", "lagging"] => {
                        allow(get)?;
                        inspect::lagging_groups(self, &query).await
                    }
                    ["consumer-groups", g] if delete => {
                        inspect::delete_group(self, g, None, &query).await
                    }
                    ["consumer-groups", g] => {
                        allow(get)?;
                        inspect::consumer_group(self, g).await
                    }
                    ["consumer-groups", g, "queues", q] => {
                        allow(delete)?;
                        inspect::delete_group(self, g, Some(q), &query).await
                    }
                    ["consumer-groups", g, "subscription"] => {
                        allow(post)?;
                        inspect::set_subscription(self, g, &bytes).await
                    }
                    ["consumer-groups", g, "queues", q, "seek"] => {
                        allow(post)?;
                        inspect::seek(self, g, q, None, &bytes).await
                    }
                    ["consumer-groups", g, "queues", q, "partitions", p, "seek"] => {
                        allow(post)?;
                        inspect::seek(self, g, q, Some(p), &bytes).await
                    }
                    ["whoami"] => {
                        allow(get)?;
                        Ok(ops::whoami(self.auth.is_some(), principal.as_ref()))
                    }
                    ["status"] => {
                        allow(get)?;
                        inspect::status(self).await
                    }
                    ["status", "queues"] => {
                        allow(get)?;
                        queues::list_queues(self).await
                    }
                    ["status", "queues", q] => {
                        allow(get)?;
                        queues::get_queue(self, q).await
                    }
                    ["status", "queues", q, "messages"] => {
                        allow(get)?;
                        inspect::queue_messages(self, q, &query).await
                    }
                    ["status", "analytics"] => {
                        allow(get)?;
                        Ok(inspect::analytics(self))
                    }
                    ["status", "buffers"] => {
                        allow(get)?;
                        Ok(ops::buffers(self))
                    }
                    ["system", "maintenance"] => {
                        allow(get || post)?;
                        ops::maintenance(self, Mode::Push, body).await
                    }
                    ["system", "buffer", "quarantine", "replay"] => {
                        allow(post)?;
                        ops::replay_quarantine(self).await
                    }
                    ["system", "maintenance", "pop"] => {
                        allow(get || post)?;
                        ops::maintenance(self, Mode::Pop, body).await
                    }
                    ["streams", "queries"] if streams => {
                        allow(post)?;
                        streams::register(self, &bytes).await
                    }
                    ["streams", "state", "get"] if streams => {
                        allow(post)?;
                        streams::state_get(self, &bytes).await
                    }
                    ["streams", "cycle"] if streams => {
                        allow(post)?;
                        streams::cycle(self, &bytes, sub).await
                    }
                    _ => Err(ApiError::not_found(format!(
                        "no route for {m} {}",
                        parts.uri.path()
                    ))),
                }
            }
            _ if probe => console::serve(parts.uri.path()).ok_or_else(|| {
                ApiError::not_found(format!("no route for {m} {}", parts.uri.path()))
            }),
            _ => Err(ApiError::not_found(format!(
                "no route for {m} {}",
                parts.uri.path()
            ))),
        }
    }
}

/// The role a route needs when auth is on: Queen's levels (its `auth_middleware`), listed
/// route by route in `docs/auth.md`. Reads need read-only, except pops (they lease and
/// commit); server-wide switches and the deletion of queues and consumer groups need admin;
/// everything else — message traffic, queue configuration, traces, seeks, DLQ retries,
/// message deletion — needs read-write.
fn required_role(m: &Method, rest: &[&str]) -> Role {
    match (m, rest) {
        (_, ["system", ..])
        | (&Method::DELETE, ["consumer-groups", ..] | ["resources", "queues", ..]) => Role::Admin,
        (&Method::GET, ["pop", ..] | ["ephemeral", "pop"]) => Role::ReadWrite,
        (&Method::GET, _) | (&Method::POST, ["fetch"] | ["partitions", "changed"]) => {
            Role::ReadOnly
        }
        _ => Role::ReadWrite,
    }
}
