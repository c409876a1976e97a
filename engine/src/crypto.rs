//! Payload encryption at rest (docs/semantics.md, "Encryption"): AES-256-GCM under the server key
//! (`QUEEN_ENCRYPTION_KEY`, 64 hex characters), a fresh random 96-bit nonce per message.
//!
//! Stored form: `nonce (12 bytes) || ciphertext || tag (16 bytes)` in `messages.encrypted`, with
//! `payload` NULL. The plaintext is the payload's JSON text, so decryption gives back exactly
//! what was pushed.
//!
//! **Rotation.** A cipher seals with its current key and opens with the current key or any
//! previous one (`QUEEN_ENCRYPTION_KEY_PREVIOUS`), tried in order: the GCM tag tells a wrong key
//! apart, so no key id is stored. Messages and buffered records sealed under an old key stay
//! readable for as long as that key is listed.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};

const NONCE_LEN: usize = 12;

/// Why a key or a ciphertext was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The configured key is not 64 hex characters.
    #[error("the encryption key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    /// Authentication failed: wrong key, or the stored bytes are damaged.
    #[error("the payload cannot be decrypted with the configured key")]
    Undecryptable,
}

/// The server's payload cipher.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
    /// Keys that only open (rotation), in the order they are tried.
    previous: Vec<Aes256Gcm>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cipher(AES-256-GCM, key hidden, {} previous)",
            self.previous.len()
        )
    }
}

fn key_from_hex(key: &str) -> Result<Aes256Gcm, CryptoError> {
    let key = key.trim();
    if key.len() != 64 {
        return Err(CryptoError::BadKey);
    }
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(key.get(2 * i..2 * i + 2).ok_or(CryptoError::BadKey)?, 16)
            .map_err(|_| CryptoError::BadKey)?;
    }
    Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey)
}

/// A fresh random key, as the 64 hexadecimal characters [`Cipher::from_hex`] takes.
pub fn generate_key_hex() -> String {
    use std::fmt::Write as _;
    let key = Aes256Gcm::generate_key(&mut OsRng);
    key.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Cipher {
    /// A cipher from the 64-hex-character key.
    pub fn from_hex(key: &str) -> Result<Cipher, CryptoError> {
        Ok(Cipher {
            aead: key_from_hex(key)?,
            previous: Vec::new(),
        })
    }

    /// Adds keys that still open what they sealed but seal nothing new: a comma-separated list
    /// of 64-hex-character keys (empty entries are ignored).
    pub fn with_previous(mut self, keys: &str) -> Result<Cipher, CryptoError> {
        for k in keys.split(',').filter(|k| !k.trim().is_empty()) {
            self.previous.push(key_from_hex(k)?);
        }
        Ok(self)
    }

    /// Seals a plaintext under a fresh random nonce.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        // Encryption of an in-memory buffer cannot fail for inputs below the GCM length limit
        // (64 GiB), far above the body limit; an empty result would still fail to decrypt.
        if let Ok(ct) = self.aead.encrypt(&nonce, plaintext) {
            out.extend_from_slice(&ct);
        }
        out
    }

    /// Opens what [`encrypt`](Cipher::encrypt) sealed.
    pub fn decrypt(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Undecryptable);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::from_slice(nonce);
        std::iter::once(&self.aead)
            .chain(&self.previous)
            .find_map(|key| key.decrypt(nonce, ct).ok())
            .ok_or(CryptoError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn round_trip_with_fresh_nonces() {
        let c = Cipher::from_hex(KEY).unwrap();
        let a = c.encrypt(br#"{"a":1}"#);
        let b = c.encrypt(br#"{"a":1}"#);
        assert_ne!(a, b, "each message gets its own nonce");
        assert_eq!(c.decrypt(&a).unwrap(), br#"{"a":1}"#);
        assert_eq!(c.decrypt(&b).unwrap(), br#"{"a":1}"#);
    }

    #[test]
    fn wrong_key_and_damage_are_refused() {
        let c = Cipher::from_hex(KEY).unwrap();
        let other = Cipher::from_hex(&KEY.replace("1f", "ff")).unwrap();
        let mut sealed = c.encrypt(b"secret");
        assert_eq!(other.decrypt(&sealed), Err(CryptoError::Undecryptable));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(c.decrypt(&sealed), Err(CryptoError::Undecryptable));
        assert_eq!(c.decrypt(b"short"), Err(CryptoError::Undecryptable));
    }

    #[test]
    fn previous_keys_open_but_never_seal() {
        let old = Cipher::from_hex(KEY).unwrap();
        let older = Cipher::from_hex(&KEY.replace("1f", "ee")).unwrap();
        let new_key = KEY.replace("1f", "ff");
        let rotated = Cipher::from_hex(&new_key)
            .unwrap()
            .with_previous(&format!(" {},{KEY} ,", KEY.replace("1f", "ee")))
            .unwrap();
        assert_eq!(rotated.decrypt(&old.encrypt(b"a")).unwrap(), b"a");
        assert_eq!(rotated.decrypt(&older.encrypt(b"b")).unwrap(), b"b");
        let sealed = rotated.encrypt(b"c");
        assert_eq!(
            old.decrypt(&sealed),
            Err(CryptoError::Undecryptable),
            "new seals use the current key only"
        );
        assert_eq!(
            Cipher::from_hex(&new_key)
                .unwrap()
                .decrypt(&sealed)
                .unwrap(),
            b"c"
        );
        assert_eq!(
            rotated.with_previous("abc").unwrap_err(),
            CryptoError::BadKey
        );
    }

    #[test]
    fn generated_keys_are_usable_and_distinct() {
        let (a, b) = (generate_key_hex(), generate_key_hex());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let c = Cipher::from_hex(&a).unwrap();
        assert_eq!(c.decrypt(&c.encrypt(b"x")).unwrap(), b"x");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(Cipher::from_hex("abc").unwrap_err(), CryptoError::BadKey);
        assert_eq!(
            Cipher::from_hex(&"zz".repeat(32)).unwrap_err(),
            CryptoError::BadKey
        );
        assert!(Cipher::from_hex(&format!(" {KEY}\n")).is_ok());
    }
}
