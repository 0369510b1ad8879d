#![no_main]
//! Route host patterns: a pattern that parses matches the names it names,
//! and matching never panics, whatever the host a request brings.

use switchyard::route::HostPattern;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, host) = text.split_once('\n').unwrap_or((text, text));
    if let Some(parsed) = HostPattern::parse(pattern) {
        let _ = parsed.matches(host);
        let exact = pattern.trim().to_ascii_lowercase();
        if !exact.starts_with("*.") {
            assert!(parsed.matches(&exact), "{pattern:?} does not match itself");
        }
    }
});
