#![no_main]
//! `switchyard::fuzzing::h1_response`: see its doc.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard::fuzzing::h1_response(data);
});
