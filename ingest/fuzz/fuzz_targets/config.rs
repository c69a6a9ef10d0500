//! `config`: see [`hermes_fuzz::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hermes_fuzz::config::run(data);
});
