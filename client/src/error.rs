//! The client's one error type.
//!
//! Server answers keep etcd's text verbatim so callers (and etcdctl-rs) can match on it, and `Display` renders
//! them the way etcd's Go client does: a known `etcdserver: ...` message alone, anything else as
//! `rpc error: code = <Code> desc = <message>`.

use std::fmt;

/// Result alias used across the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a client call can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The server (or the gRPC layer) answered with a status; `message` is the server's text, unchanged.
    #[error("{}", render_grpc(*.code, .message))]
    Grpc {
        /// gRPC status code.
        code: tonic::Code,
        /// The status message exactly as sent.
        message: String,
    },
    /// No endpoint could be reached, or the connection broke before an answer arrived.
    #[error("{0}")]
    Transport(String),
    /// The per-request deadline (`command_timeout`) passed; worded as Go's `context.DeadlineExceeded`.
    #[error("context deadline exceeded")]
    DeadlineExceeded,
    /// An option or argument the client cannot use (bad endpoint URL, empty endpoint list, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A watch or keep-alive stream ended (server closed it, or the handle was dropped).
    #[error("{0}")]
    StreamClosed(String),
}

impl Error {
    /// The gRPC code when the error is a server answer.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Grpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The server's message when the error is a server answer.
    pub fn message(&self) -> Option<&str> {
        match self {
            Error::Grpc { message, .. } => Some(message),
            _ => None,
        }
    }

    /// True for `etcdserver: mvcc: required revision has been compacted`.
    pub fn is_compacted(&self) -> bool {
        self.message() == Some("etcdserver: mvcc: required revision has been compacted")
    }

    /// True for `etcdserver: permission denied`.
    pub fn is_permission_denied(&self) -> bool {
        self.message() == Some("etcdserver: permission denied")
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Grpc { code: s.code(), message: s.message().to_string() }
    }
}

/// Go's name of a gRPC code (`codes.Code.String()`).
pub fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

fn render_grpc(code: tonic::Code, message: &str) -> String {
    // etcd's clientv3 turns every status whose text it knows (all start with "etcdserver: ") into a bare error
    // carrying just that text; anything else keeps grpc-go's rendering.
    if message.starts_with("etcdserver: ") {
        message.to_string()
    } else {
        format!("rpc error: code = {} desc = {}", go_code_name(code), message)
    }
}

/// Debug-friendly one-line view of a status and its source chain (used for transport failures).
pub(crate) fn describe_status(s: &tonic::Status) -> String {
    let mut out = String::new();
    let _ = fmt::write(&mut out, format_args!("{}", s.message()));
    let mut src = std::error::Error::source(s);
    while let Some(e) = src {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdserver_messages_render_verbatim() {
        let e = Error::from(tonic::Status::out_of_range("etcdserver: mvcc: required revision has been compacted"));
        assert_eq!(e.to_string(), "etcdserver: mvcc: required revision has been compacted");
        assert!(e.is_compacted());
    }

    #[test]
    fn other_statuses_render_like_grpc_go() {
        let e = Error::from(tonic::Status::unavailable("connection refused"));
        assert_eq!(e.to_string(), "rpc error: code = Unavailable desc = connection refused");
        assert_eq!(Error::DeadlineExceeded.to_string(), "context deadline exceeded");
    }
}
