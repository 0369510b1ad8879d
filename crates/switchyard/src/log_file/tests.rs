#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{LogTarget, LogWriter};

/// A fresh directory for one test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("switchyard-log-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A FIFO `stuck` in a fresh directory, with a reader that never reads
/// (kept open by the caller, so a writer's open finds it) and a pipe
/// buffer already full, so a writer's first write blocks.
fn full_pipe(name: &str) -> (Scratch, std::fs::File) {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    let dir = Scratch::new(name);
    let fifo = dir.0.join("stuck");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut filler = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let block = [b'f'; 4096];
    while std::io::Write::write(&mut filler, &block).is_ok() {}
    (dir, reader)
}

#[test]
fn lines_reach_the_file_in_order_with_newlines() {
    let dir = Scratch::new("order");
    let path = dir.0.join("access.log");
    let log = LogWriter::open(LogTarget::File(path.clone())).unwrap();
    for n in 0..1000 {
        log.write_line(format!("line {n}"));
    }
    log.write_line("ends with its own newline\n");
    assert!(log.flush(Duration::from_secs(10)));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1001);
    assert_eq!(lines[0], "line 0");
    assert_eq!(lines[999], "line 999");
    assert_eq!(lines[1000], "ends with its own newline");
    assert_eq!(log.dropped(), 0);
}

#[test]
fn a_file_that_cannot_be_opened_is_an_error_at_open() {
    let dir = Scratch::new("missing-dir");
    let path = dir.0.join("no-such-dir").join("access.log");
    let e = LogWriter::open(LogTarget::File(path)).unwrap_err();
    assert!(e.to_string().contains("no-such-dir"), "{e}");
}

#[test]
fn reopen_writes_to_a_new_file_after_the_old_one_was_renamed() {
    let dir = Scratch::new("reopen");
    let path = dir.0.join("access.log");
    let rotated = dir.0.join("access.log.1");
    let log = LogWriter::open(LogTarget::File(path.clone())).unwrap();
    log.write_line("before");
    assert!(log.flush(Duration::from_secs(10)));
    std::fs::rename(&path, &rotated).unwrap();
    log.write_line("still to the renamed file");
    log.reopen();
    log.write_line("after");
    assert!(log.flush(Duration::from_secs(10)));
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap(),
        "before\nstill to the renamed file\n"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
}

#[test]
fn a_full_disk_drops_and_counts_lines() {
    // Every write to /dev/full fails with "No space left on device".
    let log = LogWriter::open(LogTarget::File("/dev/full".into())).unwrap();
    for n in 0..5 {
        log.write_line(format!("line {n}"));
    }
    assert!(log.flush(Duration::from_secs(10)));
    assert_eq!(log.dropped(), 5);
}

#[test]
fn a_writer_stuck_on_a_pipe_nobody_reads_drops_lines_instead_of_blocking() {
    let (dir, _reader) = full_pipe("fifo");
    let fifo = dir.0.join("stuck");
    let log = LogWriter::with_queue(LogTarget::File(fifo), 16).unwrap();
    let line = "x".repeat(200);
    let started = Instant::now();
    for _ in 0..5000 {
        log.write_line(line.as_str());
    }
    // 1 MB of lines into a full pipe and a queue of 16: most are dropped,
    // and the caller was never held up by the stuck pipe.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "write_line waited on the pipe: {:?}",
        started.elapsed()
    );
    assert!(log.dropped() > 4000, "dropped {}", log.dropped());
    assert!(!log.flush(Duration::from_millis(100)));
}

#[test]
fn the_queue_holds_a_bounded_number_of_bytes_whatever_its_lines() {
    let (dir, _reader) = full_pipe("bytes");
    let fifo = dir.0.join("stuck");
    // Room for 1,000 lines, but 20 lines of 1 MiB are over the byte bound.
    let log = LogWriter::with_queue(LogTarget::File(fifo), 1000).unwrap();
    let line = "x".repeat(1 << 20);
    for _ in 0..20 {
        log.write_line(line.as_str());
    }
    assert!(log.dropped() >= 4, "dropped {}", log.dropped());
}
