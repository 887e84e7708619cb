//! `cargo fuzz run request_decoders`: every request decoder on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    apiserver::decoders::decode_everything(data);
});
