//! Per-source credentials at rest: sealed with `PORTICO_SECRET_KEY`.
//!
//! A source's secrets are one JSON object sealed with ChaCha20-Poly1305 (ring,
//! already the TLS provider of the process), under a random 96-bit nonce, with
//! the source's kind and key as associated data: a sealed value copied onto
//! another source does not open. The sealed form is
//! `"P1" | key id (8 bytes: SHA-256 of the key) | nonce (12) | ciphertext+tag`,
//! so a value sealed under an older key says which key it needs.
//!
//! `PORTICO_SECRET_KEY` holds one or more base64 keys of 32 bytes, separated by
//! commas: the first seals, every one opens. Rotation: put the new key first
//! and the old one after it, run `portico source rekey` (every source sealed
//! again under the new key), then drop the old one.

use crate::store::{SourceRow, StoredCredentials};
use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const MAGIC: &[u8; 2] = b"P1";
const KEY_ID_LEN: usize = 8;

/// How to make a key, said wherever one is missing or malformed.
pub const MAKE_ONE: &str =
    "make one with `openssl rand -base64 32` (or `head -c 32 /dev/urandom | base64`)";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("PORTICO_SECRET_KEY: key {position} is not 32 bytes in base64 ({why}); {MAKE_ONE}")]
    MalformedKey { position: usize, why: String },
    #[error(
        "PORTICO_SECRET_KEY is not set, and sources carry secrets to encrypt or read; {MAKE_ONE}"
    )]
    MissingKey,
    #[error(
        "a source's secrets were sealed under key {key_id}, which PORTICO_SECRET_KEY does not hold: put that key after the current one (comma-separated) and run `portico source rekey`"
    )]
    UnknownKey { key_id: String },
    #[error(
        "a source's secrets do not open: they were altered, or sealed for another source ({0})"
    )]
    Corrupt(&'static str),
    #[error("no random bytes for a nonce")]
    Random,
}

struct Key {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
}

/// The keys of `PORTICO_SECRET_KEY`: the first seals, all of them open.
pub struct SecretKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| hex(&k.id)).collect();
        f.debug_struct("SecretKeys").field("key_ids", &ids).finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SecretKeys {
    /// Keys as PORTICO_SECRET_KEY holds them; `None` when it is unset or empty.
    pub fn parse(value: Option<&str>) -> Result<Option<SecretKeys>, SecretsError> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let mut keys = Vec::new();
        for (i, text) in value.split(',').map(str::trim).enumerate() {
            let position = i + 1;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| SecretsError::MalformedKey {
                    position,
                    why: e.to_string(),
                })?;
            if bytes.len() != 32 {
                return Err(SecretsError::MalformedKey {
                    position,
                    why: format!("it decodes to {} bytes", bytes.len()),
                });
            }
            let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| {
                SecretsError::MalformedKey {
                    position,
                    why: "refused by the cipher".into(),
                }
            })?;
            let digest = Sha256::digest(&bytes);
            let mut id = [0u8; KEY_ID_LEN];
            id.copy_from_slice(&digest[..KEY_ID_LEN]);
            keys.push(Key {
                id,
                key: LessSafeKey::new(unbound),
            });
        }
        Ok(Some(SecretKeys { keys }))
    }

    /// The process's keys, from `PORTICO_SECRET_KEY`.
    pub fn from_env() -> Result<Option<SecretKeys>, SecretsError> {
        SecretKeys::parse(std::env::var("PORTICO_SECRET_KEY").ok().as_deref())
    }

    /// Seal `secrets` for the source `kind` + `key`.
    pub fn seal(
        &self,
        kind: &str,
        key: &str,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, SecretsError> {
        let sealing = self.keys.first().ok_or(SecretsError::MissingKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretsError::Random)?;
        let mut data = serde_json::to_vec(secrets).map_err(|_| SecretsError::Corrupt("encode"))?;
        sealing
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated(kind, key)),
                &mut data,
            )
            .map_err(|_| SecretsError::Corrupt("seal"))?;
        let mut out = Vec::with_capacity(MAGIC.len() + KEY_ID_LEN + NONCE_LEN + data.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&sealing.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// Open what [`SecretKeys::seal`] sealed for the source `kind` + `key`.
    pub fn open(
        &self,
        kind: &str,
        key: &str,
        sealed: &[u8],
    ) -> Result<BTreeMap<String, String>, SecretsError> {
        let head = MAGIC.len() + KEY_ID_LEN + NONCE_LEN;
        if sealed.len() < head || &sealed[..MAGIC.len()] != MAGIC {
            return Err(SecretsError::Corrupt("not a sealed value"));
        }
        let id = &sealed[MAGIC.len()..MAGIC.len() + KEY_ID_LEN];
        let opening = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SecretsError::UnknownKey { key_id: hex(id) })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[MAGIC.len() + KEY_ID_LEN..head]);
        let mut data = sealed[head..].to_vec();
        let plain = opening
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated(kind, key)),
                &mut data,
            )
            .map_err(|_| SecretsError::Corrupt("authentication failed"))?;
        serde_json::from_slice(plain).map_err(|_| SecretsError::Corrupt("not a JSON object"))
    }

    /// Whether `sealed` is sealed under the current (first) key.
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        let start = MAGIC.len();
        self.keys
            .first()
            .is_some_and(|k| sealed.get(start..start + KEY_ID_LEN) == Some(&k.id[..]))
    }
}

/// A source's settings and secrets as the store keeps them: settings and
/// secret names in clear, secret values sealed. No secrets, no key needed.
pub fn stored(
    keys: Option<&SecretKeys>,
    kind: &str,
    key: &str,
    settings: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> Result<StoredCredentials, SecretsError> {
    let secrets_sealed = if secrets.is_empty() {
        None
    } else {
        Some(
            keys.ok_or(SecretsError::MissingKey)?
                .seal(kind, key, secrets)?,
        )
    };
    let names: Vec<&String> = secrets.keys().collect();
    Ok(StoredCredentials {
        settings_json: serde_json::to_string(settings).unwrap_or_else(|_| "{}".into()),
        secret_names: serde_json::to_string(&names).unwrap_or_else(|_| "[]".into()),
        secrets_sealed,
    })
}

/// A stored source's secrets, opened (none without a sealed value).
pub fn secrets_of(
    keys: Option<&SecretKeys>,
    row: &SourceRow,
) -> Result<BTreeMap<String, String>, SecretsError> {
    match &row.secrets_sealed {
        None => Ok(BTreeMap::new()),
        Some(sealed) => {
            keys.ok_or(SecretsError::MissingKey)?
                .open(&row.kind, &row.external_key, sealed)
        }
    }
}

/// A stored source's settings.
pub fn settings_of(row: &SourceRow) -> BTreeMap<String, String> {
    serde_json::from_str(&row.settings_json).unwrap_or_default()
}

/// A stored source's secret names (never their values).
pub fn secret_names_of(row: &SourceRow) -> Vec<String> {
    serde_json::from_str(&row.secret_names).unwrap_or_default()
}

/// A source as the CLI and the admin API show it: secret names, never values.
pub fn source_view(row: &SourceRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "tenant_id": row.tenant_id,
        "kind": row.kind,
        "external_key": row.external_key,
        "settings": settings_of(row),
        "secrets": secret_names_of(row),
        "created_at": row.created_at,
    })
}

/// The associated data that binds a sealed value to its source.
fn associated(kind: &str, key: &str) -> Vec<u8> {
    let mut aad = b"portico:lead_sources:".to_vec();
    aad.extend_from_slice(kind.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key.as_bytes());
    aad
}

/// A `--secret` argument: `NAME=VALUE`, `NAME=@FILE` (the file's contents,
/// without a trailing newline) or `NAME=env:VAR` (that variable's value).
pub fn read_secret_arg(arg: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = arg
        .split_once('=')
        .filter(|(n, _)| valid_name(n))
        .ok_or_else(|| {
            // The argument itself is not repeated: it may be a bare secret.
            anyhow::anyhow!(
                "a --secret argument is not NAME=VALUE, NAME=@FILE or NAME=env:VAR (names use a-z, A-Z, 0-9, '_' and '-')"
            )
        })?;
    let value = if let Some(path) = value.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--secret {name}=@{path}: cannot read the file: {e}"))?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(var) = value.strip_prefix("env:") {
        std::env::var(var)
            .map_err(|_| anyhow::anyhow!("--secret {name}=env:{var}: {var} is not set"))?
    } else {
        value.to_string()
    };
    anyhow::ensure!(!value.is_empty(), "--secret {name}: the value is empty");
    Ok((name.to_string(), value))
}

/// A `--setting NAME=VALUE` argument.
pub fn read_setting_arg(arg: &str) -> anyhow::Result<(String, String)> {
    arg.split_once('=')
        .filter(|(n, _)| valid_name(n))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .ok_or_else(|| anyhow::anyhow!("--setting {arg:?}: use NAME=VALUE"))
}

/// Secret and setting names: short, plain, safe to show.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    #[test]
    fn sealed_values_open_only_for_their_source_and_hide_the_value() {
        let keys = SecretKeys::parse(Some(&key(7))).unwrap().unwrap();
        let secrets =
            BTreeMap::from([("page_access_token".to_string(), "EAAB-secret".to_string())]);
        let sealed = keys.seal("meta", "p1", &secrets).unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"EAAB-secret"));
        assert_eq!(keys.open("meta", "p1", &sealed).unwrap(), secrets);
        // Another source, or a flipped byte: refused.
        assert!(matches!(
            keys.open("meta", "p2", &sealed),
            Err(SecretsError::Corrupt(_))
        ));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(keys.open("meta", "p1", &altered).is_err());
        // Two seals of the same value differ (random nonce).
        assert_ne!(sealed, keys.seal("meta", "p1", &secrets).unwrap());
    }

    #[test]
    fn rotation_opens_with_old_keys_and_seals_with_the_first() {
        let old = SecretKeys::parse(Some(&key(1))).unwrap().unwrap();
        let sealed = old.seal("whatsapp", "n", &BTreeMap::new()).unwrap();
        let both = SecretKeys::parse(Some(&format!("{}, {}", key(2), key(1))))
            .unwrap()
            .unwrap();
        assert!(both.open("whatsapp", "n", &sealed).is_ok());
        assert!(!both.is_current(&sealed));
        let resealed = both.seal("whatsapp", "n", &BTreeMap::new()).unwrap();
        assert!(both.is_current(&resealed));
        let new_only = SecretKeys::parse(Some(&key(2))).unwrap().unwrap();
        let e = new_only
            .open("whatsapp", "n", &sealed)
            .unwrap_err()
            .to_string();
        assert!(e.contains("portico source rekey"), "{e}");
    }

    #[test]
    fn a_malformed_key_says_how_to_make_one() {
        for bad in [
            "short",
            "!!!",
            &base64::engine::general_purpose::STANDARD.encode([1u8; 16]),
        ] {
            let e = SecretKeys::parse(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("openssl rand -base64 32"), "{e}");
        }
        assert!(SecretKeys::parse(Some("  ")).unwrap().is_none());
        assert!(format!("{:?}", SecretKeys::parse(Some(&key(3))).unwrap()).contains("key_ids"));
    }

    #[test]
    fn secret_arguments_read_values_files_and_variables() {
        assert_eq!(
            read_secret_arg("access_token=abc=def").unwrap(),
            ("access_token".into(), "abc=def".into())
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(
            read_secret_arg(&format!("t=@{}", file.display()))
                .unwrap()
                .1,
            "from-file"
        );
        assert!(read_secret_arg("t=env:PORTICO_TEST_SURELY_UNSET").is_err());
        assert!(read_secret_arg("no value").is_err());
        assert!(read_secret_arg("bad name=x").is_err());
        assert_eq!(read_setting_arg("a=").unwrap(), ("a".into(), String::new()));
    }
}
