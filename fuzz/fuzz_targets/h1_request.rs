#![no_main]
//! `switchyard::fuzzing::h1_request`: see its doc.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard::fuzzing::h1_request(data);
});
