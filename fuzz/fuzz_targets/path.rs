#![no_main]
//! `switchyard::fuzzing::path`: see its doc.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard::fuzzing::path(data);
});
