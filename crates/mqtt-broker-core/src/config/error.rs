//! Errors and warnings of the configuration parser.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be loaded. Every variant that comes from a
/// line of a file names the file and the 1-based line number.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The main configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file named by `include_dir` (or the directory itself) could not be read.
    #[error("{file}:{line}: include_dir: cannot read {path}: {source}")]
    Include {
        /// The file with the `include_dir` line.
        file: String,
        /// Its line number.
        line: usize,
        /// The directory or file that could not be read.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file is not valid UTF-8.
    #[error("{file}:{line}: the file is not valid UTF-8 text")]
    NotUtf8 {
        /// The file.
        file: String,
        /// The line with the first invalid byte.
        line: usize,
    },
    /// The key is not a Mosquitto option at all (probably a typing mistake).
    #[error("{file}:{line}: unknown option '{key}'{}", suggestion_text(suggestion))]
    UnknownKey {
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// The key as written.
        key: String,
        /// The closest supported key, if one is close.
        suggestion: Option<&'static str>,
    },
    /// A Mosquitto option this broker does not implement.
    #[error("{file}:{line}: option '{key}' is not supported: {reason}")]
    Unsupported {
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// The key.
        key: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A value that cannot be parsed or is out of range.
    #[error("{file}:{line}: invalid value '{value}' for '{key}': expected {expected}")]
    InvalidValue {
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// The key.
        key: String,
        /// The value as written (empty when missing).
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A valid line that conflicts with another one (a duplicate, or an
    /// option in the wrong place).
    #[error("{file}:{line}: {key}: {message}")]
    Conflict {
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// The key.
        key: String,
        /// What conflicts and how to fix it.
        message: String,
    },
}

fn suggestion_text(s: &Option<&'static str>) -> String {
    match s {
        Some(k) => format!(" (did you mean '{k}'?)"),
        None => String::new(),
    }
}

impl ConfigError {
    /// The file the error is in, if it comes from a file's content.
    pub fn file(&self) -> Option<&str> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Include { file, .. }
            | ConfigError::NotUtf8 { file, .. }
            | ConfigError::UnknownKey { file, .. }
            | ConfigError::Unsupported { file, .. }
            | ConfigError::InvalidValue { file, .. }
            | ConfigError::Conflict { file, .. } => Some(file),
        }
    }

    /// The 1-based line number, if the error comes from a line.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Include { line, .. }
            | ConfigError::NotUtf8 { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::Unsupported { line, .. }
            | ConfigError::InvalidValue { line, .. }
            | ConfigError::Conflict { line, .. } => Some(*line),
        }
    }

    /// The option the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Include { .. } => Some("include_dir"),
            ConfigError::Io { .. } | ConfigError::NotUtf8 { .. } => None,
            ConfigError::UnknownKey { key, .. }
            | ConfigError::Unsupported { key, .. }
            | ConfigError::InvalidValue { key, .. }
            | ConfigError::Conflict { key, .. } => Some(key),
        }
    }
}

/// Something in a configuration that was accepted but deserves a word: an
/// option that is read and ignored, or one that has no effect where it is.
/// Returned to the caller, never printed by the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub file: String,
    /// The 1-based line number.
    pub line: usize,
    /// The option.
    pub key: String,
    /// What happens and, where useful, what to do.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}
