//! The frame fast path never decides differently from the general (serde) parser: whatever it
//! accepts, the general parser accepts as exactly the same trades.
#![no_main]

libfuzzer_sys::fuzz_target!(|frame: &[u8]| {
    if let Some(diff) = tickflow::sources::finnhub::fast::differs_from_general(frame) {
        panic!("{diff}");
    }
});
