//! `exchange`: Coinbase Exchange frames through the decoder ([`hermes_fuzz::decoding`]).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hermes_fuzz::decoding::run(hermes_ingest::Venue::CoinbaseExchange, data);
});
