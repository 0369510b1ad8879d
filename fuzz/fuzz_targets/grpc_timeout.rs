#![no_main]
//! `switchyard::fuzzing::grpc_timeout`: see its doc.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard::fuzzing::grpc_timeout(data);
});
