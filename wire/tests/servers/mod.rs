//! Servers in the states the connection tests need, shared by the wire client's tests and the
//! workspace's (`tests/database_tls.rs` and `tests/read_only.rs` include this file by path):
//! a throwaway cluster on a free TCP port, serving TLS with a certificate for `localhost`
//! signed by a CA made on the spot; and a whole server switched read-only and back.

#![allow(dead_code)] // Each including test uses its part.

use queen_wire::embedded::{Cluster, Options, ServerTls, find_binaries};
use queen_wire::{Client, Connection};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A throwaway cluster on a free TCP port, or `None` without PostgreSQL binaries.
pub fn tcp_cluster(name: &str, tls: Option<ServerTls>) -> Option<(Cluster, u16)> {
    tcp_cluster_with(name, tls, &[])
}

/// [`tcp_cluster`] with extra server settings.
pub fn tcp_cluster_with(
    name: &str,
    tls: Option<ServerTls>,
    settings: &[(&str, &str)],
) -> Option<(Cluster, u16)> {
    if let Err(e) = find_binaries() {
        eprintln!("SKIP {name}: {e}");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("queen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut opts = Options::new(dir);
    opts.tcp_port = Some(port);
    opts.durable = false;
    opts.stop_with_process = true;
    opts.remove_on_stop = true;
    opts.tls = tls;
    opts.settings = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some((Cluster::start(opts).unwrap(), port))
}

/// A CA and, signed by it, a certificate and key for `localhost`; all PEM.
pub struct Pki {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

pub fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

pub fn pki() -> Pki {
    let ca = ca("queen test CA");
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

impl Pki {
    /// What the cluster serves.
    pub fn server(&self) -> ServerTls {
        ServerTls {
            cert_pem: self.cert.clone(),
            key_pem: self.key.clone(),
        }
    }
}

/// Makes the cluster refuse plaintext TCP, with `rules` (pg_hba.conf lines) ahead of its
/// others; restarts it, so they hold from the next connection on.
pub fn refuse_plaintext(cluster: &mut Cluster, rules: &str) {
    let hba = cluster.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("hostnossl all all 127.0.0.1/32 reject\n{rules}{old}"),
    )
    .unwrap();
    cluster.stop().unwrap();
    cluster.restart().unwrap();
}

/// Makes the whole server read-only (as a demoted or fenced primary is), or writable again;
/// each backend applies it before its next command.
pub async fn set_read_only(admin: &Connection, on: bool) {
    let sql = if on {
        "ALTER SYSTEM SET default_transaction_read_only = on"
    } else {
        "ALTER SYSTEM RESET default_transaction_read_only"
    };
    admin.batch_execute(sql).await.unwrap();
    admin
        .query_sql("SELECT pg_reload_conf()", &[])
        .await
        .unwrap();
}
