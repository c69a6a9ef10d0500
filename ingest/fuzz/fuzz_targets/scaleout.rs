//! `scaleout`: see [`hermes_fuzz::scaleout`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hermes_fuzz::scaleout::run(data);
});
