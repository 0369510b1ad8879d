//! What ACME keeps on disk, one subdirectory per CA under `storage`:
//!
//! ```text
//! STORAGE/                        0700
//!   acme-v02.api.letsencrypt.org-directory/   0700 (both made so when created)
//!     account.json                0600  the account's key and URL
//!     example.com.key             0600  the certificate's private key
//!     example.com.crt             0644  the chain, leaf first (PEM)
//! ```
//!
//! Files are written to a temporary name in the same directory and renamed
//! over the old one, so a crash leaves the old file or the new, never half
//! of one.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use instant_acme::AccountCredentials;

use super::AcmeSettings;

/// Where one CA's files are kept.
#[derive(Debug, Clone)]
pub(super) struct Storage {
    dir: PathBuf,
}

impl Storage {
    /// The subdirectory of `settings.storage` for `settings.directory`.
    pub(super) fn new(settings: &AcmeSettings) -> Self {
        Storage {
            dir: settings
                .storage
                .join(ca_directory_name(&settings.directory)),
        }
    }

    /// The stored account, if one was saved and can be read.
    pub(super) fn account(&self) -> io::Result<Option<AccountCredentials>> {
        let Some(text) = read_if_present(&self.dir.join("account.json"))? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Save the account (0600).
    pub(super) fn save_account(&self, credentials: &AccountCredentials) -> io::Result<()> {
        let text = serde_json::to_string_pretty(credentials)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.write(&self.dir.join("account.json"), text.as_bytes(), 0o600)
    }

    /// Forget the stored account (the CA no longer knows it).
    pub(super) fn forget_account(&self) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join("account.json")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// `domain`'s stored chain and key (PEM), if both are there.
    pub(super) fn certificate(&self, domain: &str) -> io::Result<Option<(String, String)>> {
        let (chain, key) = self.certificate_paths(domain);
        match (read_if_present(&chain)?, read_if_present(&key)?) {
            (Some(chain), Some(key)) => Ok(Some((chain, key))),
            _ => Ok(None),
        }
    }

    /// Save `domain`'s chain (0644) and key (0600): the key first, so a
    /// chain on disk always has its key beside it.
    pub(super) fn save_certificate(&self, domain: &str, chain: &str, key: &str) -> io::Result<()> {
        let (chain_path, key_path) = self.certificate_paths(domain);
        self.write(&key_path, key.as_bytes(), 0o600)?;
        self.write(&chain_path, chain.as_bytes(), 0o644)
    }

    /// Where `domain`'s chain and key are kept.
    pub(super) fn certificate_paths(&self, domain: &str) -> (PathBuf, PathBuf) {
        let domain = domain.to_ascii_lowercase();
        (
            self.dir.join(format!("{domain}.crt")),
            self.dir.join(format!("{domain}.key")),
        )
    }

    /// Write `bytes` to `path` with `mode`, by a temporary file renamed
    /// over it; the directories are made 0700 first.
    fn write(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        make_private_dir(&self.dir)?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        // A temporary file left by a crash is replaced, not reused: a file
        // made new gets `mode` (an existing one would keep its own).
        let _ = std::fs::remove_file(&temporary);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
    }
}

/// Make `dir` and its missing parents, each new one 0700 (an existing one
/// keeps its mode: it may be a directory the operator chose and shares).
fn make_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))
}

fn read_if_present(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("reading {}: {e}", path.display()),
        )),
    }
}

/// A file name for a CA from its directory URL: the URL without its
/// scheme, every character other than letters, digits, `.` and `-` made
/// `-` (`https://127.0.0.1:14000/dir` is `127.0.0.1-14000-dir`), and
/// `ca` before one that would start with a dot.
pub(super) fn ca_directory_name(directory: &str) -> String {
    let rest = directory
        .strip_prefix("https://")
        .unwrap_or(directory)
        .trim_end_matches('/');
    let name: String = rest
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    // Never `.`, `..` or hidden: always a folder of its own inside storage.
    if name.is_empty() || name.starts_with('.') {
        format!("ca{name}")
    } else {
        name
    }
}
