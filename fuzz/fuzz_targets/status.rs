#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chainmesh_fuzz::status(data));
