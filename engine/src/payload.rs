//! Payloads as stored: the JSON text a client pushed, kept byte for byte, or — for a queue that
//! encrypts — that text sealed with the server's key (docs/semantics.md, "Encryption"). Sealing
//! happens on push (and transaction push), opening on pop and in inspection; both live here so
//! the two directions cannot drift apart.

use std::sync::Arc;

use queen_wire::ColumnIndex;

use crate::cache::Target;
use crate::engine::Inner;
use crate::error::EngineError;

/// A payload as stored: JSON text (shared, not copied, between the request and the batch), or
/// sealed for a queue that encrypts.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Json(Arc<str>),
    Sealed(Vec<u8>),
}

impl Body {
    /// The stored form of `payload` for a partition of `queue`: sealed when the queue encrypts
    /// (as the partition's cache entry says).
    pub(crate) fn for_target(
        inner: &Inner,
        queue: &str,
        target: Target,
        payload: &Arc<str>,
    ) -> Result<Body, EngineError> {
        if !target.encrypted {
            return Ok(Body::Json(payload.clone()));
        }
        match &inner.config().cipher {
            Some(c) => Ok(Body::Sealed(c.encrypt(payload.as_bytes()))),
            None => Err(EngineError::EncryptionKeyMissing(queue.to_owned())),
        }
    }
}

/// The JSON text of a stored payload whose columns `payload` (the text as pushed) and `sealed`
/// (the sealed bytes of an encrypting queue) are in row `r`, decrypted (docs/semantics.md,
/// "Encryption"); None when both are NULL.
pub(crate) fn stored(
    inner: &Inner,
    r: &queen_wire::Row,
    payload: ColumnIndex,
    sealed: ColumnIndex,
) -> Result<Option<String>, EngineError> {
    let Some(sealed) = r.get::<Option<Vec<u8>>>(sealed)? else {
        return Ok(r.get::<Option<String>>(payload)?);
    };
    let cipher = inner.config().cipher.as_ref().ok_or_else(|| {
        EngineError::Decrypt("the payload is encrypted and no encryption key is configured".into())
    })?;
    let plain = cipher
        .decrypt(&sealed)
        .map_err(|e| EngineError::Decrypt(e.to_string()))?;
    String::from_utf8(plain)
        .map(Some)
        .map_err(|_| EngineError::Decrypt("the plaintext is not UTF-8".into()))
}
