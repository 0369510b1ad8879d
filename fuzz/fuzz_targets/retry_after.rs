#![no_main]
//! `switchyard::fuzzing::retry_after`: see its doc.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard::fuzzing::retry_after(data);
});
