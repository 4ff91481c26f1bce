//! libFuzzer entry of the `agent` target; the body and its properties are in
//! the library (`ghostbridge_fuzz::agent`), shared with the corpus replay.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ghostbridge_fuzz::agent(data));
