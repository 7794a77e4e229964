//! One error type for every format crate. All of them mean "bad input or
//! usage" to the CLI (exit code 2); the message names the file and what was
//! expected.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a named file.
    /// (The OS error is part of the message, not a separate source, so that
    /// `{:#}` does not print it twice.)
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },
    /// The file breaks a rule of its format.
    #[error("{}: {msg}", path.display())]
    Malformed { path: PathBuf, msg: String },
    /// Something the input or the request asks for that is not valid, not
    /// tied to one file yet (the reader adds the path with [`Error::in_file`]).
    #[error("{0}")]
    Invalid(String),
    /// A valid request this format or build cannot carry out.
    #[error("{0}")]
    Unsupported(String),
    /// A pickle names a global outside the allowlist: it would run code in
    /// Python. Never executed; the name is given.
    #[error("{}: {msg}", path.display())]
    RefusedGlobal { path: PathBuf, global: String, msg: String },
    /// The file ends (or a declared length runs past its end) where the
    /// format needs more bytes. `offset` is where the missing part starts:
    /// in the file, or within the part the message names (a pickle inside
    /// a zip entry); the message says which.
    #[error("{}: {msg}", path.display())]
    Truncated { path: PathBuf, offset: u64, msg: String },
    /// A limit on sizes, counts or depth was exceeded.
    #[error("{}: {msg}", path.display())]
    LimitExceeded { path: PathBuf, msg: String },
    /// The user interrupted the run (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Error::Unsupported(msg.into())
    }
    pub fn malformed(path: &Path, msg: impl Into<String>) -> Self {
        Error::Malformed {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub fn truncated(path: &Path, offset: u64, msg: impl Into<String>) -> Self {
        Error::Truncated {
            path: path.to_path_buf(),
            offset,
            msg: msg.into(),
        }
    }
    pub fn limit(path: &Path, msg: impl Into<String>) -> Self {
        Error::LimitExceeded {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub fn io(path: &Path, err: io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            err,
        }
    }
    /// Names the tensor in an error raised while pulling its data.
    pub fn for_tensor(self, tensor: &str) -> Self {
        match self {
            Error::Invalid(msg) => Error::Invalid(format!("tensor '{tensor}': {msg}")),
            Error::Malformed { path, msg } => Error::Malformed {
                path,
                msg: format!("tensor '{tensor}': {msg}"),
            },
            other => other,
        }
    }

    /// Attaches a file to an error that has none yet.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            Error::Invalid(msg) => Error::malformed(path, msg),
            other => other,
        }
    }
}
