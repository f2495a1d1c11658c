#![no_main]
//! Fuzz target `omniglot_zip`: see `plasticity_fuzz::omniglot_zip`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| plasticity_fuzz::omniglot_zip(data));
