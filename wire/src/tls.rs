//! TLS to the server: libpq's `sslmode` and `sslrootcert`, over rustls.
//!
//! A TCP connection first sends PostgreSQL's `SSLRequest` and reads the one-byte answer: `S`
//! (the server will speak TLS: the handshake follows on the same socket) or `N` (it will not).
//! What happens then depends on the mode:
//!
//! | mode | server answers `S` | server answers `N` | certificate checks |
//! |---|---|---|---|
//! | `disable` | (never asked) | plaintext | – |
//! | `allow`, `prefer` (default) | TLS | plaintext | none |
//! | `require` | TLS | error | none (the chain, when `sslrootcert` names a file) |
//! | `verify-ca` | TLS | error | chain to a trusted root |
//! | `verify-full` | TLS | error | chain, and the host name (or IP) |
//!
//! As in libpq, Unix sockets never use TLS whatever the mode, and `prefer` connects again
//! without TLS when the handshake fails (no protocol version or cipher in common; the
//! certificate is not checked in that mode). `allow` is taken as `prefer` (libpq would first
//! try plaintext and fall back to TLS). The trusted roots are the PEM file
//! `sslrootcert` names, or, without one (or with `sslrootcert=system`), the operating system's
//! store (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured); libpq would look for
//! `~/.postgresql/root.crt` instead. SCRAM authentication over TLS uses no channel binding
//! (`SCRAM-SHA-256`, which every server offering `-PLUS` also accepts).
//!
//! Only the server's answer byte is read before the handshake, so nothing an attacker injects
//! ahead of the TLS stream can be taken for the server's (the buffer-stuffing flaw of
//! CVE-2021-23222). Cancel requests go over a plaintext socket of their own, as libpq's do; the
//! server accepts them whatever `pg_hba.conf` demands.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::verify_server_cert_signed_by_trust_anchor;
use tokio_rustls::rustls::crypto::{self, CryptoProvider, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::error::Error;

/// Whether and how a TCP connection uses TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum SslMode {
    /// Never: plaintext only.
    Disable,
    /// Taken as [`SslMode::Prefer`].
    Allow,
    /// TLS when the server offers it, with no certificate check; plaintext otherwise.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS with the server's certificate chained to a trusted root.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling.
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a server that refuses TLS must be refused.
    pub fn requires_tls(self) -> bool {
        self >= SslMode::Require
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What TLS a TCP connection asks for: the mode and where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TlsSettings {
    pub mode: SslMode,
    /// A PEM file of trusted roots; `None`: the operating system's store.
    pub root_cert: Option<PathBuf>,
}

/// The socket after negotiation.
pub(crate) enum Negotiated {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The `SSLRequest` exchange, then the TLS handshake when both sides want one.
pub(crate) async fn negotiate(
    mut stream: TcpStream,
    host: &str,
    tls: &TlsSettings,
) -> Result<Negotiated, Error> {
    if tls.mode == SslMode::Disable {
        return Ok(Negotiated::Plain(stream));
    }
    // Built before anything is sent: a bad root file is a configuration error, whatever the
    // server would have answered.
    let config = client_config(tls)?;
    let mut request = bytes::BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut request);
    stream.write_all(&request).await?;
    match stream.read_u8().await? {
        b'S' => {}
        b'N' if !tls.mode.requires_tls() => return Ok(Negotiated::Plain(stream)),
        b'N' => {
            return Err(Error::Tls(format!(
                "the server does not accept TLS connections (sslmode={})",
                tls.mode
            )));
        }
        other => {
            return Err(Error::protocol(format!(
                "unexpected answer {other:#04x} to SSLRequest"
            )));
        }
    }
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| Error::Config(format!("`{host}` is not a valid TLS server name")))?;
    TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map(|s| Negotiated::Tls(Box::new(s)))
        .map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(tls) => Error::Tls(format!("handshake: {tls}")),
                None => Error::Io(e),
            },
        )
}

/// Checks the settings without connecting (a root file that cannot be read, say), so a server
/// can refuse a bad configuration at start.
pub(crate) fn check(tls: &TlsSettings) -> Result<(), Error> {
    if tls.mode == SslMode::Disable {
        return Ok(());
    }
    client_config(tls).map(drop)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// The rustls client configuration for `tls`.
fn client_config(tls: &TlsSettings) -> Result<ClientConfig, Error> {
    let provider = provider();
    // As libpq: `require` with a root file named checks the chain, as `verify-ca` does.
    let check = match tls.mode {
        SslMode::VerifyFull => Check::ChainAndName(roots(tls)?),
        SslMode::VerifyCa => Check::Chain(roots(tls)?),
        SslMode::Require if tls.root_cert.is_some() => Check::Chain(roots(tls)?),
        _ => Check::Nothing,
    };
    let verifier = Verifier {
        check,
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The trusted roots: `sslrootcert`'s PEM file, or the operating system's store.
fn roots(tls: &TlsSettings) -> Result<Arc<RootCertStore>, Error> {
    let mut store = RootCertStore::empty();
    let what = match &tls.root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::Config(format!("sslrootcert {}: {e}", path.display())))?;
            store.add_parsable_certificates(certs);
            format!("sslrootcert {}", path.display())
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "a system root certificate could not be read");
            }
            store.add_parsable_certificates(found.certs);
            "the system's trust store".to_owned()
        }
    };
    if store.is_empty() {
        return Err(Error::Config(format!(
            "no usable root certificate in {what} (sslmode=verify-ca / verify-full need one)"
        )));
    }
    Ok(Arc::new(store))
}

/// What the server's certificate is checked for.
#[derive(Debug)]
enum Check {
    /// Nothing (`prefer`, `require`): the connection is encrypted, not authenticated.
    Nothing,
    /// Signed by a trusted root, through the intermediates the server sent.
    Chain(Arc<RootCertStore>),
    /// That, and valid for the host name or IP connected to.
    ChainAndName(Arc<RootCertStore>),
}

/// One verifier for every mode. The handshake's signatures are always checked against the
/// certificate presented (so the peer holds its key); what differs is whether that
/// certificate must be trusted.
#[derive(Debug)]
struct Verifier {
    check: Check,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (roots, name) = match &self.check {
            Check::Nothing => return Ok(ServerCertVerified::assertion()),
            Check::Chain(roots) => (roots, None),
            Check::ChainAndName(roots) => (roots, Some(server_name)),
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if let Some(name) = name {
            rustls::client::verify_server_name(&cert, name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_order() {
        for m in [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(SslMode::parse(m.as_str()), Some(m));
            assert_eq!(m.requires_tls(), m >= SslMode::Require);
        }
        assert_eq!(SslMode::parse("verify_full"), None);
        assert_eq!(SslMode::default(), SslMode::Prefer);
    }

    #[test]
    fn a_missing_or_empty_root_file_is_a_configuration_error() {
        let missing = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/root.crt".into()),
        };
        assert!(matches!(client_config(&missing), Err(Error::Config(_))));
        let empty = std::env::temp_dir().join(format!("queen-empty-root-{}", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let settings = TlsSettings {
            mode: SslMode::VerifyCa,
            root_cert: Some(empty.clone()),
        };
        let r = client_config(&settings);
        let _ = std::fs::remove_file(&empty);
        assert!(matches!(r, Err(Error::Config(m)) if m.contains("no usable root")));
    }
}
