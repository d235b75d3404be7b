//! The crate's one error type.

use std::fmt;

/// What went wrong, broadly. New kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A profile file or body could not be decoded: corrupt, truncated or not a profile.
    Decode,
    /// A request or option was out of range or malformed.
    InvalidInput,
    /// The configuration refused to start (bad `DIAG_*` variable, missing token, ...).
    Config,
    /// An I/O operation failed (binding the listener, writing a file, ...).
    Io,
    /// The resource is busy (another CPU profile is running, ...).
    Busy,
    /// The feature is not available in this build or on this platform.
    Unsupported,
    /// The operation did not finish in the time allowed (a task dump while a worker is
    /// blocked, a request past its deadline, ...).
    TimedOut,
}

/// diag's error: a kind and a one-line message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        Self {
            kind,
            message: message.to_string(),
            source: None,
        }
    }

    /// An error of `kind` with `message`, caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub(crate) fn decode(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Decode, message)
    }

    pub(crate) fn invalid(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
