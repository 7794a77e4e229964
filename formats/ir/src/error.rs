//! One error type for every format crate. All but [`Error::Internal`]
//! mean "bad input or usage" to the CLI (exit code 2); the message names
//! the file and what was expected. An internal error is a broken invariant
//! of our own code (a caller asking for an unaligned read, a plan without
//! the file it planned): exit code 3, kind `internal`, never blamed on the
//! input.

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
    /// The file exists but could not be read as a whole (the system refused
    /// to map it, or it changed while being read): nothing is said of its
    /// contents, and `scan` never calls it safe.
    #[error("{}: {msg}", path.display())]
    Unreadable { path: PathBuf, msg: String },
    /// A limit on sizes, counts or depth was exceeded.
    #[error("{}: {msg}", path.display())]
    LimitExceeded { path: PathBuf, msg: String },
    /// An invariant of modelconv's own code does not hold: a bug, not
    /// something wrong with the input.
    #[error("internal error (a bug in modelconv, not in the input; please report it): {0}")]
    Internal(String),
    /// The user interrupted the run (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
    /// An error while handling one tensor, which it names.
    #[error("{}", in_tensor_message(tensor, inner))]
    InTensor { tensor: String, inner: Box<Error> },
}

/// `path: tensor 'x': message` (the path first, as every other message has it).
fn in_tensor_message(tensor: &str, inner: &Error) -> String {
    match inner.path() {
        Some(p) => {
            let text = inner.to_string();
            let prefix = format!("{}: ", p.display());
            let rest = text.strip_prefix(&prefix).unwrap_or(&text);
            format!("{prefix}tensor '{tensor}': {rest}")
        }
        None => format!("tensor '{tensor}': {inner}"),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
    /// Whether this is (or wraps) a broken invariant rather than bad input.
    pub fn is_internal(&self) -> bool {
        match self {
            Error::Internal(_) => true,
            Error::InTensor { inner, .. } => inner.is_internal(),
            _ => false,
        }
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
    /// Names the tensor in an error raised while pulling its data (an
    /// interrupt, or an error that names one already, is kept as it is).
    pub fn for_tensor(self, tensor: &str) -> Self {
        match self {
            e @ (Error::Interrupted | Error::InTensor { .. }) => e,
            inner => Error::InTensor {
                tensor: tensor.to_string(),
                inner: Box::new(inner),
            },
        }
    }

    /// Attaches a file to an error that has none yet.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            Error::Invalid(msg) => Error::malformed(path, msg),
            Error::InTensor { tensor, inner } => Error::InTensor {
                tensor,
                inner: Box::new(inner.in_file(path)),
            },
            other => other,
        }
    }

    /// What kind of error this is, as `--json` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Malformed { .. } => "malformed",
            Error::Invalid(_) => "invalid",
            Error::Unsupported(_) => "unsupported",
            Error::RefusedGlobal { .. } => "refused_global",
            Error::Truncated { .. } => "truncated",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::Unreadable { .. } => "unreadable",
            Error::Interrupted => "interrupted",
            Error::Internal(_) => "internal",
            Error::InTensor { inner, .. } => inner.kind(),
        }
    }

    /// The file the error is about, if it names one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. }
            | Error::Malformed { path, .. }
            | Error::RefusedGlobal { path, .. }
            | Error::Truncated { path, .. }
            | Error::LimitExceeded { path, .. }
            | Error::Unreadable { path, .. } => Some(path),
            Error::InTensor { inner, .. } => inner.path(),
            _ => None,
        }
    }

    /// The byte offset the error is at, if it names one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Truncated { offset, .. } => Some(*offset),
            Error::InTensor { inner, .. } => inner.offset(),
            _ => None,
        }
    }

    /// The tensor the error is about, if it names one.
    pub fn tensor(&self) -> Option<&str> {
        match self {
            Error::InTensor { tensor, .. } => Some(tensor),
            _ => None,
        }
    }

    /// The error beneath any tensor name.
    pub fn root(&self) -> &Error {
        match self {
            Error::InTensor { inner, .. } => inner.root(),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broken invariant stays internal whatever context is added: never
    /// turned into a fault of the file it happened on.
    #[test]
    fn internal_errors_are_not_blamed_on_the_input() {
        let e = Error::internal("unaligned read")
            .for_tensor("w")
            .in_file(Path::new("m.gguf"));
        assert_eq!(e.kind(), "internal");
        assert!(e.is_internal());
        assert!(e.to_string().contains("a bug in modelconv"), "{e}");
        let bad = Error::invalid("bad shape").for_tensor("w").in_file(Path::new("m.gguf"));
        assert_eq!(bad.kind(), "malformed");
        assert!(!bad.is_internal());
    }
}
