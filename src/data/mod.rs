//! Data set readers for `signgd run --data FILE --labels FILE`.
//!
//! # Layout
//!
//! The samples lie along the first axis of the stored array; every sample has the model's input
//! shape without the batch dimension. A file of shape `[N, 28, 28]` therefore holds `N` samples of
//! shape `[28, 28]`, which [`Dataset::fit_to`] accepts for a model whose input is `[1, 28, 28]`
//! (only singleton dimensions differ).
//!
//! # Formats
//!
//! The format is detected from the first bytes of the file, never from its extension:
//!
//! * `.npy` (`\x93NUMPY`, versions 1, 2 and 3) with dtypes `<f4 <f8 |u1 |i1 <i2 <i4 <i8`
//!   (and `<u2 <u4 <u8`), C or Fortran order (Fortran-ordered arrays are transposed to C order).
//!   Big-endian arrays are refused with a hint to convert them.
//! * `.npz` (a zip archive as written by `np.savez` or `np.savez_compressed`): the array named
//!   after a colon (`file.npz:images`); without a name, the only array, or, if there are several,
//!   the one of them named `x`, `images` or `data` (`y`, `labels`, `label` or `targets` for
//!   labels). Any other archive of several arrays is refused as ambiguous, listing its arrays.
//! * IDX (MNIST / Fashion-MNIST): magic bytes `00 00 TT DD` with `DD` dimensions and type code
//!   `TT` = `08` u8, `09` i8, `0B` i16, `0C` i32, `0D` f32, `0E` f64 (big-endian values).
//! * gzip-compressed IDX or `.npy` (magic `1f 8b`).
//!
//! # Value convention
//!
//! `uint8` data (IDX type `08` or npy `|u1`) are scaled to `[0, 1]` by dividing by 255, as
//! torchvision's `ToTensor` does, and [`Dataset::scaled_from_u8`] is set so the caller can say so.
//! All other dtypes (f32, f64, i8, i16, i32, i64 and the wider unsigned types) are used as they
//! are. Inputs must be finite: a NaN or infinite value is refused, naming its position.
//!
//! Labels ([`read_labels`]) are non-negative integers, one per sample (shape `[N]`, or any shape
//! whose per-sample part has a single element such as `[N, 1]`). Integer dtypes are read exactly;
//! floating-point labels are accepted only when every value is a non-negative whole number.
//!
//! # Robustness
//!
//! The readers never panic on any byte sequence and check the size a header claims (with
//! overflow-checked products) against [`LoadLimits::max_bytes`] and, when the stored length is
//! known, against the bytes actually present, before allocating. Compressed streams are decoded
//! incrementally, so a forged header on a short compressed file costs no more memory than the
//! data actually present.

mod folder;
mod idx;
mod npy;
mod npz;
mod source;

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

pub use folder::{FolderInputs, ImageFolder, Preprocess, IMAGENET_MEAN, IMAGENET_STD};
pub use source::{open_inputs, read_all, scan, Arrays, InputSource, Span, Tapped, ValueStats};

/// Bytes of memory charged per loaded value when checking [`LoadLimits::max_bytes`] (an `f64`);
/// labels are charged their larger in-memory size while they are validated.
const BYTES_PER_VALUE: usize = 8;

/// Size of the read buffer used to stream values from a file.
const CHUNK_BYTES: usize = 1 << 16;

/// Names preferred when an `.npz` archive holding inputs has several arrays.
const INPUT_NAMES: &[&str] = &["x", "images", "data"];

/// Names preferred when an `.npz` archive holding labels has several arrays.
const LABEL_NAMES: &[&str] = &["y", "labels", "label", "targets"];

/// An error reading a data set file. Every message names the file, what is wrong with it and
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read data file {}: {source}; check that the path is right and the file is readable", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not in any supported format.
    #[error("{}: unknown data format ({detail}); expected a .npy or .npz array, an IDX file (MNIST-style) or a gzip-compressed IDX/.npy file", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What was found instead (usually the first bytes).
        detail: String,
    },
    /// The file holds fewer bytes than its header claims.
    #[error("{}: truncated file: {detail}; the file is incomplete or corrupt, download or export it again", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        detail: String,
    },
    /// The header claims more data than allowed (or an impossible amount).
    #[error("{}: header claims {detail}, more than the load limit of {limit} bytes; if the file is genuine, load fewer samples with --limit or raise the limit, otherwise the header is corrupt", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The claimed shape and size.
        detail: String,
        /// The limit in bytes ([`LoadLimits::max_bytes`]).
        limit: u64,
    },
    /// The header or container structure is invalid.
    #[error("{}: malformed file: {detail}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The element type is not supported.
    #[error("{}: unsupported dtype: {detail}", path.display())]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The dtype found and how to convert it.
        detail: String,
    },
    /// An input value is NaN or infinite.
    #[error("{}: input value {value} (NaN or infinite) at sample {sample}, element {element} (flat index {index}); inputs must be finite, clean or re-export the data set", path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// Sample index of the first non-finite value.
        sample: usize,
        /// Element index within that sample (row-major).
        element: usize,
        /// Flat index into [`Dataset::values`].
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// An `.npz` archive holds no `.npy` arrays.
    #[error("{}: the .npz archive holds no arrays; save the data with np.savez(file, x=inputs) or np.savez(file, y=labels)", path.display())]
    EmptyNpz {
        /// The file.
        path: PathBuf,
    },
    /// An `.npz` archive of several arrays where the one to read is not clear, or the one asked
    /// for is absent.
    #[error("{}: {detail}; the archive holds {arrays}: name one as {}:NAME", path.display(), path.display())]
    NpzChoice {
        /// The file.
        path: PathBuf,
        /// Why no array was chosen.
        detail: String,
        /// The archive's arrays, comma-separated.
        arrays: String,
    },
    /// A `FILE:NAME` selection on a file that is not an `.npz` archive.
    #[error("{}: `:{key}` names an array, but only .npz archives hold named arrays; give the path alone", path.display())]
    KeyOnPlainFile {
        /// The file.
        path: PathBuf,
        /// The array name given.
        key: String,
    },
    /// A label is negative, not a whole number, or out of range.
    #[error("{}: label at index {index} is {value}: {detail}; labels must be non-negative integer class indices (e.g. np.int64)", path.display())]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Index of the first bad label.
        index: usize,
        /// The label as stored.
        value: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The per-sample shape does not fit the model's input shape.
    #[error("{}: per-sample shape {file:?} does not fit the model input shape {model:?} (without the batch dimension); {}", path.display(), shape_advice(file, model))]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The per-sample shape stored in the file.
        file: Vec<usize>,
        /// The model's input shape without the batch dimension.
        model: Vec<usize>,
    },
}

fn join_dims(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

/// What to do about data of per-sample shape `file` for a model input of shape `model`.
fn shape_advice(file: &[usize], model: &[usize]) -> String {
    let squeeze = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    let (f, m) = (squeeze(file), squeeze(model));
    // Channels-last images ([H, W, C] for a model taking [C, H, W]): a reshape would scramble
    // the pixels; the channel axis must move.
    if m.len() == 3 && f.len() == 3 && f[..2] == m[1..] && f[2] == m[0] {
        return format!(
            "the data look channels-last (N, {}): transpose them to channels-first, x.transpose(0, 3, 1, 2) in numpy or x.permute(0, 3, 1, 2) in torch, not a reshape",
            join_dims(&f)
        );
    }
    let (nf, nm) = (file.iter().product::<usize>(), model.iter().product::<usize>());
    if nf == nm {
        format!(
            "the sample sizes agree ({nf} values): if the values are stored in the model's order, reshape the data to (N, {})",
            join_dims(model)
        )
    } else {
        format!("each sample holds {nf} values where the model takes {nm}: use the data this model was trained on, or a model with a matching input")
    }
}

/// Limits on what a reader loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    /// Read only the first `N` samples (`--limit N`); `None` reads all of them.
    pub max_samples: Option<usize>,
    /// Refuse files whose header claims more than this many bytes of loaded values, counted as
    /// 8 bytes (one `f64`) per input value (16 per label), before allocating anything. Only the
    /// samples kept by [`LoadLimits::max_samples`] count, except for Fortran-ordered `.npy`
    /// arrays, which are read whole. Defaults to 4 GiB.
    pub max_bytes: u64,
}

impl LoadLimits {
    /// The default limit on loaded values: 4 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits { max_samples: None, max_bytes: Self::DEFAULT_MAX_BYTES }
    }
}

/// A loaded set of input samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Shape of one sample (the stored shape without its first axis).
    pub shape: Vec<usize>,
    /// Number of samples loaded (after [`LoadLimits::max_samples`]).
    pub samples: usize,
    /// All values, row-major, `samples * shape.iter().product()` of them.
    pub values: Vec<f64>,
    /// Whether the file held `uint8` values that were divided by 255.
    pub scaled_from_u8: bool,
}

impl Dataset {
    /// Number of values in one sample.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values of sample `i`, row-major in [`Dataset::shape`].
    ///
    /// # Panics
    ///
    /// Panics if `i >= self.samples`.
    pub fn sample(&self, i: usize) -> &[f64] {
        assert!(i < self.samples, "sample index {i} out of range ({} samples)", self.samples);
        let n = self.sample_len();
        &self.values[i * n..(i + 1) * n]
    }

    /// Checks that the samples fit a model whose input shape, without the batch dimension, is
    /// `model_shape`, and returns the shape to view each sample in (always `model_shape`).
    ///
    /// Equal shapes fit, and so do shapes that differ only in singleton dimensions (an IDX file
    /// of `[N, 28, 28]` fits a model input of `[1, 28, 28]`); the row-major values are the same
    /// either way. Anything else is a [`DataError::ShapeMismatch`] naming `path`, the file's
    /// per-sample shape and the model's.
    pub fn fit_to(&self, model_shape: &[usize], path: &Path) -> Result<Vec<usize>, DataError> {
        fit_shape(&self.shape, model_shape, path)
    }

    /// Like [`Dataset::fit_to`], but consumes the data set and returns it with
    /// [`Dataset::shape`] set to `model_shape`.
    pub fn into_fitted(mut self, model_shape: &[usize], path: &Path) -> Result<Dataset, DataError> {
        self.shape = self.fit_to(model_shape, path)?;
        Ok(self)
    }
}

/// As [`Dataset::fit_to`], for samples of shape `file` from `path`.
pub fn fit_shape(file: &[usize], model_shape: &[usize], path: &Path) -> Result<Vec<usize>, DataError> {
    let squeeze = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    if file == model_shape || squeeze(file) == squeeze(model_shape) {
        Ok(model_shape.to_vec())
    } else {
        Err(DataError::ShapeMismatch { path: path.to_path_buf(), file: file.to_vec(), model: model_shape.to_vec() })
    }
}

/// Why data whose values have statistics `data` look scaled unlike what the model expects, if
/// they do: whole numbers up to 255 stored as floats (pixel values never divided by 255; not
/// when `scaled_from_u8`), or values far beyond `calibration_max_abs`, the largest magnitude
/// among the calibration inputs.
pub fn scale_warning(data: &ValueStats, scaled_from_u8: bool, calibration_max_abs: Option<f64>) -> Option<String> {
    let (max_abs, whole) = (data.max_abs, data.whole);
    if !scaled_from_u8 && whole && (16.0..=255.0).contains(&max_abs) {
        return Some(format!(
            "the inputs are whole numbers up to {max_abs}: they look like 0–255 pixel values stored as floats; uint8 data are divided by 255, float data are used as they are, so divide by 255 (and normalise as in training) before saving, or save them as uint8"
        ));
    }
    let reference = calibration_max_abs.filter(|&m| m > 0.0)?;
    (max_abs > LARGE_FACTOR * reference).then(|| {
        format!(
            "the inputs reach |x| = {max_abs:.4}, {:.0}× the largest calibration input ({reference:.4}); ReLU scales computed on the calibration set will not fit them. A likely cause is data scaled differently from the calibration set (0–255 floats against [0, 1]); preprocess both alike",
            max_abs / reference
        )
    })
}

/// How far beyond the calibration inputs' range evaluated inputs may reach before a warning.
const LARGE_FACTOR: f64 = 4.0;

/// Reads input samples from `path` (`.npy`, `.npz`, IDX or gzip-compressed IDX/`.npy`).
///
/// `uint8` data are divided by 255 (see the module documentation); the values must be finite.
pub fn read_inputs(path: &Path, limit: LoadLimits) -> Result<Dataset, DataError> {
    let loaded = load(path, limit, INPUT_NAMES, |e, b| e.decode_f64(b))?;
    let scaled = loaded.elem.kind == Kind::U8;
    let mut values = loaded.values;
    if scaled {
        values.iter_mut().for_each(|v| *v /= 255.0);
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        let per = loaded.per_sample.iter().product::<usize>().max(1);
        return Err(DataError::NonFinite {
            path: path.to_path_buf(),
            sample: index / per,
            element: index % per,
            index,
            value: values[index],
        });
    }
    Ok(Dataset { shape: loaded.per_sample, samples: loaded.samples, values, scaled_from_u8: scaled })
}

/// Reads integer class labels from `path` (`.npy`, `.npz`, IDX or gzip-compressed IDX/`.npy`),
/// one per sample. Negative, non-integer or non-finite labels are refused, naming the first.
pub fn read_labels(path: &Path, limit: LoadLimits) -> Result<Vec<usize>, DataError> {
    let loaded = load(path, limit, LABEL_NAMES, |e, b| e.decode_label(b))?;
    if loaded.per_sample.iter().product::<usize>() != 1 {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            detail: format!(
                "labels must hold one value per sample (shape [N] or [N, 1]), but each sample has shape {:?}; store the class indices, not one-hot vectors",
                loaded.per_sample
            ),
        });
    }
    let bad = |index: usize, value: String, detail: &str| DataError::BadLabel {
        path: path.to_path_buf(),
        index,
        value,
        detail: detail.to_string(),
    };
    let mut labels = Vec::with_capacity(loaded.values.len());
    for (index, label) in loaded.values.into_iter().enumerate() {
        let value = match label {
            Label::Int(v) if v < 0 => return Err(bad(index, v.to_string(), "negative")),
            Label::Int(v) => usize::try_from(v).ok(),
            Label::UInt(v) => usize::try_from(v).ok(),
            Label::Float(v) if !v.is_finite() || v.fract() != 0.0 => {
                return Err(bad(index, v.to_string(), "not an integer"))
            }
            Label::Float(v) if v < 0.0 => return Err(bad(index, v.to_string(), "negative")),
            Label::Float(v) if v < 9.0e15 => Some(v as usize),
            Label::Float(_) => None,
        };
        match value {
            Some(v) => labels.push(v),
            None => return Err(bad(index, format!("{label:?}"), "too large")),
        }
    }
    Ok(labels)
}

/// One stored label before validation.
#[derive(Debug, Clone, Copy)]
enum Label {
    Int(i64),
    UInt(u64),
    Float(f64),
}

/// Kinds of stored element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

/// A stored element type: kind and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Elem {
    kind: Kind,
    big_endian: bool,
}

impl Elem {
    fn size(self) -> usize {
        match self.kind {
            Kind::U8 | Kind::I8 => 1,
            Kind::I16 | Kind::U16 => 2,
            Kind::I32 | Kind::U32 | Kind::F32 => 4,
            Kind::I64 | Kind::U64 | Kind::F64 => 8,
        }
    }

    /// The bytes of one element in little-endian order (`b.len() == self.size()`).
    fn le<const N: usize>(self, b: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&b[..N]);
        if self.big_endian {
            a.reverse();
        }
        a
    }

    fn decode_f64(self, b: &[u8]) -> f64 {
        match self.kind {
            Kind::U8 => b[0] as f64,
            Kind::I8 => b[0] as i8 as f64,
            Kind::I16 => i16::from_le_bytes(self.le(b)) as f64,
            Kind::U16 => u16::from_le_bytes(self.le(b)) as f64,
            Kind::I32 => i32::from_le_bytes(self.le(b)) as f64,
            Kind::U32 => u32::from_le_bytes(self.le(b)) as f64,
            Kind::I64 => i64::from_le_bytes(self.le(b)) as f64,
            Kind::U64 => u64::from_le_bytes(self.le(b)) as f64,
            Kind::F32 => f32::from_le_bytes(self.le(b)) as f64,
            Kind::F64 => f64::from_le_bytes(self.le(b)),
        }
    }

    fn decode_label(self, b: &[u8]) -> Label {
        match self.kind {
            Kind::U64 => Label::UInt(u64::from_le_bytes(self.le(b))),
            Kind::I64 => Label::Int(i64::from_le_bytes(self.le(b))),
            Kind::F32 | Kind::F64 => Label::Float(self.decode_f64(b)),
            // Every other integer kind is exact in f64 and fits i64.
            _ => Label::Int(self.decode_f64(b) as i64),
        }
    }
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            Kind::U8 => "uint8",
            Kind::I8 => "int8",
            Kind::I16 => "int16",
            Kind::U16 => "uint16",
            Kind::I32 => "int32",
            Kind::U32 => "uint32",
            Kind::I64 => "int64",
            Kind::U64 => "uint64",
            Kind::F32 => "float32",
            Kind::F64 => "float64",
        };
        f.write_str(name)
    }
}

/// A parsed array header: element type and full shape (sample axis first).
#[derive(Debug, Clone)]
struct Header {
    elem: Elem,
    shape: Vec<u64>,
    fortran_order: bool,
}

/// Values loaded from a file, before role-specific conversion.
struct Loaded<T> {
    elem: Elem,
    per_sample: Vec<usize>,
    samples: usize,
    values: Vec<T>,
}

/// A readable byte stream with its total length, when known (plain files and stored zip entries).
struct Stream<'a> {
    reader: Box<dyn Read + Send + 'a>,
    /// Total length of the stream in bytes, if known without reading it.
    len: Option<u64>,
    /// Whether the stream is decompressed on the fly (decoding errors mean corrupt data).
    compressed: bool,
    /// Offset in the file of the stream's first byte, when the stream is the file's own bytes
    /// (not decompressed), so that any sample can be read by seeking.
    origin: Option<u64>,
}

/// A data file opened, its header read, its stream at the first value.
struct Opened {
    /// The file (without an `:NAME` array selection).
    path: PathBuf,
    header: Header,
    /// Bytes of the stream before the first value.
    header_len: u64,
    stream: Stream<'static>,
}

/// Opens `path`, detects its format and loads its array with `convert`.
fn load<T: Copy>(
    path: &Path,
    limit: LoadLimits,
    prefer: &[&str],
    convert: fn(Elem, &[u8]) -> T,
) -> Result<Loaded<T>, DataError> {
    let opened = open(path, prefer)?;
    load_payload(&opened.path, opened.header, opened.header_len, opened.stream, limit, convert)
}

/// Opens `path` (or the array `path` names inside an `.npz` archive), detects its format and
/// reads its header.
fn open(path: &Path, prefer: &[&str]) -> Result<Opened, DataError> {
    let (path, key) = &split_array_name(path);
    let (path, key) = (path.as_path(), key.as_deref());
    let io_err = |source| DataError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(io_err(io::Error::other("it is a directory")));
    }
    let len = meta.len();
    let mut prefix = [0u8; 8];
    let got = read_full(&mut file, &mut prefix).map_err(io_err)?;
    let prefix = &prefix[..got];
    if prefix.starts_with(b"PK") {
        return npz::open(path, file, len, npz::Choice { key, prefer });
    }
    if let Some(key) = key {
        return Err(DataError::KeyOnPlainFile { path: path.to_path_buf(), key: key.to_string() });
    }
    let rest = Cursor::new(prefix.to_vec()).chain(BufReader::new(file));
    if prefix.starts_with(&[0x1f, 0x8b]) {
        let mut gz = MultiGzDecoder::new(rest);
        let mut inner = [0u8; 8];
        let got = read_full(&mut gz, &mut inner).map_err(|e| stream_error(path, e, true, "the gzip header"))?;
        let inner = &inner[..got];
        if inner.starts_with(&[0x1f, 0x8b]) || inner.starts_with(b"PK") {
            return Err(DataError::UnknownFormat {
                path: path.to_path_buf(),
                detail: "gzip holding another gzip stream or a zip archive; decompress it first".to_string(),
            });
        }
        let reader = Cursor::new(inner.to_vec()).chain(gz);
        let stream = Stream { reader: Box::new(reader), len: None, compressed: true, origin: None };
        return open_array(path, stream, inner, " inside the gzip stream");
    }
    let stream = Stream { reader: Box::new(rest), len: Some(len), compressed: false, origin: Some(0) };
    open_array(path, stream, prefix, "")
}

/// `archive.npz:NAME` as the archive and the array's name, when `path` itself does not exist
/// but the part before its last colon does; otherwise `path` unchanged.
pub fn split_array_name(path: &Path) -> (PathBuf, Option<String>) {
    if !path.exists() {
        if let Some((file, key)) = path.to_str().and_then(|s| s.rsplit_once(':')) {
            if !key.is_empty() && !key.contains('/') && Path::new(file).is_file() {
                return (PathBuf::from(file), Some(key.to_string()));
            }
        }
    }
    (path.to_path_buf(), None)
}

/// Reads the `.npy` or IDX header at the start of `stream`, whose first bytes are `prefix`.
fn open_array(path: &Path, mut stream: Stream<'static>, prefix: &[u8], place: &str) -> Result<Opened, DataError> {
    let (header, header_len) = if prefix.starts_with(npy::MAGIC) {
        npy::read_header(path, &mut stream)?
    } else if idx::looks_like_idx(prefix) {
        idx::read_header(path, &mut stream)?
    } else if prefix.is_empty() {
        return Err(DataError::UnknownFormat { path: path.to_path_buf(), detail: format!("the file is empty{place}") });
    } else {
        let hex: Vec<String> = prefix.iter().map(|b| format!("{b:02x}")).collect();
        return Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
            detail: format!("first bytes{place} are {}", hex.join(" ")),
        });
    };
    Ok(Opened { path: path.to_path_buf(), header, header_len, stream })
}

/// Checks the sizes a header claims, then reads the values that follow it.
fn load_payload<T: Copy>(
    path: &Path,
    header: Header,
    header_len: u64,
    mut stream: Stream<'_>,
    limit: LoadLimits,
    convert: fn(Elem, &[u8]) -> T,
) -> Result<Loaded<T>, DataError> {
    let extent = Extent::of(path, &header, limit)?;
    let Header { elem, shape, fortran_order } = header;
    let too_large = |detail: String| DataError::TooLarge { path: path.to_path_buf(), detail, limit: limit.max_bytes };
    let overflow = || too_large(format!("shape {shape:?}, whose size overflows 64 bits"));
    let samples_u64 = shape[0];
    let keep_u64 = extent.kept(limit);
    // Fortran-ordered data interleave the samples, so all of them are read and transposed.
    let read_u64 = if fortran_order { samples_u64 } else { keep_u64 };
    let read_elems = read_u64.checked_mul(extent.per_sample).ok_or_else(overflow)?;
    let read_mem = read_elems.checked_mul(std::mem::size_of::<T>().max(BYTES_PER_VALUE) as u64).ok_or_else(overflow)?;
    if read_mem > limit.max_bytes {
        return Err(too_large(format!("shape {shape:?} of {elem}: loading {read_u64} samples takes {read_mem} bytes")));
    }
    extent.check_present(path, &shape, elem, header_len, stream.len)?;
    // The counts read are bounded by `max_bytes`; a platform whose usize is narrower than the
    // stored dimensions gets an error from `try_from` instead of a truncated cast.
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| overflow());
    let read_elems = to_usize(read_elems)?;
    let per_sample = shape[1..].iter().map(|&d| to_usize(d)).collect::<Result<Vec<_>, _>>()?;
    let samples = to_usize(keep_u64)?;
    let mut values = read_elements(path, &mut stream, elem, read_elems, convert, &shape)?;
    if fortran_order {
        let dims = shape.iter().map(|&d| to_usize(d)).collect::<Result<Vec<_>, _>>()?;
        values = fortran_to_c(&values, &dims);
        values.truncate(samples * per_sample.iter().product::<usize>());
    }
    Ok(Loaded { elem, per_sample, samples, values })
}

/// The sizes an array header claims, checked for sense and overflow.
struct Extent {
    /// Bytes of values the whole array holds.
    total_bytes: u64,
    /// Values per sample.
    per_sample: u64,
    /// Samples stored.
    samples: u64,
}

impl Extent {
    fn of(path: &Path, header: &Header, limit: LoadLimits) -> Result<Self, DataError> {
        let shape = &header.shape;
        let malformed = |detail: String| DataError::Malformed { path: path.to_path_buf(), detail };
        if shape.is_empty() {
            return Err(malformed(
                "the array has no dimensions, so no sample axis; store samples along the first axis".to_string(),
            ));
        }
        let overflow = || DataError::TooLarge {
            path: path.to_path_buf(),
            detail: format!("shape {shape:?}, whose size overflows 64 bits"),
            limit: limit.max_bytes,
        };
        let total = checked_product(shape).ok_or_else(overflow)?;
        let total_bytes = total.checked_mul(header.elem.size() as u64).ok_or_else(overflow)?;
        let per_sample = checked_product(&shape[1..]).ok_or_else(overflow)?;
        if per_sample == 0 {
            return Err(malformed(format!(
                "shape {shape:?} gives every sample zero values; store samples along the first axis"
            )));
        }
        Ok(Extent { total_bytes, per_sample, samples: shape[0] })
    }

    /// Samples kept after [`LoadLimits::max_samples`].
    fn kept(&self, limit: LoadLimits) -> u64 {
        limit.max_samples.map_or(self.samples, |n| self.samples.min(n as u64))
    }

    /// Refuses a stream of known length `stream_len` too short for the values after the header.
    fn check_present(
        &self,
        path: &Path,
        shape: &[u64],
        elem: Elem,
        header_len: u64,
        stream_len: Option<u64>,
    ) -> Result<(), DataError> {
        let Some(len) = stream_len else { return Ok(()) };
        let available = len.saturating_sub(header_len);
        if available < self.total_bytes {
            return Err(DataError::Truncated {
                path: path.to_path_buf(),
                detail: format!(
                    "the header claims shape {shape:?} of {elem}, {} bytes of values, but only {available} bytes follow the {header_len}-byte header",
                    self.total_bytes
                ),
            });
        }
        Ok(())
    }
}

fn checked_product(dims: &[u64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}

/// Reads `count` elements of type `elem` from `stream`, converting each with `convert`.
///
/// Memory grows with the data actually read when the stream length is unknown, so a forged
/// header on a short compressed stream allocates no more than the data present (times two).
fn read_elements<T: Copy>(
    path: &Path,
    stream: &mut Stream<'_>,
    elem: Elem,
    count: usize,
    convert: fn(Elem, &[u8]) -> T,
    shape: &[u64],
) -> Result<Vec<T>, DataError> {
    let size = elem.size();
    let mut out: Vec<T> = Vec::new();
    if stream.len.is_some() {
        out.reserve_exact(count);
    }
    let mut buf = vec![0u8; CHUNK_BYTES.min(count.saturating_mul(size)).max(size)];
    let chunk_elems = buf.len() / size;
    while out.len() < count {
        let n = chunk_elems.min(count - out.len());
        let got = read_full(&mut stream.reader, &mut buf[..n * size])
            .map_err(|e| stream_error(path, e, stream.compressed, "the values"))?;
        if out.capacity() < out.len() + n {
            let target = count.min((out.capacity() * 2).max(out.len() + n));
            out.reserve_exact(target - out.len());
        }
        out.extend(buf[..got - got % size].chunks_exact(size).map(|b| convert(elem, b)));
        if got < n * size {
            let read = out.len() as u64 * size as u64 + (got % size) as u64;
            return Err(DataError::Truncated {
                path: path.to_path_buf(),
                detail: format!(
                    "the header claims shape {shape:?} of {elem}, {} bytes of values to read, but the data end after {read} bytes",
                    count as u64 * size as u64
                ),
            });
        }
    }
    Ok(out)
}

/// Reorders column-major `values` of shape `dims` to row-major.
fn fortran_to_c<T: Copy>(values: &[T], dims: &[usize]) -> Vec<T> {
    let n = values.len();
    let mut out = Vec::with_capacity(n);
    // Column-major strides.
    let mut strides = vec![1usize; dims.len()];
    for k in 1..dims.len() {
        strides[k] = strides[k - 1] * dims[k - 1];
    }
    let mut index = vec![0usize; dims.len()];
    for _ in 0..n {
        let src: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(values[src]);
        // Advance the row-major multi-index.
        for k in (0..dims.len()).rev() {
            index[k] += 1;
            if index[k] < dims[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

/// Reads until `buf` is full or the stream ends; returns the number of bytes read.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads exactly `buf.len()` bytes of `what`, reporting a short read as truncation.
fn read_exact_or(path: &Path, stream: &mut Stream<'_>, buf: &mut [u8], what: &str) -> Result<(), DataError> {
    let got = read_full(&mut stream.reader, buf).map_err(|e| stream_error(path, e, stream.compressed, what))?;
    if got < buf.len() {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!("{what} needs {} bytes but the data end after {got}", buf.len()),
        });
    }
    Ok(())
}

/// Maps an I/O error while reading `what` to a [`DataError`].
fn stream_error(path: &Path, e: io::Error, compressed: bool, what: &str) -> DataError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!("the compressed data end in the middle of {what} ({e})"),
        },
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput if compressed => DataError::Malformed {
            path: path.to_path_buf(),
            detail: format!(
                "the compressed data are corrupt while reading {what} ({e}); download or export the file again"
            ),
        },
        _ => DataError::Io { path: path.to_path_buf(), source: e },
    }
}
