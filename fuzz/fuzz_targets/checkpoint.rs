#![no_main]
//! Fuzz target `checkpoint`: see `plasticity_fuzz::checkpoint`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| plasticity_fuzz::checkpoint(data));
