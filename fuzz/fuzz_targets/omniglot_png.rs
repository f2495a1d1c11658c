#![no_main]
//! Fuzz target `omniglot_png`: see `plasticity_fuzz::omniglot_png`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| plasticity_fuzz::omniglot_png(data));
