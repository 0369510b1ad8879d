#![no_main]
//! `switchyard::fuzzing::goaway_frames`: see its doc.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard::fuzzing::goaway_frames(data);
});
