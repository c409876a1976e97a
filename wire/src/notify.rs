//! LISTEN/NOTIFY on a dedicated connection.
//!
//! A [`Listener`] owns its own connection (notifications are per session, so it cannot share a
//! pool connection). When that connection is lost it reconnects with backoff, re-issues `LISTEN`
//! for every channel, and reports [`Event::Reconnected`]: notifications sent while it was away are
//! lost, so the consumer should re-check whatever state the notifications were about.
//!
//! `recv` is cancel-safe: a notification is only taken from the internal queue when it is returned.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::client::Client;
use crate::config::Config;
use crate::connection::Connection;
use crate::error::Error;

/// One `NOTIFY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Backend process that sent it.
    pub process_id: i32,
    /// Channel name.
    pub channel: String,
    /// Payload (may be empty).
    pub payload: String,
}

/// What [`Listener::recv`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A notification arrived.
    Notification(Notification),
    /// The connection was re-established; notifications may have been missed.
    Reconnected,
}

/// A dedicated LISTEN connection.
#[derive(Debug)]
pub struct Listener {
    config: Config,
    conn: Connection,
    rx: mpsc::UnboundedReceiver<Notification>,
    channels: BTreeSet<String>,
}

impl Listener {
    /// Connects a new session for notifications.
    pub async fn connect(config: &Config) -> Result<Listener, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Connection::connect_inner(config, Some(tx)).await?;
        Ok(Listener {
            config: config.clone(),
            conn,
            rx,
            channels: BTreeSet::new(),
        })
    }

    /// Starts listening on `channel`.
    pub async fn listen(&mut self, channel: &str) -> Result<(), Error> {
        self.conn
            .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
            .await?;
        self.channels.insert(channel.to_owned());
        Ok(())
    }

    /// Stops listening on `channel`.
    pub async fn unlisten(&mut self, channel: &str) -> Result<(), Error> {
        self.conn
            .batch_execute(&format!("UNLISTEN {}", quote_ident(channel)))
            .await?;
        self.channels.remove(channel);
        Ok(())
    }

    /// The next notification, or [`Event::Reconnected`] after the connection had to be rebuilt.
    pub async fn recv(&mut self) -> Event {
        if let Some(n) = self.rx.recv().await {
            return Event::Notification(n);
        }
        // The connection task stopped: rebuild it until it works.
        let mut backoff = Duration::from_millis(50);
        let mut first = true;
        loop {
            match self.reconnect().await {
                Ok(()) => return Event::Reconnected,
                Err(e) => {
                    // Loud once per outage, quiet while it lasts.
                    if std::mem::take(&mut first) {
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting with backoff");
                    } else {
                        tracing::debug!(error = %e, "LISTEN reconnect failed; retrying in {backoff:?}");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn reconnect(&mut self) -> Result<(), Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Connection::connect_inner(&self.config, Some(tx)).await?;
        for ch in &self.channels {
            conn.batch_execute(&format!("LISTEN {}", quote_ident(ch)))
                .await?;
        }
        self.conn = conn;
        self.rx = rx;
        Ok(())
    }

    /// The underlying connection (for sending `NOTIFY` or running queries on the same session).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Quotes an identifier for SQL (`"` doubled).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
