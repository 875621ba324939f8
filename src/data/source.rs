//! Inputs read on demand: a data set of any size costs the memory of a few samples, not of the
//! whole set. Plain `.npy`/IDX files and stored `.npz` members are read by seeking to the sample;
//! compressed streams are decoded forwards through a small window of samples (workers ask for
//! inputs in nearly increasing order), and started again when an earlier sample is asked for.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{open, read_full, read_inputs, stream_error, DataError, Dataset, Elem, Extent, Kind, LoadLimits, Stream};

/// Bytes of samples decompressed at a time from a compressed stream (at least one sample).
const CHUNK_BYTES: usize = 256 << 10;

/// Samples of a compressed stream kept behind the newest for workers that lag (at least
/// [`WINDOW_CHUNKS`] chunks).
const WINDOW_SAMPLES: usize = 64;

/// Chunks of a compressed stream's window always kept.
const WINDOW_CHUNKS: usize = 4;

/// Samples that any thread can read by index.
pub trait InputSource: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one sample, as stored.
    fn shape(&self) -> &[usize];

    /// Whether stored `uint8` values are divided by 255.
    fn scaled_from_u8(&self) -> bool;

    /// Writes sample `index` (row-major, [`InputSource::shape`]) into `into`.
    fn read(&self, index: usize, into: &mut [f64]) -> Result<(), DataError>;
}

impl InputSource for Dataset {
    fn len(&self) -> usize {
        self.samples
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn scaled_from_u8(&self) -> bool {
        self.scaled_from_u8
    }

    fn read(&self, index: usize, into: &mut [f64]) -> Result<(), DataError> {
        let n = self.sample_len();
        match self.values.get(index * n..(index + 1) * n) {
            Some(values) if index < self.samples && into.len() == n => {
                into.copy_from_slice(values);
                Ok(())
            }
            _ => Err(out_of_range(Path::new("the data set"), index, self.samples, into.len(), n)),
        }
    }
}

/// Opens the inputs of `path` (`.npy`, `.npz`, IDX or gzip-compressed IDX/`.npy`) for reading
/// sample by sample; only the first [`LoadLimits::max_samples`] are offered. Fortran-ordered
/// arrays, whose samples are interleaved, are loaded whole (within [`LoadLimits::max_bytes`]).
pub fn open_inputs(path: &Path, limit: LoadLimits) -> Result<Box<dyn InputSource>, DataError> {
    let opened = open(path, super::INPUT_NAMES)?;
    if opened.header.fortran_order {
        return Ok(Box::new(read_inputs(path, limit)?));
    }
    let extent = Extent::of(&opened.path, &opened.header, limit)?;
    let (header, file) = (&opened.header, &opened.path);
    extent.check_present(file, &header.shape, header.elem, opened.header_len, opened.stream.len)?;
    let too_large = || DataError::TooLarge {
        path: file.clone(),
        detail: format!("shape {:?}, more samples or values than this platform can index", header.shape),
        limit: limit.max_bytes,
    };
    let shape = header.shape[1..].iter().map(|&d| usize::try_from(d)).collect::<Result<Vec<_>, _>>();
    let shape = shape.map_err(|_| too_large())?;
    let samples = usize::try_from(extent.kept(limit)).map_err(|_| too_large())?;
    let sample_bytes = usize::try_from(extent.per_sample)
        .ok()
        .and_then(|n| n.checked_mul(header.elem.size()))
        .ok_or_else(too_large)?;
    let access = match opened.stream.origin {
        Some(origin) => {
            let handle = File::open(file).map_err(|source| DataError::Io { path: file.clone(), source })?;
            Access::Seek { file: Mutex::new(handle), values_at: origin + opened.header_len }
        }
        None => {
            let chunk = (CHUNK_BYTES / sample_bytes.max(1)).max(1);
            Access::Window(Mutex::new(Window { stream: Some(opened.stream), next: 0, chunk, chunks: VecDeque::new() }))
        }
    };
    Ok(Box::new(ArrayFile {
        given: path.to_path_buf(),
        path: opened.path.clone(),
        elem: opened.header.elem,
        shape,
        samples,
        sample_bytes,
        access,
    }))
}

/// An array file read sample by sample.
struct ArrayFile {
    /// The path as given (with an `:NAME` array selection), to open it again.
    given: PathBuf,
    /// The file itself, for messages.
    path: PathBuf,
    elem: Elem,
    shape: Vec<usize>,
    samples: usize,
    sample_bytes: usize,
    access: Access,
}

/// How an array file's samples are reached.
enum Access {
    /// The values are the file's own bytes from `values_at` on.
    Seek { file: Mutex<File>, values_at: u64 },
    /// The values are decompressed forwards.
    Window(Mutex<Window>),
}

/// The recently decoded samples of a compressed stream.
struct Window {
    /// The stream, positioned before sample `next` (`None` after a failed read).
    stream: Option<Stream<'static>>,
    next: usize,
    /// Samples per chunk.
    chunk: usize,
    /// Raw bytes of consecutive samples, oldest first: (first sample, bytes).
    chunks: VecDeque<(usize, Vec<u8>)>,
}

impl InputSource for ArrayFile {
    fn len(&self) -> usize {
        self.samples
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn scaled_from_u8(&self) -> bool {
        self.elem.kind == Kind::U8
    }

    fn read(&self, index: usize, into: &mut [f64]) -> Result<(), DataError> {
        let n = self.sample_bytes / self.elem.size();
        if index >= self.samples || into.len() != n {
            return Err(out_of_range(&self.path, index, self.samples, into.len(), n));
        }
        match &self.access {
            Access::Seek { file, values_at } => {
                let mut bytes = vec![0u8; self.sample_bytes];
                let at = values_at + index as u64 * self.sample_bytes as u64;
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let io = |source| DataError::Io { path: self.path.clone(), source };
                file.seek(SeekFrom::Start(at)).map_err(io)?;
                let got = read_full(&mut *file, &mut bytes).map_err(io)?;
                if got < bytes.len() {
                    return Err(self.cut_short(index));
                }
                self.decode(index, &bytes, into)
            }
            Access::Window(window) => {
                let mut window = window.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                self.advance_to(&mut window, index)?;
                let (first, bytes) = window
                    .chunks
                    .iter()
                    .find(|(first, bytes)| (*first..first + bytes.len() / self.sample_bytes).contains(&index))
                    .ok_or_else(|| self.cut_short(index))?;
                let at = (index - first) * self.sample_bytes;
                self.decode(index, &bytes[at..at + self.sample_bytes], into)
            }
        }
    }
}

impl ArrayFile {
    /// Decodes the window forwards until it holds sample `index`, from the start of the stream
    /// again when `index` lies before the window.
    fn advance_to(&self, window: &mut Window, index: usize) -> Result<(), DataError> {
        let held = |w: &Window| {
            w.chunks.iter().any(|(first, b)| (*first..first + b.len() / self.sample_bytes).contains(&index))
        };
        if held(window) {
            return Ok(());
        }
        if index < window.next || window.stream.is_none() {
            window.stream = Some(open(&self.given, super::INPUT_NAMES)?.stream);
            window.next = 0;
            window.chunks.clear();
        }
        while !held(window) {
            let count = window.chunk.min(self.samples - window.next);
            let mut bytes = vec![0u8; count * self.sample_bytes];
            let Some(stream) = window.stream.as_mut() else { return Err(self.cut_short(index)) };
            let read = read_full(&mut stream.reader, &mut bytes);
            let got = match read {
                Ok(got) => got,
                Err(e) => {
                    window.stream = None;
                    return Err(stream_error(&self.path, e, true, &format!("sample {}", window.next)));
                }
            };
            if got < bytes.len() {
                window.stream = None;
                return Err(self.cut_short(window.next + got / self.sample_bytes));
            }
            window.chunks.push_back((window.next, bytes));
            window.next += count;
            while window.chunks.len() > WINDOW_CHUNKS
                && window.chunks.get(1).is_some_and(|(second, _)| window.next - second >= WINDOW_SAMPLES)
            {
                window.chunks.pop_front();
            }
        }
        Ok(())
    }

    /// Sample `index`'s values from its stored `bytes`: `uint8` divided by 255, every value
    /// finite.
    fn decode(&self, index: usize, bytes: &[u8], into: &mut [f64]) -> Result<(), DataError> {
        let size = self.elem.size();
        let scale = self.elem.kind == Kind::U8;
        for (element, (value, b)) in into.iter_mut().zip(bytes.chunks_exact(size)).enumerate() {
            let v = self.elem.decode_f64(b);
            let v = if scale { v / 255.0 } else { v };
            if !v.is_finite() {
                return Err(DataError::NonFinite {
                    path: self.path.clone(),
                    sample: index,
                    element,
                    index: index * into.len() + element,
                    value: v,
                });
            }
            *value = v;
        }
        Ok(())
    }

    fn cut_short(&self, index: usize) -> DataError {
        DataError::Truncated {
            path: self.path.clone(),
            detail: format!("the data end before sample {index} of the {} the header claims", self.samples),
        }
    }
}

/// The error for a read of sample `index` of `samples` into a buffer of `got` values where a
/// sample holds `want`.
fn out_of_range(path: &Path, index: usize, samples: usize, got: usize, want: usize) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        detail: if index >= samples {
            format!("sample {index} asked for, but there are only {samples}")
        } else {
            format!("a sample holds {want} values, not the {got} asked for")
        },
    }
}

/// Inputs held as arrays of the model's full input shape (batch axis included), as a library
/// user has them.
pub struct Arrays {
    arrays: Vec<ndarray::ArrayD<f64>>,
    shape: Vec<usize>,
}

impl Arrays {
    /// The arrays, each one sample; the shape of a sample is the first array's without its
    /// leading (batch) axis.
    pub fn new(arrays: Vec<ndarray::ArrayD<f64>>) -> Self {
        let shape = arrays.first().map(|a| a.shape().get(1..).unwrap_or(&[]).to_vec()).unwrap_or_default();
        Arrays { arrays, shape }
    }
}

impl InputSource for Arrays {
    fn len(&self) -> usize {
        self.arrays.len()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn scaled_from_u8(&self) -> bool {
        false
    }

    fn read(&self, index: usize, into: &mut [f64]) -> Result<(), DataError> {
        let place = Path::new("the input arrays");
        match self.arrays.get(index) {
            Some(array) if array.len() == into.len() => {
                into.iter_mut().zip(array.iter()).for_each(|(v, &x)| *v = x);
                Ok(())
            }
            Some(array) => Err(out_of_range(place, index, self.arrays.len(), into.len(), array.len())),
            None => Err(out_of_range(place, index, self.arrays.len(), into.len(), into.len())),
        }
    }
}

/// Reads every sample of `source` into memory.
pub fn read_all(source: &dyn InputSource) -> Result<Dataset, DataError> {
    let n: usize = source.shape().iter().product();
    let mut values = vec![0.0; n * source.len()];
    for (i, sample) in values.chunks_exact_mut(n.max(1)).enumerate().take(source.len()) {
        source.read(i, sample)?;
    }
    Ok(Dataset {
        shape: source.shape().to_vec(),
        samples: source.len(),
        values,
        scaled_from_u8: source.scaled_from_u8(),
    })
}

/// The largest magnitude and whether every value is a whole number, over the samples read
/// through a [`Tapped`] source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueStats {
    /// Largest |x| seen.
    pub max_abs: f64,
    /// Whether every value seen has no fractional part.
    pub whole: bool,
    /// Number of samples seen (a sample read twice counts twice).
    pub samples: usize,
}

impl Default for ValueStats {
    fn default() -> Self {
        ValueStats { max_abs: 0.0, whole: true, samples: 0 }
    }
}

impl ValueStats {
    /// The statistics of `values` (one sample or many).
    pub fn of(values: &[f64]) -> Self {
        let mut stats = ValueStats::default();
        stats.add(values);
        stats
    }

    fn add(&mut self, values: &[f64]) {
        self.max_abs = values.iter().fold(self.max_abs, |m, v| m.max(v.abs()));
        self.whole &= values.iter().all(|v| v.fract() == 0.0);
        self.samples += 1;
    }
}

/// The [`ValueStats`] of every sample of `source`, read one at a time.
pub fn scan(source: &dyn InputSource) -> Result<ValueStats, DataError> {
    let mut buffer = vec![0.0; source.shape().iter().product()];
    let mut stats = ValueStats::default();
    for i in 0..source.len() {
        source.read(i, &mut buffer)?;
        stats.add(&buffer);
    }
    Ok(stats)
}

/// A source that keeps [`ValueStats`] of the samples read through it.
pub struct Tapped {
    source: Arc<dyn InputSource>,
    stats: Mutex<ValueStats>,
}

impl Tapped {
    /// Taps `source`.
    pub fn new(source: Arc<dyn InputSource>) -> Self {
        Tapped { source, stats: Mutex::new(ValueStats::default()) }
    }

    /// The statistics so far, `None` before any sample was read.
    pub fn stats(&self) -> Option<ValueStats> {
        let stats = *self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (stats.samples > 0).then_some(stats)
    }
}

impl InputSource for Tapped {
    fn len(&self) -> usize {
        self.source.len()
    }

    fn shape(&self) -> &[usize] {
        self.source.shape()
    }

    fn scaled_from_u8(&self) -> bool {
        self.source.scaled_from_u8()
    }

    fn read(&self, index: usize, into: &mut [f64]) -> Result<(), DataError> {
        self.source.read(index, into)?;
        self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).add(into);
        Ok(())
    }
}

/// A contiguous run of the samples of `source`: its first samples, or a held-out tail.
pub struct Span {
    source: Arc<dyn InputSource>,
    start: usize,
    len: usize,
}

impl Span {
    /// The first `len` samples of `source` (all of them when it holds fewer).
    pub fn first(source: Arc<dyn InputSource>, len: usize) -> Self {
        Span { len: len.min(source.len()), start: 0, source }
    }

    /// Samples `range` of `source` (clipped to the samples it holds).
    pub fn new(source: Arc<dyn InputSource>, range: std::ops::Range<usize>) -> Self {
        let end = range.end.min(source.len());
        let start = range.start.min(end);
        Span { source, start, len: end - start }
    }
}

impl InputSource for Span {
    fn len(&self) -> usize {
        self.len
    }

    fn shape(&self) -> &[usize] {
        self.source.shape()
    }

    fn scaled_from_u8(&self) -> bool {
        self.source.scaled_from_u8()
    }

    fn read(&self, index: usize, into: &mut [f64]) -> Result<(), DataError> {
        if index >= self.len {
            return Err(out_of_range(Path::new("the data set"), index, self.len, into.len(), into.len()));
        }
        self.source.read(self.start + index, into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_u8(samples: usize, per: usize) -> Vec<u8> {
        let header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({samples}, {per}), }}");
        let mut header = header.into_bytes();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header);
        out.extend((0..samples * per).map(|i| (i % 251) as u8));
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Every sample read in any order, from a plain and a compressed file, equals the whole
    /// load, and a sample's bytes take a few chunks of memory at most.
    #[test]
    fn samples_in_any_order_equal_the_whole_load() {
        let dir = std::env::temp_dir().join(format!("signgd-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // 40,000 values per sample: a window chunk holds 6 samples, the window at least 64.
        let (samples, per) = (1000, 40_000);
        let raw = npy_u8(samples, per);
        for (name, bytes) in [("plain.npy", raw.clone()), ("packed.npy.gz", gzip(&raw))] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            let whole = read_inputs(&path, LoadLimits::default()).unwrap();
            let source = open_inputs(&path, LoadLimits { max_samples: Some(900), ..LoadLimits::default() }).unwrap();
            assert_eq!(source.len(), 900);
            assert!(source.scaled_from_u8());
            let mut buffer = vec![0.0; per];
            for index in [0, 1, 2, 500, 499, 501, 899, 3, 898, 0] {
                source.read(index, &mut buffer).unwrap();
                assert_eq!(buffer, whole.sample(index), "{name} sample {index}");
            }
            let error = source.read(900, &mut buffer).unwrap_err().to_string();
            assert!(error.contains("only 900"), "{error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A compressed file cut short is refused when the missing sample is read, naming the file.
    #[test]
    fn truncated_stream_is_refused_at_the_missing_sample() {
        let dir = std::env::temp_dir().join(format!("signgd-source-cut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = npy_u8(10, 100);
        let path = dir.join("cut.npy.gz");
        std::fs::write(&path, gzip(&raw[..raw.len() - 250])).unwrap();
        let source = open_inputs(&path, LoadLimits::default()).unwrap();
        let mut buffer = vec![0.0; 100];
        let error = source.read(9, &mut buffer).unwrap_err().to_string();
        assert!(error.contains("cut.npy.gz") && error.contains("truncated"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
