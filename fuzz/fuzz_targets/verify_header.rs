#![no_main]
// placeholder: being written (issue 2)
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
