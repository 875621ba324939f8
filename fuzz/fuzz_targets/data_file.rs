//! Shared by the data-reader targets: the readers take a path, so the bytes go to a file that
//! belongs to this process (one per process, rewritten for every input).

use std::path::PathBuf;

use signgd::data::{read_inputs, read_labels, LoadLimits};

/// Writes `data` to this process's scratch file and runs both readers on it, with the default
/// limits and with a small sample limit (which takes the partial-read paths).
pub fn read_both(data: &[u8], name: &str) {
    thread_local! {
        static PATH: PathBuf = std::env::temp_dir().join(format!("signgd-fuzz-{}-{}", std::process::id(), "data"));
    }
    PATH.with(|p| {
        let path = p.with_extension(name);
        std::fs::write(&path, data).expect("write scratch file");
        for limit in [LoadLimits::default(), LoadLimits { max_samples: Some(2), max_bytes: 1 << 20 }] {
            if let Ok(ds) = read_inputs(&path, limit) {
                assert_eq!(ds.values.len(), ds.samples * ds.sample_len(), "inconsistent data set");
                assert!(ds.values.iter().all(|v| v.is_finite()), "non-finite input accepted");
            }
            let _ = read_labels(&path, limit);
        }
    });
}
