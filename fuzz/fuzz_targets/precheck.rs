//! cargo-fuzz target `precheck`; the harness is fuzz/harness.rs (shared with
//! tests/it/fuzz_equivalents.rs).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::precheck(data));
