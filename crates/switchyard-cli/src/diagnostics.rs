//! Diagnostics (warnings and errors, filtered by `RUST_LOG`, default
//! `warn`): to standard error or `[log] error_file`, through a
//! [`LogWriter`] so that a warning on a request's path never waits for the
//! disk or a pipe. Colour codes only when standard error is a terminal.

use std::io::{self, IsTerminal};

use switchyard::log_file::{LogTarget, LogWriter};
use tracing_subscriber::fmt::MakeWriter;

/// Send diagnostics to `target` from now on (once per process); the
/// writer, to flush at exit and to reopen on SIGUSR1.
pub fn init(target: LogTarget) -> Result<LogWriter, String> {
    let writer =
        LogWriter::open(target.clone()).map_err(|e| format!("cannot open the error log: {e}"))?;
    let colour = target == LogTarget::Stderr && io::stderr().is_terminal();
    // A second call (tests, the demo after a failed start) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(level())
        .with_ansi(colour)
        .with_writer(Events(writer.clone()))
        .try_init();
    Ok(writer)
}

/// Run `load` (reading the config, before the error log's file is known)
/// with its diagnostics written to standard error directly, so that a
/// warning while loading (an insecure upstream TLS setting, say) is seen.
pub fn during_startup<T>(load: impl FnOnce() -> T) -> T {
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(level())
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr)
        .finish();
    tracing::subscriber::with_default(subscriber, load)
}

/// The level `RUST_LOG` sets, `warn` without it.
fn level() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
}

/// Each event the subscriber formats, as one queued line.
#[derive(Clone)]
struct Events(LogWriter);

impl io::Write for Events {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Events {
    type Writer = Events;

    fn make_writer(&'a self) -> Events {
        self.clone()
    }
}
