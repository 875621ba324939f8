//! The `.npy` header: magic, version, header length and the Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (N, 28, 28), }`.

use std::path::Path;

use super::{read_exact_or, DataError, Elem, Header, Kind, Stream};

/// The first six bytes of every `.npy` file.
pub(super) const MAGIC: &[u8] = b"\x93NUMPY";

/// Longest header accepted (numpy writes a few hundred bytes at most).
const MAX_HEADER_LEN: usize = 1 << 20;

/// Deepest nesting accepted in the header literal.
const MAX_DEPTH: usize = 16;

/// Reads and parses a `.npy` header from `stream`; returns it with its length in bytes
/// (magic included), after which the values start.
pub(super) fn read_header(path: &Path, stream: &mut Stream<'_>) -> Result<(Header, u64), DataError> {
    let malformed = |detail: String| DataError::Malformed {
        path: path.to_path_buf(),
        detail: format!("invalid .npy header: {detail}; re-save the array with numpy.save"),
    };
    let mut start = [0u8; 8];
    read_exact_or(path, stream, &mut start, "the .npy magic and version")?;
    let (major, minor) = (start[6], start[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => return Err(malformed(format!("format version {major}.{minor} is not supported (only 1.0, 2.0 and 3.0)"))),
    };
    let mut len_buf = [0u8; 4];
    read_exact_or(path, stream, &mut len_buf[..len_bytes], "the .npy header length")?;
    let header_len = u32::from_le_bytes(len_buf) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(malformed(format!("the header claims to be {header_len} bytes long (more than {MAX_HEADER_LEN})")));
    }
    let total_len = (8 + len_bytes + header_len) as u64;
    if let Some(len) = stream.len {
        if len < total_len {
            return Err(DataError::Truncated {
                path: path.to_path_buf(),
                detail: format!("the .npy header claims {total_len} bytes but the file has only {len}"),
            });
        }
    }
    let mut text = vec![0u8; header_len];
    read_exact_or(path, stream, &mut text, "the .npy header")?;
    let header = parse_header(&text).map_err(malformed)?;
    let elem = parse_descr(&header.descr).map_err(|detail| DataError::Dtype { path: path.to_path_buf(), detail })?;
    Ok((Header { elem, shape: header.shape, fortran_order: header.fortran_order }, total_len))
}

/// The three fields of a `.npy` header dict.
#[derive(Debug)]
struct Fields {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// A Python literal, as far as `.npy` headers use them.
#[derive(Debug)]
enum Py {
    Str(String),
    Bool(bool),
    None,
    Int(i128),
    Seq(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

fn parse_header(text: &[u8]) -> Result<Fields, String> {
    let mut p = Parser { s: text, i: 0 };
    let value = p.value(0)?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the dict at byte {}", p.i));
    }
    let Py::Dict(entries) = value else {
        return Err("the header is not a dict".to_string());
    };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    for (key, value) in entries {
        let Py::Str(key) = key else { continue };
        match key.as_str() {
            "descr" => match value {
                Py::Str(s) => descr = Some(s),
                _ => {
                    return Err("structured (record) dtypes are not supported; store a plain numeric array".to_string())
                }
            },
            "fortran_order" => match value {
                Py::Bool(b) => fortran_order = Some(b),
                _ => return Err("'fortran_order' is not True or False".to_string()),
            },
            "shape" => match value {
                Py::Seq(items) => {
                    let dims = items
                        .iter()
                        .map(|d| match d {
                            Py::Int(v) => u64::try_from(*v).map_err(|_| format!("shape dimension {v} is out of range")),
                            _ => Err("'shape' holds a non-integer".to_string()),
                        })
                        .collect::<Result<Vec<u64>, String>>()?;
                    shape = Some(dims);
                }
                _ => return Err("'shape' is not a tuple".to_string()),
            },
            _ => {}
        }
    }
    Ok(Fields {
        descr: descr.ok_or("the 'descr' key is missing")?,
        fortran_order: fortran_order.ok_or("the 'fortran_order' key is missing")?,
        shape: shape.ok_or("the 'shape' key is missing")?,
    })
}

/// A recursive-descent parser for the Python literal subset numpy writes.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Py, String> {
        if depth > MAX_DEPTH {
            return Err("the header nests too deeply".to_string());
        }
        match self.peek() {
            None => Err("the header ends early".to_string()),
            Some(b'{') => {
                self.i += 1;
                let mut entries = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(Py::Dict(entries));
                    }
                    let key = self.value(depth + 1)?;
                    if self.peek() != Some(b':') {
                        return Err(format!("expected ':' at byte {}", self.i));
                    }
                    self.i += 1;
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.i += 1;
                        return Ok(Py::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {}
                        _ => return Err(format!("expected ',' or a closing bracket at byte {}", self.i)),
                    }
                }
            }
            Some(quote @ (b'\'' | b'"')) => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != quote {
                    if self.s[self.i] == b'\\' {
                        return Err("escaped characters in header strings are not supported".to_string());
                    }
                    self.i += 1;
                }
                if self.i >= self.s.len() {
                    return Err("unterminated string in the header".to_string());
                }
                let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                Ok(Py::Str(text))
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let negative = c == b'-';
                if negative {
                    self.i += 1;
                }
                let start = self.i;
                let mut v: i128 = 0;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    v = v
                        .checked_mul(10)
                        .and_then(|v| v.checked_add((self.s[self.i] - b'0') as i128))
                        .filter(|&v| v <= u64::MAX as i128)
                        .ok_or("a number in the header is too large")?;
                    self.i += 1;
                }
                if self.i == start {
                    return Err(format!("expected a digit at byte {}", self.i));
                }
                // Python 2 long suffix.
                if self.i < self.s.len() && self.s[self.i] == b'L' {
                    self.i += 1;
                }
                Ok(Py::Int(if negative { -v } else { v }))
            }
            Some(_) => {
                for (word, value) in [("True", Py::Bool(true)), ("False", Py::Bool(false)), ("None", Py::None)] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        self.i += word.len();
                        return Ok(value);
                    }
                }
                Err(format!("unexpected character at byte {}", self.i))
            }
        }
    }
}

/// Maps a numpy type string such as `<f4` to an element type.
fn parse_descr(descr: &str) -> Result<Elem, String> {
    let hint = "convert it with arr.astype('<f4') (inputs) or arr.astype('<i8') (labels)";
    let bytes = descr.as_bytes();
    if bytes.len() < 2 {
        return Err(format!("dtype '{descr}' is not understood; {hint}"));
    }
    let (order, code) = (bytes[0], &bytes[1..]);
    let kind = match code {
        b"u1" => Kind::U8,
        b"i1" => Kind::I8,
        b"i2" => Kind::I16,
        b"u2" => Kind::U16,
        b"i4" => Kind::I32,
        b"u4" => Kind::U32,
        b"i8" => Kind::I64,
        b"u8" => Kind::U64,
        b"f4" => Kind::F32,
        b"f8" => Kind::F64,
        _ => {
            return Err(format!(
                "dtype '{descr}' is not supported (supported: <f4 <f8 |u1 |i1 <i2 <i4 <i8 <u2 <u4 <u8); {hint}"
            ))
        }
    };
    let one_byte = matches!(kind, Kind::U8 | Kind::I8);
    let big_endian = match order {
        b'<' => false,
        b'|' if one_byte => false,
        b'=' => cfg!(target_endian = "big"),
        b'>' if one_byte => false,
        b'>' => {
            return Err(format!(
                "dtype '{descr}' is big-endian, which is not supported; convert it with arr.astype(arr.dtype.newbyteorder('<')) and save again"
            ))
        }
        _ => return Err(format!("dtype '{descr}' has an unknown byte order; {hint}")),
    };
    Ok(Elem { kind, big_endian })
}
