#![no_main]
//! `switchyard::fuzzing::forwarding_headers`: see its doc.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard::fuzzing::forwarding_headers(data);
});
