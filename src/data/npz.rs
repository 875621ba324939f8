//! `.npz` archives: a zip file of `.npy` members, stored or deflated (`np.savez`,
//! `np.savez_compressed`). The zip central directory is read directly (zip64 included) so that
//! every size is checked against the file before anything is allocated.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::DeflateDecoder;

use super::{open_array, read_full, DataError, Opened, Stream};

/// Largest central directory accepted.
const MAX_DIRECTORY: u64 = 64 << 20;

/// One member of the archive, from its central directory entry.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    flags: u16,
    method: u16,
    compressed: u64,
    local_offset: u64,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

/// Which array of an archive to read.
pub(super) struct Choice<'a> {
    /// The array named by the user (`file.npz:NAME`).
    pub key: Option<&'a str>,
    /// Conventional names for the array's role, any one of which may be present.
    pub prefer: &'a [&'a str],
}

/// Opens the chosen array of the `.npz` archive `file` (of `len` bytes).
pub(super) fn open(path: &Path, mut file: File, len: u64, choice: Choice<'_>) -> Result<Opened, DataError> {
    let entries = directory(path, &mut file, len)?;
    let arrays: Vec<&Entry> = entries.iter().filter(|e| e.name.ends_with(".npy") && !e.name.ends_with('/')).collect();
    if arrays.is_empty() {
        return Err(DataError::EmptyNpz { path: path.to_path_buf() });
    }
    let chosen = choose(path, &arrays, &choice)?;
    let malformed = |detail: String| DataError::Malformed {
        path: path.to_path_buf(),
        detail: format!("npz member '{}': {detail}", chosen.name),
    };
    if chosen.flags & 1 != 0 {
        return Err(malformed("it is encrypted; save the arrays without encryption".to_string()));
    }
    // Local file header: 30 fixed bytes, then the name and extra field, then the data.
    let mut local = [0u8; 30];
    let local_end = chosen.local_offset.checked_add(30).filter(|&e| e <= len);
    if local_end.is_none() {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!("the local header of npz member '{}' lies beyond the end of the file", chosen.name),
        });
    }
    seek_read(path, &mut file, chosen.local_offset, &mut local)?;
    if u32_at(&local, 0) != 0x0403_4b50 {
        return Err(malformed("its local header signature is wrong".to_string()));
    }
    let data_start = chosen.local_offset + 30 + u16_at(&local, 26) as u64 + u16_at(&local, 28) as u64;
    let data_end = data_start.checked_add(chosen.compressed);
    if data_end.is_none_or(|end| end > len) {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "npz member '{}' claims {} bytes at offset {data_start} but the file has only {len}",
                chosen.name, chosen.compressed
            ),
        });
    }
    file.seek(SeekFrom::Start(data_start)).map_err(|source| io_error(path, source))?;
    let raw = BufReader::new(file).take(chosen.compressed);
    let mut stream = match chosen.method {
        0 => {
            Stream { reader: Box::new(raw), len: Some(chosen.compressed), compressed: false, origin: Some(data_start) }
        }
        8 => Stream { reader: Box::new(DeflateDecoder::new(raw)), len: None, compressed: true, origin: None },
        m => {
            return Err(malformed(format!(
                "zip compression method {m} is not supported; save with np.savez or np.savez_compressed"
            )))
        }
    };
    let mut prefix = [0u8; 8];
    let got = read_full(&mut stream.reader, &mut prefix)
        .map_err(|e| super::stream_error(path, e, stream.compressed, "the npz member"))?;
    let prefix = prefix[..got].to_vec();
    if !prefix.starts_with(super::npy::MAGIC) {
        return Err(malformed("it is not a .npy array; save the arrays with np.savez".to_string()));
    }
    let stream = Stream { reader: Box::new(std::io::Cursor::new(prefix.clone()).chain(stream.reader)), ..stream };
    let place = format!(" of npz member '{}'", chosen.name);
    open_array(path, stream, &prefix, &place)
}

/// The array `choice` selects: the named one, the only one, or the one conventional name present.
fn choose<'e>(path: &Path, arrays: &[&'e Entry], choice: &Choice<'_>) -> Result<&'e Entry, DataError> {
    let name = |e: &Entry| e.name.strip_suffix(".npy").unwrap_or(&e.name).to_string();
    let refuse = |detail: String| DataError::NpzChoice {
        path: path.to_path_buf(),
        detail,
        arrays: arrays.iter().map(|e| format!("'{}'", name(e))).collect::<Vec<_>>().join(", "),
    };
    if let Some(key) = choice.key {
        return arrays
            .iter()
            .find(|e| name(e) == key)
            .copied()
            .ok_or_else(|| refuse(format!("no array named '{key}'")));
    }
    if let [only] = arrays {
        return Ok(only);
    }
    let named: Vec<&Entry> =
        arrays.iter().filter(|e| choice.prefer.iter().any(|want| name(e) == *want)).copied().collect();
    match named.as_slice() {
        [one] => Ok(one),
        [] => Err(refuse("several arrays and none of them named ".to_string() + &choice.prefer.join(", "))),
        _ => Err(refuse(format!(
            "several arrays with a conventional name ({})",
            named.iter().map(|e| name(e)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io { path: path.to_path_buf(), source }
}

/// Reads `buf.len()` bytes at `offset` (the caller has checked they lie inside the file).
fn seek_read(path: &Path, file: &mut File, offset: u64, buf: &mut [u8]) -> Result<(), DataError> {
    file.seek(SeekFrom::Start(offset)).map_err(|source| io_error(path, source))?;
    let got = read_full(file, buf).map_err(|source| io_error(path, source))?;
    if got < buf.len() {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!("the zip structure at offset {offset} is cut short"),
        });
    }
    Ok(())
}

/// Reads the central directory of the zip archive.
fn directory(path: &Path, file: &mut File, len: u64) -> Result<Vec<Entry>, DataError> {
    let malformed = |detail: &str| DataError::Malformed {
        path: path.to_path_buf(),
        detail: format!("the .npz (zip) archive is damaged: {detail}; save it again with np.savez"),
    };
    // End of central directory record: 22 bytes plus a comment of up to 65535 bytes.
    let tail_len = len.min(22 + 65535);
    let tail_start = len - tail_len;
    let mut tail = vec![0u8; tail_len as usize];
    seek_read(path, file, tail_start, &mut tail)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(&tail, i) == 0x0605_4b50)
        .ok_or_else(|| DataError::Truncated {
            path: path.to_path_buf(),
            detail: "the zip end-of-central-directory record is missing (the .npz file is cut short or is not a zip archive)".to_string(),
        })?;
    let mut entries_total = u16_at(&tail, eocd + 10) as u64;
    let mut cd_size = u32_at(&tail, eocd + 12) as u64;
    let mut cd_offset = u32_at(&tail, eocd + 16) as u64;
    let eocd_pos = tail_start + eocd as u64;
    if entries_total == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        // Zip64: a 20-byte locator precedes the record and points at the zip64 record.
        if eocd_pos < 20 {
            return Err(malformed("the zip64 locator is missing"));
        }
        let mut locator = [0u8; 20];
        seek_read(path, file, eocd_pos - 20, &mut locator)?;
        if u32_at(&locator, 0) != 0x0706_4b50 {
            return Err(malformed("the zip64 locator is missing"));
        }
        let record_pos = u64_at(&locator, 8);
        if record_pos.checked_add(56).is_none_or(|end| end > len) {
            return Err(malformed("the zip64 record lies beyond the end of the file"));
        }
        let mut record = [0u8; 56];
        seek_read(path, file, record_pos, &mut record)?;
        if u32_at(&record, 0) != 0x0606_4b50 {
            return Err(malformed("the zip64 record signature is wrong"));
        }
        entries_total = u64_at(&record, 32);
        cd_size = u64_at(&record, 40);
        cd_offset = u64_at(&record, 48);
    }
    if cd_size > MAX_DIRECTORY {
        return Err(malformed("the central directory claims to be larger than 64 MiB"));
    }
    if cd_offset.checked_add(cd_size).is_none_or(|end| end > len) {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "the zip central directory claims {cd_size} bytes at offset {cd_offset} but the file has only {len}"
            ),
        });
    }
    let mut cd = vec![0u8; cd_size as usize];
    seek_read(path, file, cd_offset, &mut cd)?;
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while (entries.len() as u64) < entries_total && pos + 46 <= cd.len() {
        if u32_at(&cd, pos) != 0x0201_4b50 {
            return Err(malformed("a central directory entry has a wrong signature"));
        }
        let flags = u16_at(&cd, pos + 8);
        let method = u16_at(&cd, pos + 10);
        let mut compressed = u32_at(&cd, pos + 20) as u64;
        let uncompressed32 = u32_at(&cd, pos + 24);
        let name_len = u16_at(&cd, pos + 28) as usize;
        let extra_len = u16_at(&cd, pos + 30) as usize;
        let comment_len = u16_at(&cd, pos + 32) as usize;
        let mut local_offset = u32_at(&cd, pos + 42) as u64;
        let name_start = pos + 46;
        let extra_start = name_start + name_len;
        let next = extra_start + extra_len + comment_len;
        if next > cd.len() {
            return Err(malformed("a central directory entry is cut short"));
        }
        let name = String::from_utf8_lossy(&cd[name_start..extra_start]).into_owned();
        // Zip64 extended information: the 64-bit values of the fields saturated above, in order.
        let mut extra = &cd[extra_start..extra_start + extra_len];
        while extra.len() >= 4 {
            let id = u16_at(extra, 0);
            let size = (u16_at(extra, 2) as usize).min(extra.len() - 4);
            let body = &extra[4..4 + size];
            if id == 0x0001 {
                let mut fields = body.chunks_exact(8).map(|c| u64_at(c, 0));
                if uncompressed32 == 0xFFFF_FFFF {
                    fields.next();
                }
                if compressed == 0xFFFF_FFFF {
                    compressed = fields.next().unwrap_or(compressed);
                }
                if local_offset == 0xFFFF_FFFF {
                    local_offset = fields.next().unwrap_or(local_offset);
                }
            }
            extra = &extra[4 + size..];
        }
        entries.push(Entry { name, flags, method, compressed, local_offset });
        pos = next;
    }
    Ok(entries)
}
