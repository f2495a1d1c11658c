#![no_main]
//! Fuzz target `config`: see `plasticity_fuzz::config_json`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| plasticity_fuzz::config_json(data));
