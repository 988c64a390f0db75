//! Mosquitto's password file, as written by `mosquitto_passwd` 2.0.
//!
//! Each line is `username:hash`. Two hash formats exist (see Mosquitto's
//! `src/security_default.c`, `unpwd__decode_passwords`, and
//! `src/password_mosq.c`, `pw__hash`):
//!
//! * `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 over the password with the
//!   salt, `ITERATIONS` rounds (101 by default), 64 bytes of output. The
//!   default of `mosquitto_passwd` 2.0 (`-H sha512-pbkdf2`).
//! * `$6$SALT$HASH`: one SHA-512 of the password followed by the salt. The
//!   default of Mosquitto 1.6 and earlier (`-H sha512`).
//!
//! `SALT` is 12 bytes and `HASH` is 64 bytes, both in standard base64.
//!
//! Differences from Mosquitto, all on the strict side: Mosquitto logs and
//! skips a line it cannot decode, so that user silently cannot log in; here
//! such a line is a [`PasswordFileError::Parse`] naming the file and line.
//! A user listed twice is an error too.
//!
//! ```
//! use mqtt_broker_core::password_file::PasswordFile;
//! let file = PasswordFile::parse_str(
//!     "legacy:$6$PS1KXd1x/BzpnRk1$rFQ8lN28vI9ascUGbFQ1nWFBSyGoHQ3JEV1y0TYamZXI7V0Suzje2cUlbeB3zFR5uq8KJetVlpfEUBhHw51MBw==\n",
//!     "passwd",
//! )?;
//! assert!(file.verify("legacy", b"hunter2"));
//! assert!(!file.verify("legacy", b"hunter3"));
//! # Ok::<(), mqtt_broker_core::password_file::PasswordFileError>(())
//! ```

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ring::{digest, pbkdf2};

/// Length of the salt `mosquitto_passwd` writes (`SALT_LEN` in Mosquitto).
pub const SALT_LEN: usize = 12;
/// Length of a SHA-512 hash, the stored hash in both formats.
pub const HASH_LEN: usize = 64;

/// Standard alphabet, padding optional (OpenSSL's decoder accepts both).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a password file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file could not be read.
    #[error("cannot read password_file {path}: {source}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A line is not `username:hash` in one of the formats above.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The file (or the origin name given to [`PasswordFile::parse_str`]).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// One stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$6$`: SHA-512 of the password followed by the salt.
    Sha512 {
        /// The 12-byte salt.
        salt: Vec<u8>,
        /// The 64-byte hash.
        hash: Vec<u8>,
    },
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        /// Number of PBKDF2 rounds.
        iterations: NonZeroU32,
        /// The 12-byte salt.
        salt: Vec<u8>,
        /// The 64-byte derived key.
        hash: Vec<u8>,
    },
}

impl std::fmt::Debug for PasswordHash {
    // Hashes stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordHash::Sha512 { .. } => f.write_str("PasswordHash::Sha512(..)"),
            PasswordHash::Pbkdf2Sha512 { iterations, .. } => {
                write!(
                    f,
                    "PasswordHash::Pbkdf2Sha512(iterations: {iterations}, ..)"
                )
            }
        }
    }
}

impl PasswordHash {
    /// Parses the part after `username:`, e.g. `$7$101$salt$hash`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split('$');
        if parts.next() != Some("") {
            return Err(format!(
                "expected a hash starting with '$7$' or '$6$' (as written by mosquitto_passwd), found '{}'",
                abbreviate(text)
            ));
        }
        let kind = parts.next().unwrap_or("");
        let iterations = match kind {
            "7" => {
                let it = parts.next().unwrap_or("");
                let n: u32 = it
                    .parse()
                    .map_err(|_| format!("invalid PBKDF2 iteration count '{it}'"))?;
                Some(NonZeroU32::new(n).ok_or("PBKDF2 iteration count must be at least 1")?)
            }
            "6" => None,
            other => {
                return Err(format!(
                    "unsupported hash type '${other}$' (expected '$7$' PBKDF2-SHA512 or '$6$' SHA512; plain-text password files must be converted with 'mosquitto_passwd -U')"
                ))
            }
        };
        let salt_b64 = parts.next().ok_or("missing salt")?;
        let hash_b64 = parts.next().ok_or("missing hash")?;
        if parts.next().is_some() {
            return Err("too many '$'-separated fields in hash".into());
        }
        let salt = B64
            .decode(salt_b64)
            .map_err(|e| format!("salt is not valid base64: {e}"))?;
        if salt.len() != SALT_LEN {
            return Err(format!(
                "salt must be {SALT_LEN} bytes, found {}",
                salt.len()
            ));
        }
        let hash = B64
            .decode(hash_b64)
            .map_err(|e| format!("hash is not valid base64: {e}"))?;
        if hash.len() != HASH_LEN {
            return Err(format!(
                "hash must be {HASH_LEN} bytes, found {}",
                hash.len()
            ));
        }
        Ok(match iterations {
            Some(iterations) => PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            },
            None => PasswordHash::Sha512 { salt, hash },
        })
    }

    /// Whether `password` hashes to this value (constant-time comparison).
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Sha512 { salt, hash } => {
                let mut ctx = digest::Context::new(&digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                constant_time_eq(ctx.finish().as_ref(), hash)
            }
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA512,
                *iterations,
                salt,
                password,
                hash,
            )
            .is_ok(),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn abbreviate(s: &str) -> String {
    let mut out: String = s.chars().take(12).collect();
    if s.chars().count() > 12 {
        out.push('…');
    }
    out
}

/// The users and password hashes of one password file.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, PasswordHash>,
}

impl PasswordFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PasswordFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_str(&text, &path.display().to_string())
    }

    /// Parses password file text; `origin` names it in errors.
    ///
    /// Blank lines and lines starting with `#` are skipped. The username is
    /// everything before the first `:`, trimmed of blanks, as in Mosquitto.
    pub fn parse_str(text: &str, origin: &str) -> Result<Self, PasswordFileError> {
        let mut users = HashMap::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let err = |message: String| PasswordFileError::Parse {
                file: origin.to_owned(),
                line,
                message,
            };
            if raw.starts_with('#') || raw.trim().is_empty() {
                continue;
            }
            let Some((user, hash)) = raw.split_once(':') else {
                return Err(err(
                    "expected 'username:hash' (create entries with 'mosquitto_passwd -b FILE USER PASSWORD')"
                        .into(),
                ));
            };
            let user = user.trim();
            if user.is_empty() {
                return Err(err("empty username before ':'".into()));
            }
            let hash = hash.trim();
            if hash.is_empty() {
                return Err(err(format!("user '{user}' has no password hash")));
            }
            let parsed =
                PasswordHash::parse(hash).map_err(|m| err(format!("user '{user}': {m}")))?;
            if users.insert(user.to_owned(), parsed).is_some() {
                return Err(err(format!("user '{user}' is listed more than once")));
            }
        }
        Ok(PasswordFile { users })
    }

    /// Whether `username` is listed and `password` matches its hash.
    ///
    /// An unknown user costs the same PBKDF2 work as a known one, so the
    /// time taken does not reveal which usernames exist.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(hash) => hash.verify(password),
            None => {
                let dummy = PasswordHash::Pbkdf2Sha512 {
                    iterations: NonZeroU32::MIN.saturating_add(100),
                    salt: vec![0; SALT_LEN],
                    hash: vec![0; HASH_LEN],
                };
                let _ = dummy.verify(password);
                false
            }
        }
    }

    /// Whether `username` has an entry.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// The stored hash of `username`.
    pub fn get(&self, username: &str) -> Option<&PasswordHash> {
        self.users.get(username)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file lists no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}
