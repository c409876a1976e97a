//! Startup and authentication (trust, cleartext, MD5, SCRAM-SHA-256), before the connection task
//! takes the socket over.

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::{Config, TargetSessionAttrs};
use crate::error::{DbError, Error};

/// What the server told us during startup.
#[derive(Debug, Clone, Default)]
pub(crate) struct Session {
    pub process_id: i32,
    pub secret_key: i32,
    pub server_version: String,
}

/// Runs startup and authentication on `stream`. Returns the session and any bytes read past the
/// first `ReadyForQuery` (none in practice; handed to the connection task anyway).
pub(crate) async fn startup<S>(
    stream: &mut S,
    config: &Config,
) -> Result<(Session, BytesMut), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut params: Vec<(&str, String)> = vec![
        ("user", config.user.clone()),
        ("database", config.dbname.clone()),
        ("application_name", config.application_name.clone()),
        ("client_encoding", "UTF8".into()),
        ("DateStyle", "ISO".into()),
        ("TimeZone", "UTC".into()),
    ];
    if let Some(t) = config.statement_timeout {
        params.push(("statement_timeout", t.as_millis().to_string()));
    }
    params.extend(config.settings.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let mut out = BytesMut::new();
    frontend::startup_message(params.iter().map(|(k, v)| (*k, v.as_str())), &mut out)
        .map_err(Error::Io)?;
    stream.write_all(&out).await?;
    stream.flush().await?;

    let mut buf = BytesMut::with_capacity(8192);
    let mut session = Session::default();
    let mut scram: Option<ScramSha256> = None;
    loop {
        let msg = read_message(stream, &mut buf).await?;
        out.clear();
        match msg {
            Message::AuthenticationOk => {}
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password(config)?.as_bytes(), &mut out)
                    .map_err(Error::Io)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(
                    config.user.as_bytes(),
                    password(config)?.as_bytes(),
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), &mut out).map_err(Error::Io)?;
            }
            Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let mut found = false;
                while let Some(m) = mechanisms.next().map_err(Error::Io)? {
                    found |= m == SCRAM_SHA_256;
                }
                if !found {
                    return Err(Error::Auth(
                        "server offers no SASL mechanism we support".into(),
                    ));
                }
                let s =
                    ScramSha256::new(password(config)?.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)
                    .map_err(Error::Io)?;
                scram = Some(s);
            }
            Message::AuthenticationSaslContinue(body) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| Error::protocol("SASL continue without SASL start"))?;
                s.update(body.data())
                    .map_err(|e| Error::Auth(format!("SCRAM: {e}")))?;
                frontend::sasl_response(s.message(), &mut out).map_err(Error::Io)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| Error::protocol("SASL final without SASL start"))?;
                s.finish(body.data())
                    .map_err(|e| Error::Auth(format!("SCRAM server proof: {e}")))?;
            }
            Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationSspi => {
                return Err(Error::Auth("unsupported authentication method".into()));
            }
            Message::BackendKeyData(k) => {
                session.process_id = k.process_id();
                session.secret_key = k.secret_key();
            }
            Message::ParameterStatus(p) => {
                if p.name().map_err(Error::Io)? == "server_version" {
                    session.server_version = p.value().map_err(Error::Io)?.to_owned();
                }
            }
            Message::NoticeResponse(n) => {
                if let Ok(n) = DbError::parse(n.fields()) {
                    tracing::debug!(notice = %n, "startup notice");
                }
            }
            Message::ErrorResponse(e) => return Err(DbError::parse(e.fields())?.into()),
            Message::ReadyForQuery(_) => {
                if config.target_session_attrs == TargetSessionAttrs::ReadWrite
                    && read_only(stream, &mut buf).await?
                {
                    return Err(Error::ReadOnly);
                }
                return Ok((session, buf));
            }
            _ => return Err(Error::protocol("unexpected message during startup")),
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            // A TLS stream may hold the last record back until flushed.
            stream.flush().await?;
        }
    }
}

/// Whether the session is read-only (`SHOW transaction_read_only`: on in a hot standby and with
/// `default_transaction_read_only`), asked as libpq asks for `target_session_attrs=read-write`.
/// One more round trip per connection, only when asked for.
async fn read_only<S>(stream: &mut S, buf: &mut BytesMut) -> Result<bool, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    frontend::query("SHOW transaction_read_only", &mut out).map_err(Error::Io)?;
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut value = None;
    loop {
        match read_message(stream, buf).await? {
            Message::DataRow(row) => {
                let ranges: Vec<_> = row.ranges().collect().map_err(Error::Io)?;
                if let Some(Some(r)) = ranges.first() {
                    value = Some(row.buffer()[r.clone()].to_vec());
                }
            }
            Message::ErrorResponse(e) => return Err(DbError::parse(e.fields())?.into()),
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    match value.as_deref() {
        Some(b"on") => Ok(true),
        Some(b"off") => Ok(false),
        _ => Err(Error::protocol("no answer to SHOW transaction_read_only")),
    }
}

fn password(config: &Config) -> Result<&str, Error> {
    config
        .password
        .as_deref()
        .ok_or_else(|| Error::Auth("the server asks for a password and none is configured".into()))
}

/// Reads one backend message, buffering partial frames.
pub(crate) async fn read_message<S>(stream: &mut S, buf: &mut BytesMut) -> Result<Message, Error>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some(m) = Message::parse(buf).map_err(|e| Error::protocol(e.to_string()))? {
            return Ok(m);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}
