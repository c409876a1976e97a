//! Connection settings: `postgres://` URLs, libpq `key=value` strings and the `PG_*` variables.
//!
//! TLS follows libpq's `sslmode` (default `prefer`) and `sslrootcert`; Queen's `PG_USE_SSL`
//! and `PG_SSL_REJECT_UNAUTHORIZED` map onto them (see [`Config::from_lookup`] and the `tls`
//! module).
//!
//! Only the settings this client acts on are understood; unknown keys are rejected so a typo never
//! silently falls back to a default.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::tls::{SslMode, TlsSettings};

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address.
    Tcp(String),
    /// A directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    Unix(PathBuf),
}

/// Settings for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Server address.
    pub host: Host,
    /// TCP port, or the number in the Unix socket's name.
    pub port: u16,
    /// Role to log in as.
    pub user: String,
    /// Password, for cleartext, MD5 and SCRAM-SHA-256 authentication.
    pub password: Option<String>,
    /// Database name (defaults to the user name).
    pub dbname: String,
    /// Reported as `application_name`.
    pub application_name: String,
    /// Time allowed for TCP connect plus startup and authentication.
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout` set at connect; `None` leaves the server's default.
    pub statement_timeout: Option<Duration>,
    /// TCP keepalive idle time; `None` disables keepalive probes.
    pub keepalive_idle: Option<Duration>,
    /// Further run-time parameters set at connect (`work_mem`, say), as (name, value): sent
    /// in the startup message, so they hold for the session and every reconnect.
    pub settings: Vec<(String, String)>,
    /// TLS over TCP (`sslmode`); Unix sockets never use it.
    pub ssl_mode: SslMode,
    /// A PEM file of the roots `verify-ca` / `verify-full` trust (`sslrootcert`); `None`: the
    /// operating system's store.
    pub ssl_root_cert: Option<PathBuf>,
    /// Whether a server that takes no writes is acceptable (`target_session_attrs`).
    pub target_session_attrs: TargetSessionAttrs,
    /// Further servers, tried in order after `host:port` when a connection cannot be made or
    /// (with `target_session_attrs=read-write`) the server takes no writes: libpq's
    /// comma-separated `host` and `port` lists, how a client finds the primary of a cluster
    /// without a proxy in front.
    pub more_hosts: Vec<(Host, u16)>,
}

/// What kind of server a connection accepts (libpq's `target_session_attrs`, the two values
/// this client acts on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetSessionAttrs {
    /// Any server.
    #[default]
    Any,
    /// Only one that takes writes: `transaction_read_only` is off after startup. A hot standby,
    /// or a server with `default_transaction_read_only` on, is refused with
    /// [`Error::ReadOnly`]; a connection whose statement is refused as read-only (SQLSTATE
    /// 25006: the server was demoted, or made read-only, under it) is closed after answering,
    /// so a pool reconnects, to the new primary once a failover is done.
    ReadWrite,
}

impl TargetSessionAttrs {
    fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            host: Host::Tcp("localhost".into()),
            port: 5432,
            user: "postgres".into(),
            password: None,
            dbname: "postgres".into(),
            application_name: "queen".into(),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: None,
            keepalive_idle: Some(Duration::from_secs(10)),
            settings: Vec::new(),
            ssl_mode: SslMode::default(),
            ssl_root_cert: None,
            target_session_attrs: TargetSessionAttrs::default(),
            more_hosts: Vec::new(),
        }
    }
}

impl Config {
    /// A config for a Unix socket in `dir`.
    pub fn unix(dir: impl Into<PathBuf>, port: u16, user: &str, dbname: &str) -> Config {
        Config {
            host: Host::Unix(dir.into()),
            port,
            user: user.into(),
            dbname: dbname.into(),
            ..Config::default()
        }
    }

    /// Parses a `postgres://` / `postgresql://` URL or a libpq `key=value` string.
    pub fn parse(s: &str) -> Result<Config, Error> {
        let s = s.trim();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            parse_url(s)
        } else {
            parse_key_values(s)
        }
    }

    /// Reads `DATABASE_URL`, or else the `PG_HOST`, `PG_PORT`, `PG_USER`, `PG_PASSWORD` and
    /// `PG_DB` variables. `None` when none of them is set (the caller then embeds a server).
    ///
    /// Queen's `PG_USE_SSL=true` asks for TLS: `verify-full` against the system's roots, or
    /// `require` (encrypted, not authenticated) with `PG_SSL_REJECT_UNAUTHORIZED=false`. With
    /// `DATABASE_URL` the URL's own `sslmode` rules (see [`Config::parse_beside_env`]).
    pub fn from_env() -> Result<Option<Config>, Error> {
        Config::from_lookup(env_var)
    }

    /// Parses a connection string given beside the environment (a command-line flag, say):
    /// `PG_USE_SSL=true` beside a string that does not require TLS is refused rather than
    /// ignored.
    pub fn parse_beside_env(s: &str) -> Result<Config, Error> {
        Config::parse_beside(s, env_var)
    }

    fn parse_beside(s: &str, get: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let c = Config::parse(s)?;
        let (use_ssl, _) = queen_ssl_variables(&get)?;
        if use_ssl && !c.ssl_mode.requires_tls() {
            return Err(Error::Config(format!(
                "PG_USE_SSL=true, but the connection string has sslmode={}: put \
                 sslmode=require or verify-full in it",
                c.ssl_mode
            )));
        }
        Ok(c)
    }

    /// [`Config::from_env`] over any variable lookup (testable without touching the process env).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Config>, Error> {
        if let Some(url) = get("DATABASE_URL") {
            return Config::parse_beside(&url, get).map(Some);
        }
        let (use_ssl, verify) = queen_ssl_variables(&get)?;
        let keys = ["PG_HOST", "PG_PORT", "PG_USER", "PG_PASSWORD", "PG_DB"];
        if keys.iter().all(|k| get(k).is_none()) {
            return Ok(None);
        }
        let mut c = Config::default();
        if let Some(h) = get("PG_HOST") {
            c.set("host", &h)?;
        }
        if let Some(p) = get("PG_PORT") {
            c.set("port", &p)?;
        }
        if let Some(u) = get("PG_USER") {
            c.dbname = u.clone();
            c.user = u;
        }
        c.password = get("PG_PASSWORD");
        if let Some(d) = get("PG_DB") {
            c.dbname = d;
        }
        if use_ssl {
            c.ssl_mode = if verify {
                SslMode::VerifyFull
            } else {
                SslMode::Require
            };
        }
        Ok(Some(c))
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> Config {
        Config {
            dbname: dbname.into(),
            ..self.clone()
        }
    }

    /// Every server to try, in order: `host:port`, then [`Config::more_hosts`].
    pub fn servers(&self) -> impl Iterator<Item = (&Host, u16)> {
        std::iter::once((&self.host, self.port)).chain(self.more_hosts.iter().map(|(h, p)| (h, *p)))
    }

    /// These settings for one of its servers only.
    pub fn for_server(&self, host: &Host, port: u16) -> Config {
        Config {
            host: host.clone(),
            port,
            more_hosts: Vec::new(),
            ..self.clone()
        }
    }

    /// A libpq `key=value` string for these settings (passwords included), e.g. to hand a
    /// child process its `DATABASE_URL`.
    pub fn to_key_values(&self) -> String {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let host = self
            .servers()
            .map(|(h, _)| match h {
                Host::Tcp(h) => h.clone(),
                Host::Unix(d) => d.to_string_lossy().into_owned(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let port = self
            .servers()
            .map(|(_, p)| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut s = format!(
            "host={} port={} user={} dbname={} application_name={} connect_timeout={}",
            quote(&host),
            port,
            quote(&self.user),
            quote(&self.dbname),
            quote(&self.application_name),
            self.connect_timeout.as_secs().max(1)
        );
        if let Some(p) = &self.password {
            s.push_str(&format!(" password={}", quote(p)));
        }
        s.push_str(&format!(" sslmode={}", self.ssl_mode));
        s.push_str(&format!(
            " target_session_attrs={}",
            self.target_session_attrs.as_str()
        ));
        if let Some(r) = &self.ssl_root_cert {
            s.push_str(&format!(" sslrootcert={}", quote(&r.to_string_lossy())));
        }
        s
    }

    /// Checks what can be checked of the TLS settings without connecting: that the trusted roots
    /// `verify-ca` / `verify-full` need can be read. Nothing to check for a Unix socket.
    pub fn check_tls(&self) -> Result<(), Error> {
        if self.servers().any(|(h, _)| matches!(h, Host::Tcp(_))) {
            crate::tls::check(&self.tls())
        } else {
            Ok(())
        }
    }

    /// The TLS settings of a TCP connection.
    pub(crate) fn tls(&self) -> TlsSettings {
        TlsSettings {
            mode: self.ssl_mode,
            root_cert: self.ssl_root_cert.clone(),
        }
    }

    /// Applies one libpq-style setting.
    fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        match key {
            "host" | "hostaddr" => {
                let mut hosts = value.split(',').map(host_from);
                self.host = hosts.next().unwrap_or_else(|| host_from(value));
                let port = self.port;
                self.more_hosts = hosts.map(|h| (h, port)).collect();
            }
            // After `host` (the parsers apply it last): one port for every host, or one each.
            "port" => {
                let ports = value
                    .split(',')
                    .map(parse_port)
                    .collect::<Result<Vec<_>, _>>()?;
                match ports.as_slice() {
                    [one] => {
                        self.port = *one;
                        self.more_hosts.iter_mut().for_each(|(_, p)| *p = *one);
                    }
                    [first, rest @ ..] if rest.len() == self.more_hosts.len() => {
                        self.port = *first;
                        for ((_, p), port) in self.more_hosts.iter_mut().zip(rest) {
                            *p = *port;
                        }
                    }
                    _ => {
                        return Err(Error::Config(format!(
                            "{} ports for {} hosts",
                            ports.len(),
                            self.more_hosts.len() + 1
                        )));
                    }
                }
            }
            "user" => self.user = value.into(),
            "password" => self.password = Some(value.into()),
            "dbname" => self.dbname = value.into(),
            "application_name" => self.application_name = value.into(),
            "connect_timeout" => self.connect_timeout = Duration::from_secs(parse_num(key, value)?),
            "statement_timeout" => {
                let ms = parse_num(key, value)?;
                self.statement_timeout = (ms > 0).then(|| Duration::from_millis(ms));
            }
            "keepalives_idle" => {
                let s = parse_num(key, value)?;
                self.keepalive_idle = (s > 0).then(|| Duration::from_secs(s));
            }
            "sslmode" => {
                self.ssl_mode = SslMode::parse(value).ok_or_else(|| {
                    Error::Config(format!(
                        "invalid sslmode `{value}` (disable, allow, prefer, require, verify-ca \
                         or verify-full)"
                    ))
                })?;
            }
            "target_session_attrs" => {
                self.target_session_attrs = match value {
                    "any" => TargetSessionAttrs::Any,
                    "read-write" => TargetSessionAttrs::ReadWrite,
                    _ => {
                        return Err(Error::Config(format!(
                            "target_session_attrs={value} is not supported (any or read-write)"
                        )));
                    }
                };
            }
            // libpq's `system` (PostgreSQL 16): the operating system's store, our default.
            "sslrootcert" if value == "system" => self.ssl_root_cert = None,
            "sslrootcert" => self.ssl_root_cert = Some(PathBuf::from(value)),
            _ => return Err(Error::Config(format!("unknown connection setting `{key}`"))),
        }
        Ok(())
    }
}

fn host_from(h: &str) -> Host {
    if h.starts_with('/') {
        Host::Unix(PathBuf::from(h))
    } else {
        Host::Tcp(h.into())
    }
}

fn parse_port(p: &str) -> Result<u16, Error> {
    p.parse()
        .map_err(|_| Error::Config(format!("invalid port `{p}`")))
}

fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// Queen's `PG_USE_SSL` (default false) and `PG_SSL_REJECT_UNAUTHORIZED` (default true).
fn queen_ssl_variables(get: &impl Fn(&str) -> Option<String>) -> Result<(bool, bool), Error> {
    let flag = |key, default| match get(key) {
        Some(v) => parse_bool(key, &v),
        None => Ok(default),
    };
    Ok((
        flag("PG_USE_SSL", false)?,
        flag("PG_SSL_REJECT_UNAUTHORIZED", true)?,
    ))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, Error> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::Config(format!("invalid boolean `{v}` for `{key}`"))),
    }
}

fn parse_num(key: &str, v: &str) -> Result<u64, Error> {
    v.parse()
        .map_err(|_| Error::Config(format!("invalid number `{v}` for `{key}`")))
}

fn parse_url(s: &str) -> Result<Config, Error> {
    let rest = s
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| Error::Config("missing scheme".into()))?;
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (main, None),
    };
    let mut c = Config::default();
    let mut user_given = false;
    let mut db_given = false;
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let (u, p) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !u.is_empty() {
                c.user = percent_decode(u)?;
                user_given = true;
            }
            if let Some(p) = p {
                c.password = Some(percent_decode(p)?);
            }
            hp
        }
        None => authority,
    };
    // `host[:port][,host[:port]…]`; a host without a port gets the default one.
    let mut servers = Vec::new();
    for entry in hostport.split(',').filter(|e| !e.is_empty()) {
        let (h, p) = if let Some(stripped) = entry.strip_prefix('[') {
            // [IPv6]:port
            let (h, after) = stripped
                .split_once(']')
                .ok_or_else(|| Error::Config("unterminated IPv6 address".into()))?;
            (h, after.strip_prefix(':'))
        } else {
            match entry.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (entry, None),
            }
        };
        let host = if h.is_empty() {
            c.host.clone()
        } else {
            host_from(&percent_decode(h)?)
        };
        let port = match p.filter(|p| !p.is_empty()) {
            Some(p) => parse_port(p)?,
            None => c.port,
        };
        servers.push((host, port));
    }
    let mut servers = servers.into_iter();
    if let Some((h, p)) = servers.next() {
        (c.host, c.port) = (h, p);
    }
    c.more_hosts = servers.collect();
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        c.dbname = percent_decode(db)?;
        db_given = true;
    }
    let mut port = None;
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        user_given |= k == "user";
        db_given |= k == "dbname";
        if k == "port" {
            port = Some(v);
            continue;
        }
        c.set(&k, &v)?;
    }
    if let Some(p) = port {
        c.set("port", &p)?;
    }
    if user_given && !db_given {
        c.dbname = c.user.clone();
    }
    Ok(c)
}

fn parse_key_values(s: &str) -> Result<Config, Error> {
    let mut c = Config::default();
    let mut db_given = false;
    let mut port = None;
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(ch) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(ch);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(Error::Config(format!("expected `=` after `{key}`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.push(
                        chars
                            .next()
                            .ok_or_else(|| Error::Config("dangling escape".into()))?,
                    ),
                    Some(ch) => value.push(ch),
                    None => return Err(Error::Config(format!("unterminated quote in `{key}`"))),
                }
            }
        } else {
            while let Some(ch) = chars.next_if(|c| !c.is_whitespace()) {
                if ch == '\\' {
                    value.push(
                        chars
                            .next()
                            .ok_or_else(|| Error::Config("dangling escape".into()))?,
                    );
                } else {
                    value.push(ch);
                }
            }
        }
        db_given |= key == "dbname";
        if key == "port" {
            port = Some(value);
            continue;
        }
        c.set(&key, &value)?;
        if key == "user" && !db_given {
            c.dbname = value;
        }
    }
    if let Some(p) = port {
        c.set("port", &p)?;
    }
    Ok(c)
}

fn percent_decode(s: &str) -> Result<String, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::Config(format!("bad percent-escape in `{s}`")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::Config(format!("`{s}` is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn url_with_everything() {
        let c = Config::parse(
            "postgres://al%40ice:p%3Ass@db.example:6543/queen?application_name=x&connect_timeout=2",
        )
        .unwrap();
        assert_eq!(c.user, "al@ice");
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        assert_eq!(c.host, Host::Tcp("db.example".into()));
        assert_eq!(c.port, 6543);
        assert_eq!(c.dbname, "queen");
        assert_eq!(c.application_name, "x");
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
    }

    #[test]
    fn url_unix_socket_and_defaults() {
        let c = Config::parse("postgresql://bob@%2Fvar%2Frun%2Fpostgresql").unwrap();
        assert_eq!(c.host, Host::Unix("/var/run/postgresql".into()));
        assert_eq!(c.dbname, "bob", "dbname defaults to the user");
        let c = Config::parse("postgresql:///app?host=/tmp&port=5433").unwrap();
        assert_eq!(c.host, Host::Unix("/tmp".into()));
        assert_eq!(c.port, 5433);
        assert_eq!(c.dbname, "app");
        let c = Config::parse("postgres://u@[::1]:5000/d").unwrap();
        assert_eq!(c.host, Host::Tcp("::1".into()));
        assert_eq!(c.port, 5000);
    }

    #[test]
    fn key_value_string() {
        let c = Config::parse(
            "host=/tmp/s port=5 user=me password='a b\\'c' dbname = d statement_timeout=1500",
        )
        .unwrap();
        assert_eq!(c.host, Host::Unix("/tmp/s".into()));
        assert_eq!(c.port, 5);
        assert_eq!(c.user, "me");
        assert_eq!(c.password.as_deref(), Some("a b'c"));
        assert_eq!(c.dbname, "d");
        assert_eq!(c.statement_timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn key_values_roundtrip() {
        let mut c = Config::parse("postgres://me:it's%20secret@h:7/db").unwrap();
        c.application_name = "a b".into();
        let back = Config::parse(&c.to_key_values()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn several_servers() {
        let tcp = |h: &str| Host::Tcp(h.into());
        let c = Config::parse("port=5433,5434 host=a,b dbname=d").unwrap();
        assert_eq!((c.host.clone(), c.port), (tcp("a"), 5433));
        assert_eq!(c.more_hosts, [(tcp("b"), 5434)]);
        let c = Config::parse("host=a,/run/pg,c port=6000").unwrap();
        assert_eq!(
            c.more_hosts,
            [(Host::Unix("/run/pg".into()), 6000), (tcp("c"), 6000)]
        );
        let c =
            Config::parse("postgres://u@a:1,[::1]:2,c/d?target_session_attrs=read-write").unwrap();
        assert_eq!((c.host.clone(), c.port), (tcp("a"), 1));
        assert_eq!(c.more_hosts, [(tcp("::1"), 2), (tcp("c"), 5432)]);
        assert_eq!(Config::parse(&c.to_key_values()).unwrap(), c);
        assert!(matches!(
            Config::parse("host=a,b,c port=1,2"),
            Err(Error::Config(m)) if m.contains("2 ports for 3 hosts")
        ));
    }

    #[test]
    fn tls_settings() {
        let c =
            Config::parse("postgres://u@db.example/d?sslmode=verify-full&sslrootcert=/etc/ca.pem")
                .unwrap();
        assert_eq!(c.ssl_mode, SslMode::VerifyFull);
        assert_eq!(c.ssl_root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let c = Config::parse("host=h sslmode=require sslrootcert=system").unwrap();
        assert_eq!((c.ssl_mode, c.ssl_root_cert), (SslMode::Require, None));
        assert_eq!(Config::parse("host=h").unwrap().ssl_mode, SslMode::Prefer);
        let mut c = Config::parse("host=h sslmode=verify-ca").unwrap();
        c.ssl_root_cert = Some("/a dir/it's.pem".into());
        assert_eq!(Config::parse(&c.to_key_values()).unwrap(), c);
    }

    #[test]
    fn queens_ssl_variables() {
        let lookup = |pairs: &[(&str, &str)]| {
            let env: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::from_lookup(|k| env.get(k).cloned())
        };
        let mode = |pairs: &[(&str, &str)]| lookup(pairs).unwrap().unwrap().ssl_mode;
        assert_eq!(mode(&[("PG_HOST", "h")]), SslMode::Prefer);
        assert_eq!(
            mode(&[("PG_HOST", "h"), ("PG_USE_SSL", "true")]),
            SslMode::VerifyFull
        );
        assert_eq!(
            mode(&[
                ("PG_HOST", "h"),
                ("PG_USE_SSL", "true"),
                ("PG_SSL_REJECT_UNAUTHORIZED", "false")
            ]),
            SslMode::Require
        );
        assert_eq!(
            mode(&[("PG_HOST", "h"), ("PG_USE_SSL", "false")]),
            SslMode::Prefer
        );
        assert!(matches!(
            lookup(&[("PG_HOST", "h"), ("PG_USE_SSL", "maybe")]),
            Err(Error::Config(_))
        ));
        // With DATABASE_URL the URL rules; a contradiction is refused, not ignored.
        assert!(matches!(
            lookup(&[("DATABASE_URL", "postgres://u@h/d"), ("PG_USE_SSL", "true")]),
            Err(Error::Config(m)) if m.contains("sslmode=prefer")
        ));
        assert_eq!(
            mode(&[
                ("DATABASE_URL", "postgres://u@h/d?sslmode=require"),
                ("PG_USE_SSL", "true")
            ]),
            SslMode::Require
        );
        // Only PG_USE_SSL set: no database configured (the server embeds one).
        assert_eq!(lookup(&[("PG_USE_SSL", "true")]).unwrap(), None);
    }

    proptest::proptest! {
        /// Whatever the settings hold, `to_key_values` writes a string that parses back to them.
        #[test]
        fn key_values_round_trip_any_settings(
            host in "[a-z0-9.-]{1,20}",
            port in 1u16..,
            user in "\\PC{1,12}",
            password in proptest::option::of("\\PC{0,12}"),
            dbname in "\\PC{1,12}",
            app in "\\PC{0,12}",
            mode in 0usize..6,
            root in proptest::option::of("/[^\\x00]{1,20}"),
            read_write: bool,
            more in proptest::collection::vec(("[a-z0-9.-]{1,20}", 1u16..), 0..3),
        ) {
            let modes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];
            let c = Config {
                host: Host::Tcp(host),
                port,
                user,
                password,
                dbname,
                application_name: app,
                ssl_mode: SslMode::parse(modes[mode]).unwrap(),
                ssl_root_cert: root.filter(|r| r != "system").map(PathBuf::from),
                target_session_attrs: if read_write {
                    TargetSessionAttrs::ReadWrite
                } else {
                    TargetSessionAttrs::Any
                },
                more_hosts: more.into_iter().map(|(h, p)| (Host::Tcp(h), p)).collect(),
                ..Config::default()
            };
            proptest::prop_assert_eq!(Config::parse(&c.to_key_values()).unwrap(), c);
        }

        /// Any input is either parsed or refused with a configuration error; nothing panics.
        #[test]
        fn any_string_parses_or_is_refused(s in "\\PC{0,60}") {
            if let Err(e) = Config::parse(&s) {
                proptest::prop_assert!(matches!(e, Error::Config(_)), "{e}");
            }
            if let Err(e) = Config::parse(&format!("postgres://{s}")) {
                proptest::prop_assert!(matches!(e, Error::Config(_)), "{e}");
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            "port=x",
            "host",
            "password='open",
            "frobnicate=1",
            "postgres://h:99999/d",
            "postgres://h/%zz",
            "sslmode=verify_full",
            "target_session_attrs=standby",
        ] {
            assert!(matches!(Config::parse(bad), Err(Error::Config(_))), "{bad}");
        }
    }

    #[test]
    fn environment() {
        let env: HashMap<&str, &str> = HashMap::new();
        assert_eq!(
            Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap(),
            None
        );
        let env = HashMap::from([
            ("PG_HOST", "10.0.0.1"),
            ("PG_PORT", "7000"),
            ("PG_USER", "q"),
            ("PG_PASSWORD", "s"),
        ]);
        let c = Config::from_lookup(|k| env.get(k).map(|v| v.to_string()))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.host, c.port, c.user.as_str(), c.dbname.as_str()),
            (Host::Tcp("10.0.0.1".into()), 7000, "q", "q")
        );
        assert_eq!(c.password.as_deref(), Some("s"));
        let env = HashMap::from([("DATABASE_URL", "postgres://x@y/z"), ("PG_HOST", "ignored")]);
        let c = Config::from_lookup(|k| env.get(k).map(|v| v.to_string()))
            .unwrap()
            .unwrap();
        assert_eq!(c.host, Host::Tcp("y".into()));
    }
}
