//! The pid file (`[server] pid_file`, `--pid-file`) and, beside it, the
//! outcome of the last binary upgrade (`PATH.upgrade`), which `switchyard
//! upgrade` waits for.
//!
//! A process writes its ID when it is ready, so after an upgrade the file
//! names the new process; at exit it removes the file only if the file
//! still names it.

use std::io;
use std::path::{Path, PathBuf};

/// Write this process's ID to `path` (through a file renamed into place,
/// so a reader never sees half of it).
pub fn write(path: &Path) -> io::Result<()> {
    replace(path, &format!("{}\n", std::process::id()))
}

/// The process ID in `path`.
pub fn read(path: &Path) -> Result<u32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the pid file {}: {e}", path.display()))?;
    text.trim().parse().map_err(|_| {
        format!(
            "the pid file {} does not hold a process ID: {:?}",
            path.display(),
            text.trim()
        )
    })
}

/// Remove `path` if it names this process (a process that took over from
/// this one wrote its own ID there: that file stays).
pub fn remove_if_ours(path: &Path) {
    if read(path).is_ok_and(|pid| pid == std::process::id()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Where an upgrade's outcome is written: beside the pid file.
pub fn status_path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".upgrade");
    PathBuf::from(name)
}

/// Record an upgrade's outcome: `ready PID` or `failed REASON`.
pub fn write_status(pid_file: &Path, status: &str) -> io::Result<()> {
    replace(&status_path(pid_file), &format!("{status}\n"))
}

/// Write `text` to a new file beside `path` and rename it into place. The
/// new file is created exclusively (never through a link someone put at
/// its name); one a crash left is removed first.
fn replace(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}
