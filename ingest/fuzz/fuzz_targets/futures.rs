//! `futures`: Binance USD-M frames through the decoder, and the same script as COIN-M,
//! which must decode it the same ([`hermes_fuzz::decoding`]).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hermes_fuzz::decoding::run(hermes_ingest::Venue::BinanceUsdm, data);
});
