//! Request paths, normalized before routing: the path a route matches is
//! the path that goes upstream, so an origin that resolves `..` or decodes
//! `%2e` cannot be reached through a route meant for another prefix
//! (`/public/../admin` is `/admin` here too).
//!
//! [`normalize`] is pure: RFC 3986 section 5.2.4 dot-segment removal after
//! decoding the percent-encoded unreserved characters (section 6.2.2.2;
//! other escapes get upper-case hex, section 6.2.2.1), then, if asked,
//! merged slashes. Encoded slashes (`%2F`, `%5C`), and a raw backslash
//! (which Windows origins and WHATWG URL parsers read as `/`), are refused,
//! kept or decoded as [`EscapedSlashes`] says. A path that climbs above the root,
//! or holds NUL or a control character, raw or encoded as `%00`, is
//! refused. The query is not this module's: callers pass the path alone.
//!
//! The engine applies it to every request before `request_filter`
//! (`proxy/target.rs`, with `ServerOptions::paths`); a path with nothing
//! to change (no `%`, no dot segment, no `//` when merging) is checked in
//! one pass over its bytes and not copied.

use std::borrow::Cow;

/// What to do with `%2F` and `%5C` (encoded `/` and `\`) in a path, and
/// with a raw `\`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// Refuse the request (400): an origin that decodes them would see
    /// other segments than the route did. The default.
    #[default]
    Reject,
    /// Keep them encoded (as `%2F`, `%5C`): for origins that give them a
    /// meaning of their own and never decode them into separators.
    Keep,
    /// Decode both into `/` before dot segments are removed, so they are
    /// separators for routing too (`\` as Windows origins read it).
    Decode,
}

impl EscapedSlashes {
    /// The config spelling: `reject`, `keep` or `decode`.
    pub fn as_str(self) -> &'static str {
        match self {
            EscapedSlashes::Reject => "reject",
            EscapedSlashes::Keep => "keep",
            EscapedSlashes::Decode => "decode",
        }
    }
}

/// How request paths are normalized (`ServerOptions::paths`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// Remove dot segments and decode percent-encoded unreserved
    /// characters. On by default; off forwards paths as they came (only
    /// control characters are still refused).
    pub normalize: bool,
    /// Merge runs of `/` into one (`/a//b` is `/a/b`). Off by default:
    /// some origins give empty segments a meaning.
    pub merge_slashes: bool,
    /// Encoded slashes: refused by default.
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathRules {
    fn default() -> Self {
        PathRules {
            normalize: true,
            merge_slashes: false,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Why a path was refused (the client gets 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// More `..` segments than there are segments above them.
    ClimbsAboveRoot,
    /// NUL or another control character, raw or percent-encoded NUL.
    ControlCharacter,
    /// `%2F`, `%5C` or a raw `\` under [`EscapedSlashes::Reject`].
    EscapedSlash,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
}

impl PathError {
    /// What a log line or an error response says.
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::ClimbsAboveRoot => "the path climbs above the root",
            PathError::ControlCharacter => "the path holds a control character",
            PathError::EscapedSlash => {
                "the path holds an encoded slash (%2F or %5C) or a backslash"
            }
            PathError::BadPercentEncoding => "the path holds a % not followed by two hex digits",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for PathError {}

/// `path` normalized under `rules`, borrowed when nothing changes. Paths
/// that do not start with `/` (`*`, or empty) are returned as they are.
///
/// ```
/// use switchyard::path::{PathRules, normalize};
///
/// let rules = PathRules::default();
/// assert_eq!(normalize("/public/../admin", &rules).unwrap(), "/admin");
/// assert_eq!(normalize("/public/%2e%2e/admin", &rules).unwrap(), "/admin");
/// assert_eq!(normalize("/%41b%c3%a9", &rules).unwrap(), "/Ab%C3%A9");
/// assert!(normalize("/public/..%2fadmin", &rules).is_err());
/// assert!(normalize("/../etc", &rules).is_err());
/// ```
pub fn normalize<'a>(path: &'a str, rules: &PathRules) -> Result<Cow<'a, str>, PathError> {
    if !path.starts_with('/') {
        return Ok(Cow::Borrowed(path));
    }
    if !needs_work(path.as_bytes(), rules)? {
        return Ok(Cow::Borrowed(path));
    }
    if !rules.normalize {
        // Only control characters are refused, and `needs_work` did that.
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path.as_bytes(), rules.escaped_slashes)?;
    let merged = if rules.merge_slashes {
        merge_slashes(&decoded)
    } else {
        decoded
    };
    let resolved = remove_dot_segments(&merged)?;
    if resolved == path {
        Ok(Cow::Borrowed(path))
    } else {
        Ok(Cow::Owned(resolved))
    }
}

/// One pass over the bytes: refuse control characters, and say whether
/// anything may change (a `%`, a segment starting with `.`, or `//` when
/// merging).
fn needs_work(path: &[u8], rules: &PathRules) -> Result<bool, PathError> {
    let mut work = false;
    let mut previous = 0u8;
    for &b in path {
        if b < 0x20 || b == 0x7f {
            return Err(PathError::ControlCharacter);
        }
        work |= b == b'%'
            || b == b'\\'
            || (b == b'.' && previous == b'/')
            || (b == b'/' && previous == b'/' && rules.merge_slashes);
        previous = b;
    }
    Ok(work)
}

/// The value of an ASCII hex digit.
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// An `unreserved` character of RFC 3986 section 2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decode the unreserved escapes, upper-case the others, and treat `%2F`
/// and `%5C` as `slashes` says.
fn decode(path: &[u8], slashes: EscapedSlashes) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'\\' {
            match slashes {
                EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                EscapedSlashes::Keep => out.push(b),
                EscapedSlashes::Decode => out.push(b'/'),
            }
            i += 1;
            continue;
        }
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            path.get(i + 1).copied().and_then(hex),
            path.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadPercentEncoding);
        };
        let value = hi << 4 | lo;
        i += 3;
        match value {
            0 => return Err(PathError::ControlCharacter),
            v if is_unreserved(v) => out.push(v),
            b'/' | b'\\' => match slashes {
                EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                EscapedSlashes::Decode => out.push(b'/'),
                EscapedSlashes::Keep => {
                    out.extend_from_slice(&[b'%', HEX[hi as usize], HEX[lo as usize]])
                }
            },
            _ => out.extend_from_slice(&[b'%', HEX[hi as usize], HEX[lo as usize]]),
        }
    }
    // Only ASCII was replaced by ASCII, so what was UTF-8 still is; a path
    // that was not (raw bytes over 0x7F) cannot reach here from `&str`.
    String::from_utf8(out).map_err(|_| PathError::BadPercentEncoding)
}

/// Runs of `/` made one.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut previous = '\0';
    for c in path.chars() {
        if !(c == '/' && previous == '/') {
            out.push(c);
        }
        previous = c;
    }
    out
}

/// RFC 3986 section 5.2.4 for an absolute path, except that a `..` with
/// nothing above it is refused instead of dropped.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    // `path` starts with '/': the first split piece is the empty root.
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." => {}
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::ClimbsAboveRoot);
                }
            }
            _ => {
                kept.push(segment);
                continue;
            }
        }
        // A dot segment at the end leaves the directory: `/a/b/..` is `/a/`.
        if last {
            kept.push("");
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
