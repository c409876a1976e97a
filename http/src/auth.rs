//! Authentication (api.md §5, off by default): `Authorization: Bearer <JWT>`, HS256 with a
//! shared secret (`JWT_SECRET`).
//!
//! Roles nest: `read-only` ⊂ `read-write` ⊂ `admin`, read from the claim `role` (a string) or
//! `roles` (an array; the strongest known role counts). Reading needs read-only; pushing,
//! popping, acking, transactions, leases, traces and DLQ retries need read-write; configuring,
//! deleting and the maintenance, consumer-group and seek operations need admin. A missing or
//! invalid token is a 401, a valid token with too weak a role a 403. `exp` and `nbf` are
//! enforced when present (with a 30-second allowance for clock skew). Only `HS256` is accepted:
//! a token naming another algorithm (`none` included) is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use crate::error::ApiError;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
const LEEWAY: i64 = 30;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read routes.
    ReadOnly,
    /// Message traffic.
    ReadWrite,
    /// Configuration and destructive operations.
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "read-only" | "readonly" | "read_only" => Some(Role::ReadOnly),
            "read-write" | "readwrite" | "read_write" => Some(Role::ReadWrite),
            "admin" => Some(Role::Admin),
            _ => None,
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

/// The verifier.
#[derive(Clone)]
pub struct Auth {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(HS256, secret hidden)")
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: message.into(),
    }
}

impl Auth {
    /// A verifier for HS256 tokens signed with `secret` (which must not be empty).
    pub fn hs256(secret: &[u8]) -> Option<Auth> {
        (!secret.is_empty()).then(|| Auth {
            secret: secret.to_vec(),
        })
    }

    /// Checks the `Authorization` header and that the token's role is at least `need`.
    pub fn check(&self, header: Option<&str>, need: Role) -> Result<Principal, ApiError> {
        let header = header.ok_or_else(|| unauthorized("missing Authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let p = self.verify(token.trim(), unix_now())?;
        match p.role {
            Some(r) if r >= need => Ok(p),
            _ => Err(ApiError {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                message: format!("this route needs the {} role", role_name(need)),
            }),
        }
    }

    /// Verifies a token's signature and time claims at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<Principal, ApiError> {
        let bad = || unauthorized("invalid token");
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).map_err(|_| bad())?)
            .map_err(|_| bad())?;
        if header.alg != "HS256" {
            return Err(unauthorized("only HS256 tokens are accepted"));
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).map_err(|_| bad())?;
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(c.as_bytes());
        mac.verify_slice(&sig).map_err(|_| bad())?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?)
            .map_err(|_| bad())?;
        if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
            if now > exp + LEEWAY {
                return Err(unauthorized("token expired"));
            }
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
            if now + LEEWAY < nbf {
                return Err(unauthorized("token not valid yet"));
            }
        }
        let mut role = claims
            .get("role")
            .and_then(Value::as_str)
            .and_then(Role::parse);
        if let Some(roles) = claims.get("roles").and_then(Value::as_array) {
            for r in roles
                .iter()
                .filter_map(Value::as_str)
                .filter_map(Role::parse)
            {
                role = role.max(Some(r));
            }
        }
        Ok(Principal {
            sub: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            role,
        })
    }

    /// Signs claims (for tests and tooling).
    pub fn sign(&self, claims: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(m) => m,
            // HMAC takes keys of any length; `hs256` refuses empty ones.
            Err(_) => return String::new(),
        };
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(c.as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{c}.{s}")
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::ReadOnly => "read-only",
        Role::ReadWrite => "read-write",
        Role::Admin => "admin",
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verifies_signature_roles_and_times() {
        let auth = Auth::hs256(b"secret").unwrap();
        let t = auth.sign(&json!({"sub": "svc-a", "role": "read-write", "exp": 2000}));
        let p = auth.verify(&t, 1000).unwrap();
        assert_eq!(p.sub.as_deref(), Some("svc-a"));
        assert_eq!(p.role, Some(Role::ReadWrite));
        assert_eq!(auth.verify(&t, 3000).unwrap_err().message, "token expired");
        let roles = auth.sign(&json!({"roles": ["read-only", "admin", "x"]}));
        assert_eq!(auth.verify(&roles, 0).unwrap().role, Some(Role::Admin));
        let early = auth.sign(&json!({"role": "admin", "nbf": 5000}));
        assert!(auth.verify(&early, 1000).is_err());

        let other = Auth::hs256(b"other").unwrap();
        assert_eq!(
            other.verify(&t, 1000).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let mut tampered = t;
        tampered.insert(tampered.find('.').unwrap() + 2, 'x');
        assert!(auth.verify(&tampered, 1000).is_err());
        assert!(auth.verify("a.b", 0).is_err());
        assert!(Auth::hs256(b"").is_none());
    }

    #[test]
    fn refuses_other_algorithms_and_weak_roles() {
        let auth = Auth::hs256(b"secret").unwrap();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"role":"admin"}"#)
        );
        assert!(auth.verify(&none, 0).is_err());
        let ro = auth.sign(&json!({"role": "read-only"}));
        let e = auth
            .check(Some(&format!("Bearer {ro}")), Role::ReadWrite)
            .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(
            auth.check(Some(&format!("Bearer {ro}")), Role::ReadOnly)
                .is_ok()
        );
        assert_eq!(
            auth.check(None, Role::ReadOnly).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let none_role = auth.sign(&json!({"sub": "x"}));
        assert_eq!(
            auth.check(Some(&format!("Bearer {none_role}")), Role::ReadOnly)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
    }
}
