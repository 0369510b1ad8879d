//! Log lines written off the request path: a bounded queue to a thread
//! that owns the file.
//!
//! A request that logs never waits for a disk or a pipe: [`LogWriter::write_line`]
//! puts the line in a queue of bounded length and returns. A thread of its
//! own writes what is queued, in batches (one `write` per batch), to
//! standard output, standard error or a file. When the queue is full (the
//! file is written slower than lines come) or a write fails (a full disk, a
//! file that cannot be written), lines are dropped and counted
//! ([`LogWriter::dropped`]), and the writer says once on standard error why;
//! it says again when writing works again.
//!
//! [`LogWriter::reopen`] opens the file at its path again: the logrotate
//! convention (the old file is renamed, then the proxy is told to write to a
//! new one at the path; `SIGUSR1` in the `switchyard` binary).
//!
//! ```no_run
//! use switchyard::log_file::{LogTarget, LogWriter};
//!
//! # fn main() -> std::io::Result<()> {
//! let access = LogWriter::open(LogTarget::File("/var/log/switchyard/access.log".into()))?;
//! access.write_line("127.0.0.1:5000 \"GET /\" 200");
//! // After logrotate renamed the file:
//! access.reopen();
//! # Ok(())
//! # }
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// Lines the queue holds by default before new ones are dropped.
pub const DEFAULT_QUEUE_LINES: usize = 16 * 1024;

/// Bytes the queue holds at most, whatever the number of lines (long
/// lines from long request paths would otherwise let a stalled disk hold
/// gigabytes).
pub const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// Where a [`LogWriter`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
    /// A file, appended to (created if missing).
    File(PathBuf),
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTarget::Stdout => f.write_str("standard output"),
            LogTarget::Stderr => f.write_str("standard error"),
            LogTarget::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What the queue carries to the writing thread.
enum Message {
    Line(Vec<u8>),
    /// Open the file at its path again.
    Reopen,
    /// Write everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// A log destination whose writes never block the caller. Cheap to clone:
/// clones share the queue and the thread. The thread ends when the last
/// clone is dropped, after writing what is queued; that drop waits up to a
/// second for it.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

struct Shared {
    queue: SyncSender<Message>,
    target: LogTarget,
    /// Lines dropped: queue full, or a failed write.
    dropped: Arc<AtomicU64>,
    /// A reopen was asked while the queue was full.
    reopen_pending: Arc<AtomicBool>,
    /// The queue was found full, and that was said on standard error
    /// (the thread clears it, and says so, once it has caught up).
    overflow_said: Arc<AtomicBool>,
    /// Bytes of the lines queued now.
    queued_bytes: Arc<AtomicUsize>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("target", &self.shared.target)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl LogWriter {
    /// A writer to `target` with a queue of [`DEFAULT_QUEUE_LINES`]. A file
    /// is opened now, so a path that cannot be written is an error here,
    /// before serving, rather than lines lost later.
    pub fn open(target: LogTarget) -> io::Result<LogWriter> {
        LogWriter::with_queue(target, DEFAULT_QUEUE_LINES)
    }

    /// [`open`](Self::open) with a queue of `lines` (at least 1).
    pub fn with_queue(target: LogTarget, lines: usize) -> io::Result<LogWriter> {
        let sink = Sink::open(&target)?;
        let (queue, receiver) = mpsc::sync_channel(lines.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let reopen_pending = Arc::new(AtomicBool::new(false));
        let overflow_said = Arc::new(AtomicBool::new(false));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let mut thread = WriterThread {
            sink,
            target: target.clone(),
            dropped: Arc::clone(&dropped),
            reopen_pending: Arc::clone(&reopen_pending),
            overflow_said: Arc::clone(&overflow_said),
            queued_bytes: Arc::clone(&queued_bytes),
            failing: false,
            batch: Vec::new(),
            lines_in_batch: 0,
        };
        std::thread::Builder::new()
            .name("switchyard-log".to_string())
            .spawn(move || thread.run(receiver))?;
        Ok(LogWriter {
            shared: Arc::new(Shared {
                queue,
                target,
                dropped,
                reopen_pending,
                overflow_said,
                queued_bytes,
            }),
        })
    }

    /// Where this writes.
    pub fn target(&self) -> &LogTarget {
        &self.shared.target
    }

    /// Queue one line (a newline is added unless it ends with one). Never
    /// blocks: when the queue is full (in lines, or [`MAX_QUEUED_BYTES`])
    /// the line is dropped and counted.
    pub fn write_line(&self, line: impl Into<Vec<u8>>) {
        let mut line = line.into();
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        let len = line.len();
        let queued = self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if queued + len > MAX_QUEUED_BYTES {
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.overflow();
            return;
        }
        match self.shared.queue.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                self.overflow();
            }
            // The thread is gone (it cannot be, short of a panic): count it.
            Err(TrySendError::Disconnected(_)) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A line dropped for a full queue: counted, and said once per episode.
    fn overflow(&self) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.shared.overflow_said.swap(true, Ordering::Relaxed) {
            eprintln!(
                "switchyard: the log to {} falls behind (its queue is full); dropping lines \
                 until it catches up (counted in switchyard_log_lines_dropped_total)",
                self.shared.target
            );
        }
    }

    /// Open the file at its path again (after it was renamed by log
    /// rotation); lines queued before this go to the old file. Nothing
    /// for standard output or standard error.
    pub fn reopen(&self) {
        if !matches!(self.shared.target, LogTarget::File(_)) {
            return;
        }
        if self.shared.queue.try_send(Message::Reopen).is_err() {
            // Full: the thread is busy and looks at the flag after each batch.
            self.shared.reopen_pending.store(true, Ordering::Relaxed);
        }
    }

    /// Lines dropped so far (queue full or a failed write).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Wait, at most `within`, until the writer got through every line
    /// queued before this call (written, or dropped and counted because
    /// the write failed); whether it did in time. For the end of the process (lines still
    /// queued then would be lost); a file that cannot be written in time
    /// does not hold the exit up.
    pub fn flush(&self, within: Duration) -> bool {
        flush_queue(&self.shared.queue, within)
    }
}

/// At most this long, the last clone's drop waits for the queued lines.
const DROP_FLUSH: Duration = Duration::from_secs(1);

impl Drop for Shared {
    fn drop(&mut self) {
        // The queue's sender goes with this, which ends the thread once the
        // queue is written; wait a little for that, so lines queued just
        // before the end of the process are not lost.
        flush_queue(&self.queue, DROP_FLUSH);
    }
}

/// Ask the thread behind `queue` to answer once everything queued before
/// is written, and wait for the answer until `within` has passed.
fn flush_queue(queue: &SyncSender<Message>, within: Duration) -> bool {
    let (done, wait) = mpsc::sync_channel(1);
    let deadline = Instant::now() + within;
    let mut message = Message::Flush(done);
    loop {
        match queue.try_send(message) {
            Ok(()) => break,
            Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                message = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return false,
        }
    }
    wait.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_ok()
}

/// An open destination.
enum Sink {
    Stdout(io::Stdout),
    Stderr(io::Stderr),
    File(File),
}

impl Sink {
    fn open(target: &LogTarget) -> io::Result<Sink> {
        Ok(match target {
            LogTarget::Stdout => Sink::Stdout(io::stdout()),
            LogTarget::Stderr => Sink::Stderr(io::stderr()),
            LogTarget::File(path) => Sink::File(open_file(path)?),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::Stderr(err) => err.lock().write_all(bytes),
            Sink::File(file) => file.write_all(bytes),
        }
    }
}

/// Open `path` for appending, creating it if missing.
fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))
}

/// The thread that owns the destination.
struct WriterThread {
    sink: Sink,
    target: LogTarget,
    dropped: Arc<AtomicU64>,
    reopen_pending: Arc<AtomicBool>,
    overflow_said: Arc<AtomicBool>,
    queued_bytes: Arc<AtomicUsize>,
    /// The last write failed (said once on standard error).
    failing: bool,
    batch: Vec<u8>,
    lines_in_batch: u64,
}

/// Most bytes gathered into one write.
const BATCH_BYTES: usize = 64 * 1024;

/// How often a thread with nothing to write looks at a pending reopen.
const IDLE_LOOK: Duration = Duration::from_millis(200);

impl WriterThread {
    fn run(&mut self, queue: Receiver<Message>) {
        loop {
            let first = match queue.recv_timeout(IDLE_LOOK) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    self.reopen_if_pending();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.take(first);
            // Gather what else is queued into this write.
            let mut caught_up = false;
            while self.batch.len() < BATCH_BYTES {
                match queue.try_recv() {
                    Ok(message) => self.take(message),
                    Err(_) => {
                        caught_up = true;
                        break;
                    }
                }
            }
            self.write_batch();
            self.reopen_if_pending();
            if caught_up && self.overflow_said.swap(false, Ordering::Relaxed) {
                eprintln!("switchyard: the log to {} caught up", self.target);
            }
        }
        self.write_batch();
    }

    fn take(&mut self, message: Message) {
        match message {
            Message::Line(line) => {
                self.queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
                self.batch.extend_from_slice(&line);
                self.lines_in_batch += 1;
            }
            Message::Reopen => {
                self.write_batch();
                self.reopen();
            }
            Message::Flush(done) => {
                self.write_batch();
                let _ = done.try_send(());
            }
        }
    }

    fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        match self.sink.write_all(&self.batch) {
            Ok(()) => {
                if self.failing {
                    self.failing = false;
                    eprintln!("switchyard: writing the log to {} again", self.target);
                }
            }
            Err(e) => {
                self.dropped
                    .fetch_add(self.lines_in_batch, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    eprintln!(
                        "switchyard: cannot write the log to {}: {e}; dropping lines until it can \
                         (counted in switchyard_log_lines_dropped_total)",
                        self.target
                    );
                }
            }
        }
        self.batch.clear();
        self.lines_in_batch = 0;
        if self.batch.capacity() > BATCH_BYTES * 2 {
            self.batch.shrink_to(BATCH_BYTES);
        }
    }

    fn reopen_if_pending(&mut self) {
        if self.reopen_pending.swap(false, Ordering::Relaxed) {
            self.reopen();
        }
    }

    /// Open the file at its path again; if that fails, keep writing to the
    /// one open now (as nginx does) and say why.
    fn reopen(&mut self) {
        let LogTarget::File(path) = &self.target else {
            return;
        };
        match open_file(path) {
            Ok(file) => self.sink = Sink::File(file),
            Err(e) => eprintln!(
                "switchyard: cannot reopen the log: {e}; still writing to the file open before"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
