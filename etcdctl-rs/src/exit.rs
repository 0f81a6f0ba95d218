//! Exit codes, the error type commands return, and the output sinks.

use std::io::Write;

/// Exit codes of etcdctl (`ctlv3/command/error.go`).
pub const EXIT_ERROR: i32 = 1;
/// Could not reach/keep a connection.
pub const EXIT_BAD_CONNECTION: i32 = 2;
/// Bad input for txn/watch.
pub const EXIT_INVALID_INPUT: i32 = 3;
/// A valid flag with an unsupported value.
pub const EXIT_BAD_FEATURE: i32 = 4;
/// Interrupted (watch canceled, snapshot failed).
pub const EXIT_INTERRUPTED: i32 = 5;
/// Bad command-line arguments.
pub const EXIT_BAD_ARGS: i32 = 128;

/// How a command ends when it does not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Prints `Error: <msg>` on stderr and exits with `code`.
    Exit { code: i32, msg: String },
    /// Prints `text` verbatim on stderr and exits with `code`.
    Raw { code: i32, text: String },
    /// Exits with `code`, printing nothing more.
    Code(i32),
}

impl CliError {
    /// `Error: msg`, exit `code`.
    pub fn new(code: i32, msg: impl Into<String>) -> CliError {
        CliError::Exit { code, msg: msg.into() }
    }

    /// `Error: msg`, exit 128.
    pub fn bad_args(msg: impl Into<String>) -> CliError {
        CliError::new(EXIT_BAD_ARGS, msg)
    }

    /// The exit code.
    pub fn code(&self) -> i32 {
        match self {
            CliError::Exit { code, .. } | CliError::Raw { code, .. } | CliError::Code(code) => *code,
        }
    }

    /// Go's panic on a nil pointer, which etcdctl hits for some responses without a header.
    pub fn nil_pointer_panic() -> CliError {
        CliError::Raw {
            code: 2,
            text: "panic: runtime error: invalid memory address or nil pointer dereference\n".into(),
        }
    }
}

impl From<raftcd_client::Error> for CliError {
    fn from(e: raftcd_client::Error) -> Self {
        CliError::new(EXIT_ERROR, e.to_string())
    }
}

/// Result of commands and printers.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Where output goes: stdout and stderr, or buffers in tests.
pub struct Out {
    /// Standard output.
    pub out: Box<dyn Write + Send>,
    /// Standard error.
    pub err: Box<dyn Write + Send>,
}

impl Out {
    /// The process's stdout (buffered) and stderr.
    pub fn stdio() -> Out {
        Out { out: Box::new(std::io::BufWriter::new(std::io::stdout())), err: Box::new(std::io::stderr()) }
    }

    /// Writes `s` plus a newline to stdout.
    pub fn line(&mut self, s: &str) {
        let _ = self.out.write_all(s.as_bytes());
        let _ = self.out.write_all(b"\n");
    }

    /// Writes raw bytes to stdout.
    pub fn raw(&mut self, b: &[u8]) {
        let _ = self.out.write_all(b);
    }

    /// Writes `s` plus a newline to stderr.
    pub fn eline(&mut self, s: &str) {
        let _ = self.out.flush();
        let _ = self.err.write_all(s.as_bytes());
        let _ = self.err.write_all(b"\n");
    }

    /// Flushes both streams.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
        let _ = self.err.flush();
    }
}

/// An [`Out`] writing into shared buffers, for unit tests.
#[cfg(test)]
pub mod capture {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A cloneable in-memory writer.
    #[derive(Clone, Default)]
    pub struct Buf(pub Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        /// Contents as a string.
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// A test `Out` and handles on its two buffers.
    pub fn out() -> (super::Out, Buf, Buf) {
        let (o, e) = (Buf::default(), Buf::default());
        (super::Out { out: Box::new(o.clone()), err: Box::new(e.clone()) }, o, e)
    }
}
