//! What produced a result: the tool's version and the SHA-256 digest of every input file, so a
//! report can be tied to the exact model and data it describes.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of this tool.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One input file of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// The path as given.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the contents, lowercase hexadecimal.
    pub sha256: String,
}

/// Reads `path` once and returns its size and SHA-256 digest.
pub fn digest(path: &Path) -> io::Result<FileDigest> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(FileDigest { path: path.display().to_string(), bytes, sha256 })
}

/// A directory's digest: SHA-256 of its `sha256sum`-style listing (`HEX  RELATIVE/PATH` lines,
/// sorted by path, every file found recursively), so `sha256sum` over the same files reproduces
/// it; `bytes` is the files' total size.
pub fn digest_tree(dir: &Path) -> io::Result<FileDigest> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let mut listing = Sha256::new();
    let mut bytes = 0u64;
    for file in &files {
        let d = digest(file)?;
        let relative = file.strip_prefix(dir).unwrap_or(file);
        listing.update(format!("{}  {}\n", d.sha256, relative.display()).as_bytes());
        bytes += d.bytes;
    }
    let sha256 = listing.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(FileDigest { path: dir.display().to_string(), bytes, sha256 })
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_contents() {
        let dir = std::env::temp_dir().join(format!("signgd-digest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("abc.txt");
        std::fs::write(&path, b"abc").unwrap();
        let d = digest(&path).unwrap();
        // FIPS 180-2, appendix B.1.
        assert_eq!(d.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.bytes, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
