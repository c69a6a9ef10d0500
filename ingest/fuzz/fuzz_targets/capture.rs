//! `capture`: see [`hermes_fuzz::capture`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hermes_fuzz::capture::run(data);
});

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    hermes_fuzz::capture::mutate(data, size, max_size, seed, libfuzzer_sys::fuzzer_mutate)
});
