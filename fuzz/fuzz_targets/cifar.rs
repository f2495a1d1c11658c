#![no_main]
//! Fuzz target `cifar`: see `plasticity_fuzz::cifar_binary`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| plasticity_fuzz::cifar_binary(data));
