//! The IDX format of MNIST and Fashion-MNIST: magic `00 00 TT DD`, then `DD` big-endian `u32`
//! dimensions, then the big-endian values.

use std::path::Path;

use super::{read_exact_or, DataError, Elem, Header, Kind, Stream};

/// Maps an IDX type code to its element kind.
fn kind_of(code: u8) -> Option<Kind> {
    match code {
        0x08 => Some(Kind::U8),
        0x09 => Some(Kind::I8),
        0x0B => Some(Kind::I16),
        0x0C => Some(Kind::I32),
        0x0D => Some(Kind::F32),
        0x0E => Some(Kind::F64),
        _ => None,
    }
}

/// Whether `prefix` starts like an IDX file (two zero bytes, then a type code and a dimension
/// count). Unknown type codes are still treated as IDX so that they are reported as such.
pub(super) fn looks_like_idx(prefix: &[u8]) -> bool {
    prefix.len() >= 4 && prefix[0] == 0 && prefix[1] == 0 && (0x08..=0x0E).contains(&prefix[2])
}

/// Reads and parses an IDX header from `stream`; returns it with its length in bytes.
pub(super) fn read_header(path: &Path, stream: &mut Stream<'_>) -> Result<(Header, u64), DataError> {
    let mut magic = [0u8; 4];
    read_exact_or(path, stream, &mut magic, "the IDX magic number")?;
    let kind = kind_of(magic[2]).ok_or_else(|| DataError::Dtype {
        path: path.to_path_buf(),
        detail: format!(
            "IDX type code 0x{:02X} is not one of 0x08 (u8), 0x09 (i8), 0x0B (i16), 0x0C (i32), 0x0D (f32), 0x0E (f64); the file is corrupt or not IDX",
            magic[2]
        ),
    })?;
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            detail: "the IDX header declares zero dimensions, so there is no sample axis".to_string(),
        });
    }
    let mut dims = vec![0u8; 4 * ndim];
    read_exact_or(path, stream, &mut dims, "the IDX dimensions")?;
    let shape = dims.chunks_exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64).collect();
    Ok((Header { elem: Elem { kind, big_endian: true }, shape, fortran_order: false }, 4 + 4 * ndim as u64))
}
