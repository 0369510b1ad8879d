#![no_main]
//! `switchyard::fuzzing::idempotency_key`: see its doc.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard::fuzzing::idempotency_key(data);
});
