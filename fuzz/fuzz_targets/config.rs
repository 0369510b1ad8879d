#![no_main]
//! The config loader: any text is a config or a located error, never a
//! panic; no server name is resolved.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = switchyard_cli::config::parse_unresolved(text, "fuzz.toml");
});
