//! Authentication (off by default): `Authorization: Bearer <JWT>` on every `/api/v1` route.
//!
//! Tokens are verified with `jsonwebtoken` against the keys configured (`docs/auth.md`):
//!
//! * `HS256` with a shared secret (`JWT_SECRET`);
//! * `RS256` / `RS384` / `RS512` and `EdDSA` with a public key in PEM (`JWT_PUBLIC_KEY`) or the
//!   keys an identity provider publishes as a JWKS (`JWT_JWKS_URL`): fetched at start, refreshed
//!   every `JWT_JWKS_REFRESH_INTERVAL` seconds, and when a token names a key id (`kid`) not
//!   seen yet — such fetches at most once per [`MIN_REFETCH`], so made-up key ids cannot make
//!   the server hammer the provider;
//! * `JWT_ALGORITHM` picks one family (`HS256`, `RS256`, `EdDSA`) or `auto` (any family a key is
//!   configured for). A token naming another algorithm — `none` included — is refused.
//!
//! `iss` and `aud` are checked when `JWT_ISSUER` / `JWT_AUDIENCE` are set. `exp` and `nbf` are
//! checked here, not by the library, so that every JSON form of them is judged the same way:
//! RFC 7519 NumericDates may be fractional (`1700000000.5`), and a claim that is not a number
//! at all (a string, `null`, an object) makes the token invalid rather than unchecked. Both
//! allow `JWT_CLOCK_SKEW` seconds (default 30) for clock skew.
//!
//! Roles nest: `read-only` ⊂ `read-write` ⊂ `admin`, read from the claim `role` (a string) or
//! `roles` (an array; the strongest known role counts); claim names and role names are
//! configurable as in Queen. Which route needs which role is [`crate::app`]'s `required_role`.
//! A missing or invalid token is a 401, a valid token with too weak a role a 403.

use std::collections::HashSet;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::StatusCode;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::error::{ApiError, Code};

/// A token naming a key id the JWKS does not hold refetches it at most this often.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);

/// Largest JWKS document accepted.
const JWKS_MAX_BYTES: usize = 1024 * 1024;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read routes.
    ReadOnly,
    /// Message traffic and queue configuration.
    ReadWrite,
    /// Destructive and server-wide operations.
    Admin,
}

impl Role {
    /// The role's name in the docs and in 403 answers.
    pub fn name(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::ReadWrite => "read-write",
            Role::Admin => "admin",
        }
    }
}

/// Who made the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`, stamped on pushed messages as `producerSub`.
    pub sub: Option<String>,
    /// The strongest role the token carries.
    pub role: Option<Role>,
}

/// Which token algorithms are accepted (`JWT_ALGORITHM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmSetting {
    /// HS256 only.
    Hs256,
    /// RS256, RS384 and RS512.
    Rs256,
    /// EdDSA (Ed25519).
    EdDsa,
    /// Any family a key is configured for.
    Auto,
}

impl AlgorithmSetting {
    /// Parses `JWT_ALGORITHM` (case-insensitive).
    pub fn parse(s: &str) -> Option<AlgorithmSetting> {
        match s.to_ascii_lowercase().as_str() {
            "hs256" => Some(AlgorithmSetting::Hs256),
            "rs256" => Some(AlgorithmSetting::Rs256),
            "eddsa" => Some(AlgorithmSetting::EdDsa),
            "auto" => Some(AlgorithmSetting::Auto),
            _ => None,
        }
    }
}

/// Claim names and role names (Queen's settings and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleClaims {
    /// Claim holding one role (`role`).
    pub role_claim: String,
    /// Claim holding an array of roles (`roles`).
    pub roles_claim: String,
    /// Name of the admin role.
    pub admin: String,
    /// Name of the read-write role.
    pub read_write: String,
    /// Name of the read-only role.
    pub read_only: String,
}

impl Default for RoleClaims {
    fn default() -> RoleClaims {
        RoleClaims {
            role_claim: "role".into(),
            roles_claim: "roles".into(),
            admin: "admin".into(),
            read_write: "read-write".into(),
            read_only: "read-only".into(),
        }
    }
}

impl RoleClaims {
    fn parse(&self, s: &str) -> Option<Role> {
        if s == self.admin {
            Some(Role::Admin)
        } else if s == self.read_write {
            Some(Role::ReadWrite)
        } else if s == self.read_only {
            Some(Role::ReadOnly)
        } else {
            None
        }
    }
}

/// Auth settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Accepted algorithms.
    pub algorithm: AlgorithmSetting,
    /// HS256 shared secret.
    pub secret: Option<String>,
    /// RSA or Ed25519 public key in PEM.
    pub public_key_pem: Option<String>,
    /// URL of the identity provider's JWKS.
    pub jwks_url: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences).
    pub audience: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub clock_skew_secs: u64,
    /// How often the JWKS is refetched.
    pub jwks_refresh: Duration,
    /// Time allowed for one JWKS fetch.
    pub jwks_timeout: Duration,
    /// Claim and role names.
    pub roles: RoleClaims,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            algorithm: AlgorithmSetting::Hs256,
            secret: None,
            public_key_pem: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            clock_skew_secs: 30,
            jwks_refresh: Duration::from_secs(3600),
            jwks_timeout: Duration::from_secs(5),
            roles: RoleClaims::default(),
        }
    }
}

/// Why the auth settings cannot work.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The algorithm has no key to verify with.
    #[error("JWT_ALGORITHM={0} needs {1}")]
    NoKey(&'static str, &'static str),
    /// `JWT_PUBLIC_KEY` is not an RSA or Ed25519 public key in PEM.
    #[error("JWT_PUBLIC_KEY is not an RSA or Ed25519 public key in PEM")]
    BadPublicKey,
    /// `JWT_JWKS_URL` is not a valid http(s) URL.
    #[error("JWT_JWKS_URL is not an http or https URL")]
    BadJwksUrl,
    /// The TLS roots for HTTPS could not be loaded.
    #[error("cannot load the system's TLS root certificates for JWT_JWKS_URL")]
    TlsRoots(#[source] std::io::Error),
}

/// A key family: which keys a token's algorithm is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ed,
}

impl Family {
    fn of(alg: Algorithm) -> Option<Family> {
        match alg {
            Algorithm::HS256 => Some(Family::Hmac),
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => Some(Family::Rsa),
            Algorithm::EdDSA => Some(Family::Ed),
            _ => None,
        }
    }

    fn allowed(self, setting: AlgorithmSetting) -> bool {
        matches!(
            (setting, self),
            (AlgorithmSetting::Auto, _)
                | (AlgorithmSetting::Hs256, Family::Hmac)
                | (AlgorithmSetting::Rs256, Family::Rsa)
                | (AlgorithmSetting::EdDsa, Family::Ed)
        )
    }
}

/// A verification key.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    family: Family,
    key: DecodingKey,
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The identity provider's keys, as last fetched.
struct Jwks {
    url: hyper::Uri,
    client: HttpClient<Https, Empty<Bytes>>,
    keys: RwLock<Vec<Key>>,
    /// Held while fetching (one fetch at a time); when a token with an unknown key id last
    /// caused a fetch.
    fetch: tokio::sync::Mutex<Option<Instant>>,
}

struct Inner {
    config: AuthConfig,
    /// The HS256 secret and the PEM public key.
    fixed: Vec<Key>,
    jwks: Option<Jwks>,
}

/// The verifier. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("algorithm", &self.inner.config.algorithm)
            .field("jwks_url", &self.inner.config.jwks_url)
            .finish_non_exhaustive()
    }
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, Code::Unauthorized, message.into())
}

impl Auth {
    /// A verifier for the settings; checks that each accepted family has a key.
    pub fn new(config: AuthConfig) -> Result<Auth, AuthSetupError> {
        let mut fixed = Vec::new();
        if let Some(secret) = config.secret.as_deref().filter(|s| !s.is_empty()) {
            fixed.push(Key {
                kid: None,
                family: Family::Hmac,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        if let Some(pem) = config.public_key_pem.as_deref().filter(|s| !s.is_empty()) {
            let pem = pem.replace("\\n", "\n");
            let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                .map(|k| (Family::Rsa, k))
                .or_else(|_| DecodingKey::from_ed_pem(pem.as_bytes()).map(|k| (Family::Ed, k)))
                .map_err(|_| AuthSetupError::BadPublicKey)?;
            fixed.push(Key {
                kid: None,
                family: key.0,
                key: key.1,
            });
        }
        let jwks = match config.jwks_url.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(url) => {
                let url: hyper::Uri = url.parse().map_err(|_| AuthSetupError::BadJwksUrl)?;
                if !matches!(url.scheme_str(), Some("http" | "https")) {
                    return Err(AuthSetupError::BadJwksUrl);
                }
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(AuthSetupError::TlsRoots)?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Some(Jwks {
                    url,
                    client: HttpClient::builder(TokioExecutor::new()).build(https),
                    keys: RwLock::new(Vec::new()),
                    fetch: tokio::sync::Mutex::new(None),
                })
            }
        };
        let has = |f: Family| fixed.iter().any(|k| k.family == f);
        let any_public = jwks.is_some() || has(Family::Rsa) || has(Family::Ed);
        match config.algorithm {
            AlgorithmSetting::Hs256 if !has(Family::Hmac) => {
                return Err(AuthSetupError::NoKey("HS256", "a non-empty JWT_SECRET"));
            }
            AlgorithmSetting::Rs256 | AlgorithmSetting::EdDsa if !any_public => {
                return Err(AuthSetupError::NoKey(
                    "RS256/EdDSA",
                    "JWT_PUBLIC_KEY or JWT_JWKS_URL",
                ));
            }
            AlgorithmSetting::Auto if !any_public && !has(Family::Hmac) => {
                return Err(AuthSetupError::NoKey(
                    "auto",
                    "JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL",
                ));
            }
            _ => {}
        }
        Ok(Auth {
            inner: Arc::new(Inner {
                config,
                fixed,
                jwks,
            }),
        })
    }

    /// A verifier for HS256 tokens signed with `secret` (which must not be empty).
    pub fn hs256(secret: &str) -> Option<Auth> {
        Auth::new(AuthConfig {
            secret: Some(secret.to_owned()),
            ..AuthConfig::default()
        })
        .ok()
    }

    /// Fetches the JWKS now and then every refresh interval, for as long as the verifier
    /// lives. Does nothing without `JWT_JWKS_URL`.
    pub fn start_refresh(&self) {
        if self.inner.jwks.is_none() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let every = inner.config.jwks_refresh;
                if let Err(e) = refresh(&inner, false).await {
                    tracing::warn!(error = %e, "cannot fetch the JWKS (JWT_JWKS_URL)");
                }
                drop(inner);
                tokio::time::sleep(every).await;
            }
        });
    }

    /// Checks the `Authorization` header and that the token's role is at least `need`.
    pub async fn check(&self, header: Option<&str>, need: Role) -> Result<Principal, ApiError> {
        let header = header.ok_or_else(|| unauthorized("Authentication required"))?;
        // Queen also takes a bare token without the `Bearer` scheme.
        let token = match header.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("bearer ") => &header[7..],
            _ => header,
        };
        let p = self.verify(token.trim(), unix_now()).await?;
        match p.role {
            Some(r) if r >= need => Ok(p),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                Code::Forbidden,
                format!("this route needs the {} role", need.name()),
            )),
        }
    }

    /// Verifies a token's signature and claims at `now` (seconds since the Unix epoch).
    pub async fn verify(&self, token: &str, now: f64) -> Result<Principal, ApiError> {
        let inner = &self.inner;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthorized("invalid token"))?;
        let family = Family::of(header.alg)
            .filter(|f| f.allowed(inner.config.algorithm))
            .ok_or_else(|| {
                unauthorized(format!(
                    "tokens signed with {:?} are not accepted",
                    header.alg
                ))
            })?;
        let mut keys = candidates(inner, family, header.kid.as_deref());
        if keys.is_empty() && family != Family::Hmac {
            if let Err(e) = refresh(inner, true).await {
                tracing::warn!(error = %e, "cannot fetch the JWKS (JWT_JWKS_URL)");
            }
            keys = candidates(inner, family, header.kid.as_deref());
        }
        if keys.is_empty() {
            return Err(unauthorized(match header.kid {
                Some(kid) => format!("unknown key id `{kid}`"),
                None => "no key to verify this token with".to_owned(),
            }));
        }
        let validation = validation(&inner.config, header.alg);
        let mut last = unauthorized("invalid token");
        for key in &keys {
            match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
                Ok(data) => return principal(&inner.config, &data.claims, now),
                Err(e) => last = claim_error(&e),
            }
        }
        Err(last)
    }
}

/// Keys of a family, narrowed to a key id when the token names one.
fn candidates(inner: &Inner, family: Family, kid: Option<&str>) -> Vec<Key> {
    let fits = |k: &&Key| {
        k.family == family && (kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
    };
    let mut keys: Vec<Key> = inner.fixed.iter().filter(fits).cloned().collect();
    if let Some(j) = &inner.jwks {
        let cached = j.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.extend(cached.iter().filter(fits).cloned());
    }
    keys
}

/// What the library checks: signature, algorithm, `iss` and `aud`. Time claims are ours.
fn validation(config: &AuthConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.required_spec_claims = HashSet::new();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = config.clock_skew_secs;
    if let Some(iss) = &config.issuer {
        v.set_issuer(&[iss]);
        v.required_spec_claims.insert("iss".into());
    }
    match &config.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            v.required_spec_claims.insert("aud".into());
        }
        None => v.validate_aud = false,
    }
    v
}

fn claim_error(e: &jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidIssuer => unauthorized("invalid token issuer"),
        ErrorKind::InvalidAudience => unauthorized("invalid token audience"),
        ErrorKind::MissingRequiredClaim(c) => unauthorized(format!("the token has no `{c}` claim")),
        ErrorKind::InvalidClaimFormat(c) => {
            unauthorized(format!("the token's `{c}` claim is malformed"))
        }
        _ => unauthorized("invalid token"),
    }
}

/// A time claim as seconds, when present. Any JSON type but a number is refused.
fn numeric_date(claims: &Value, name: &str) -> Result<Option<f64>, ApiError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|t| t.is_finite())
            .map(Some)
            .ok_or_else(|| {
                unauthorized(format!(
                    "the token's `{name}` claim is not a number (NumericDate)"
                ))
            }),
    }
}

/// Checks the time claims and reads `sub` and the roles.
fn principal(config: &AuthConfig, claims: &Value, now: f64) -> Result<Principal, ApiError> {
    let skew = config.clock_skew_secs as f64;
    if numeric_date(claims, "exp")?.is_some_and(|exp| now > exp + skew) {
        return Err(unauthorized("Token has expired"));
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| now + skew < nbf) {
        return Err(unauthorized("Token is not valid yet"));
    }
    let names = &config.roles;
    let mut role = claims
        .get(&names.role_claim)
        .and_then(Value::as_str)
        .and_then(|r| names.parse(r));
    match claims.get(&names.roles_claim) {
        Some(Value::Array(roles)) => {
            for r in roles
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|r| names.parse(r))
            {
                role = role.max(Some(r));
            }
        }
        Some(Value::String(r)) => role = role.max(names.parse(r)),
        _ => {}
    }
    let sub = claims.get("sub").and_then(Value::as_str);
    if let Some(s) = sub {
        // Stamped on every message the token pushes: it must be storable.
        queen_engine::limits::check_text("the token's sub", s, queen_engine::limits::PRODUCER_MAX)
            .map_err(unauthorized)?;
    }
    Ok(Principal {
        sub: sub.map(str::to_owned),
        role,
    })
}

/// Fetches the JWKS. A fetch `on_demand` (for a token naming a key id not seen yet) happens at
/// most once per [`MIN_REFETCH`]; scheduled ones always. One fetch at a time; callers arriving
/// meanwhile wait for it and then use what it got.
async fn refresh(inner: &Inner, on_demand: bool) -> Result<(), String> {
    let Some(jwks) = &inner.jwks else {
        return Ok(());
    };
    let mut last_on_demand = jwks.fetch.lock().await;
    if on_demand {
        if last_on_demand.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return Ok(());
        }
        *last_on_demand = Some(Instant::now());
    }
    let fetched = tokio::time::timeout(inner.config.jwks_timeout, fetch(jwks))
        .await
        .map_err(|_| {
            format!(
                "no answer from {} in {:?}",
                jwks.url, inner.config.jwks_timeout
            )
        })??;
    tracing::debug!(keys = fetched.len(), "JWKS fetched");
    *jwks.keys.write().unwrap_or_else(|e| e.into_inner()) = fetched;
    Ok(())
}

async fn fetch(jwks: &Jwks) -> Result<Vec<Key>, String> {
    let resp = jwks
        .client
        .get(jwks.url.clone())
        .await
        .map_err(|e| format!("GET {}: {e}", jwks.url))?;
    if !resp.status().is_success() {
        return Err(format!("GET {} answered {}", jwks.url, resp.status()));
    }
    let body = Limited::new(resp.into_body(), JWKS_MAX_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading {}: {e}", jwks.url))?
        .to_bytes();
    let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|k| {
            let family = match &k.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                _ => return None,
            };
            Some(Key {
                kid: k.common.key_id.clone(),
                family,
                key: DecodingKey::from_jwk(k).ok()?,
            })
        })
        .collect())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn sign(secret: &str, claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn verifies_signature_roles_and_times() {
        let auth = Auth::hs256("secret").unwrap();
        let t = sign(
            "secret",
            &json!({"sub": "svc-a", "role": "read-write", "exp": 2000}),
        );
        let p = auth.verify(&t, 1000.0).await.unwrap();
        assert_eq!(p.sub.as_deref(), Some("svc-a"));
        assert_eq!(p.role, Some(Role::ReadWrite));
        assert_eq!(
            auth.verify(&t, 3000.0).await.unwrap_err().message,
            "Token has expired"
        );
        let roles = sign("secret", &json!({"roles": ["read-only", "admin", "x"]}));
        assert_eq!(
            auth.verify(&roles, 0.0).await.unwrap().role,
            Some(Role::Admin)
        );
        let early = sign("secret", &json!({"role": "admin", "nbf": 5000}));
        assert!(auth.verify(&early, 1000.0).await.is_err());
        let other = Auth::hs256("other").unwrap();
        assert_eq!(
            other.verify(&t, 1000.0).await.unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(auth.verify("a.b", 0.0).await.is_err());
        assert!(Auth::hs256("").is_none());
    }

    #[tokio::test]
    async fn time_claims_of_every_json_form() {
        let auth = Auth::hs256("secret").unwrap();
        let now = 1_700_000_100.0;
        for exp in [json!(1_700_000_000.5), json!(1_700_000_000), json!(1.7e9)] {
            let t = sign("secret", &json!({"role": "admin", "exp": exp}));
            assert!(auth.verify(&t, now).await.is_err(), "expired exp {exp}");
        }
        for bad in [
            json!("1700000000"),
            json!("never"),
            json!(null),
            json!({}),
            json!([1]),
        ] {
            for claim in ["exp", "nbf"] {
                let t = sign("secret", &json!({"role": "admin", claim: bad}));
                assert!(auth.verify(&t, now).await.is_err(), "{claim} = {bad}");
            }
        }
        let nbf = sign("secret", &json!({"role": "admin", "nbf": now + 100.5}));
        assert!(auth.verify(&nbf, now).await.is_err());
        let ok = sign(
            "secret",
            &json!({"role": "admin", "exp": now + 0.5, "nbf": now - 0.5}),
        );
        assert!(auth.verify(&ok, now).await.is_ok());
    }

    #[tokio::test]
    async fn refuses_other_algorithms_and_weak_roles() {
        let auth = Auth::hs256("secret").unwrap();
        // {"alg":"none"} . {"role":"admin"} . (no signature)
        let none = "eyJhbGciOiJub25lIn0.eyJyb2xlIjoiYWRtaW4ifQ.";
        assert!(auth.verify(none, 0.0).await.is_err());
        let ro = sign("secret", &json!({"role": "read-only"}));
        let e = auth
            .check(Some(&format!("Bearer {ro}")), Role::ReadWrite)
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(
            auth.check(Some(&format!("Bearer {ro}")), Role::ReadOnly)
                .await
                .is_ok()
        );
        assert!(
            auth.check(Some(&ro), Role::ReadOnly).await.is_ok(),
            "bare token"
        );
        assert_eq!(
            auth.check(None, Role::ReadOnly).await.unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let none_role = sign("secret", &json!({"sub": "x"}));
        assert_eq!(
            auth.check(Some(&format!("Bearer {none_role}")), Role::ReadOnly)
                .await
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
    }
}
