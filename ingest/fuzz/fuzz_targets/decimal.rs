//! `decimal`: see [`hermes_fuzz::decimal`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hermes_fuzz::decimal::run(data);
});
