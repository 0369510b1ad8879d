//! HTTP Basic authentication on a route (RFC 7617): [`BasicAuth`], users
//! and their bcrypt password hashes as `htpasswd -B` writes them.
//!
//! bcrypt is slow on purpose (a cost of 10 is tens of milliseconds), so a
//! credential that passed is remembered: up to 4,096 of them,
//! each by a keyed hash of the header (never the password itself), for
//! the life of the route (a reload makes a new one). A wrong password
//! always pays the full check, and so does an unknown user (against a
//! stand-in hash), so the answer's timing does not tell which users exist.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use base64::Engine;
use http::{HeaderMap, HeaderValue, header};

/// The most passed credentials remembered per route.
const REMEMBERED: usize = 4096;

/// A route's Basic authentication.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    /// The realm named in `WWW-Authenticate`.
    pub realm: String,
    /// Users and their bcrypt hashes.
    users: Arc<HashMap<String, String>>,
    /// Checked for a user that does not exist: a hash of a password nobody
    /// knows, at the users' highest cost, so the check takes as long.
    stand_in: Arc<String>,
    /// Whether `Authorization` goes upstream.
    pub forward_credentials: bool,
    passed: Arc<Mutex<Passed>>,
}

#[derive(Debug, Default)]
struct Passed {
    keys: RandomState,
    seen: std::collections::HashSet<u64>,
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Basic` header.
    Missing,
    /// A header that is not `Basic` with base64 of `user:password`.
    Malformed,
    /// An unknown user or a wrong password.
    Wrong,
}

impl AuthFailure {
    /// A word for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Wrong => "wrong",
        }
    }
}

impl BasicAuth {
    /// Authentication in `realm` against `users` (name to bcrypt hash).
    pub fn new(realm: impl Into<String>, users: HashMap<String, String>) -> BasicAuth {
        let cost = max_cost(&users).unwrap_or(bcrypt::DEFAULT_COST);
        let mut salt = [0u8; 16];
        salt[..8].copy_from_slice(&crate::random::next_u64().to_le_bytes());
        salt[8..].copy_from_slice(&crate::random::next_u64().to_le_bytes());
        let unknowable = format!("{:x}", crate::random::next_u64());
        let stand_in = bcrypt::hash_with_salt(unknowable, cost, salt)
            .map(|parts| parts.format_for_version(bcrypt::Version::TwoB))
            .unwrap_or_default();
        BasicAuth {
            realm: realm.into(),
            users: Arc::new(users),
            stand_in: Arc::new(stand_in),
            forward_credentials: false,
            passed: Arc::default(),
        }
    }

    /// Read an htpasswd file's text: `user:hash` lines (blank lines and
    /// `#` comments skipped). Only bcrypt hashes (`$2y$`, `$2b$`, `$2a$`)
    /// are taken; the error names the line of any other.
    pub fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {}: not user:hash", i + 1));
            };
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(format!(
                    "line {}: {user:?} has no bcrypt hash (write the file with `htpasswd -B`)",
                    i + 1
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(users)
    }

    /// The highest bcrypt cost among the users' hashes.
    pub fn max_cost(&self) -> u32 {
        max_cost(&self.users).unwrap_or(0)
    }

    /// Whether `headers` carry a known user's password.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthFailure::Missing)?;
        let key = self.key(value);
        if self.lock().seen.contains(&key) {
            return Ok(());
        }
        let (user, password) = credentials(value).ok_or(AuthFailure::Malformed)?;
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.stand_in.as_str(), false),
        };
        let matches = bcrypt::verify(&password, hash).unwrap_or(false);
        if !(known && matches) {
            return Err(AuthFailure::Wrong);
        }
        let mut passed = self.lock();
        if passed.seen.len() >= REMEMBERED {
            passed.seen.clear();
        }
        passed.seen.insert(key);
        Ok(())
    }

    /// `WWW-Authenticate` for a 401.
    pub fn challenge(&self) -> HeaderValue {
        let realm = self.realm.replace(['"', '\\'], "");
        HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
            .unwrap_or(HeaderValue::from_static("Basic"))
    }

    fn key(&self, value: &HeaderValue) -> u64 {
        self.lock().keys.hash_one(value.as_bytes())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Passed> {
        self.passed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The highest bcrypt cost among `users`' hashes.
fn max_cost(users: &HashMap<String, String>) -> Option<u32> {
    users
        .values()
        .filter_map(|hash| hash.parse::<bcrypt::HashParts>().ok())
        .map(|parts| parts.get_cost())
        .max()
}

/// `Basic base64(user:password)`, decoded.
fn credentials(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{AuthFailure, BasicAuth};

    fn basic(user: &str, password: &str) -> http::HeaderMap {
        use base64::Engine;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", format!("Basic {encoded}").parse().unwrap());
        headers
    }

    #[test]
    fn a_known_user_with_the_right_password_passes_and_nobody_else() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let users = BasicAuth::parse_htpasswd(&format!("# staff\nann:{hash}\n")).unwrap();
        let auth = BasicAuth::new("staff", users);
        assert_eq!(auth.check(&basic("ann", "s3cret")), Ok(()));
        // Again: remembered, same answer.
        assert_eq!(auth.check(&basic("ann", "s3cret")), Ok(()));
        assert_eq!(auth.check(&basic("ann", "wrong")), Err(AuthFailure::Wrong));
        assert_eq!(auth.check(&basic("bob", "s3cret")), Err(AuthFailure::Wrong));
        assert_eq!(
            auth.check(&http::HeaderMap::new()),
            Err(AuthFailure::Missing)
        );
        let mut bearer = http::HeaderMap::new();
        bearer.insert("authorization", "Bearer x".parse().unwrap());
        assert_eq!(auth.check(&bearer), Err(AuthFailure::Malformed));
        assert_eq!(auth.max_cost(), 4);
    }

    #[test]
    fn other_hash_kinds_are_refused_with_their_line() {
        let md5 = "ann:$apr1$abcdefgh$0123456789abcdefghijkl";
        let e = BasicAuth::parse_htpasswd(&format!("\n{md5}\n")).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(e.contains("htpasswd -B"), "{e}");
    }
}
