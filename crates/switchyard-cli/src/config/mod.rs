//! The config file: parse (`file.rs`), check, and build into the library's
//! types (`build.rs`). Every error names the file, line and column, and the
//! key path, e.g.
//!
//! ```text
//! proxy.toml:12:11: upstreams.app.servers[1]: "127.0.0.1:99999" is not ip:port or host:port: "99999" is not a port number
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use switchyard::discovery::Answers;

mod access;
mod answers;
mod build;
pub mod file;
mod groups;
pub mod health;
pub mod http3;
pub mod protocol;
mod resolve;
mod retry;
pub mod routes;
mod server;
pub mod tls;
mod traffic;
pub mod units;

pub use build::{AdminToken, Config};
pub use file::{FileConfig, LogFormat};
pub use tls::{GroupTls, ListenerTls};

/// A config that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given.
    pub file: String,
    /// 1-based line and column, when the error has a place in the file.
    pub at: Option<(usize, usize)>,
    /// The key path, e.g. `upstreams.app.retry.max_attempts`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.at {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where errors are reported: the file's name and text, to turn byte
/// offsets into lines and columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            // Without the text (a config made in code, or rebuilt from a
            // checked one) a span cannot be turned into a place.
            at: span
                .filter(|s| s.end > 0 && !self.text.is_empty())
                .map(|s| line_column(self.text, s.start)),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// Read, parse and check the config at `path`. Servers given as
/// `host:port` are resolved now, blocking: call it off the serving threads.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_keeping(path, &Answers::default()).map(|(config, _)| config)
}

/// [`load`] for a reload: a name that does not resolve now keeps the
/// addresses it has in `previous` (what is being served), so a DNS blip
/// does not refuse the reload. Returns the config and a note for each name
/// that kept its previous addresses.
pub fn load_keeping(path: &Path, previous: &Answers) -> Result<(Config, Vec<String>), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        at: None,
        key: String::new(),
        message: format!("cannot read the file: {e}"),
    })?;
    parse_keeping(&text, &file, previous)
}

/// The key path of an error, with the field a "missing field `x`" message
/// names appended: a missing `[server]` is then located as `server`.
fn with_missing_field(key: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field);
    match (key, missing) {
        (_, None) => key.to_string(),
        ("", Some(field)) => field.to_string(),
        (_, Some(field)) => format!("{key}.{field}"),
    }
}

/// Parse and check config `text`; `file` names it in errors. Servers given
/// as `host:port` are resolved now, blocking: call it off the serving
/// threads.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    parse_keeping(text, file, &Answers::default()).map(|(config, _)| config)
}

fn parse_keeping(
    text: &str,
    file: &str,
    previous: &Answers,
) -> Result<(Config, Vec<String>), ConfigError> {
    let source = Source { file, text };
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        // A syntax error always has a place, even at the file's first byte.
        let mut error = source.error(None, "", e.message().to_string());
        error.at = e.span().map(|span| line_column(text, span.start));
        error
    })?;
    let parsed: FileConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let key = with_missing_field(if key == "." { "" } else { &key }, inner.message());
        source.error(inner.span(), &key, inner.message().to_string())
    })?;
    let (answers, notes) = resolve::resolve_names(&parsed, &source, previous)?;
    let config = build::build(parsed, &source, answers, &BTreeMap::new(), None)?;
    Ok((config, notes))
}

/// [`parse`] without resolving server names (a name is then an error), for
/// the config fuzz target: nothing is looked up, whatever the text says.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn parse_unresolved(text: &str, file: &str) -> Result<Config, ConfigError> {
    let source = Source { file, text };
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| source.error(None, "", e.message().to_string()))?;
    let parsed: FileConfig = serde_path_to_error::deserialize(deserializer)
        .map_err(|e| source.error(None, "", e.into_inner().message().to_string()))?;
    build::build(parsed, &source, Answers::default(), &BTreeMap::new(), None)
}

/// Check and build a config made in code (the `proxy` one-liner's flags);
/// `origin` names it in errors. Server names are resolved, as by [`parse`].
pub fn from_file_config(file: FileConfig, origin: &str) -> Result<Config, ConfigError> {
    let source = Source {
        file: origin,
        text: "",
    };
    let (answers, _) = resolve::resolve_names(&file, &source, &Answers::default())?;
    build::build(file, &source, answers, &BTreeMap::new(), None)
}

#[cfg(test)]
mod tests;
