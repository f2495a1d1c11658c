#![no_main]
//! Fuzz target `ptb`: see `plasticity_fuzz::ptb_text`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| plasticity_fuzz::ptb_text(data));
