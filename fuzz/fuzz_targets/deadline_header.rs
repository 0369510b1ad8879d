#![no_main]
//! `switchyard::fuzzing::deadline_header`: see its doc.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard::fuzzing::deadline_header(data);
});
