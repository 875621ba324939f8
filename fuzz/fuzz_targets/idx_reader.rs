//! Bytes in a scratch file → `read_inputs` and `read_labels` (the format is detected from the
//! bytes, so both targets reach every reader; they differ in their seeds).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "data_file.rs"]
mod data_file;

fuzz_target!(|data: &[u8]| {
    data_file::read_both(data, "idx");
});
