//! Round trips and refusals of the data set readers (`signgd::data`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::{DeflateEncoder, GzEncoder};
use flate2::{Compression, Crc};
use ndarray::{Array, Array1, Array3, ShapeBuilder};
use ndarray_npy::{NpzWriter, WritableElement, WriteNpyExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use signgd::data::{read_inputs, read_labels, DataError, Dataset, LoadLimits};
use tempfile::TempDir;

// ---------------------------------------------------------------- helpers

fn all() -> LoadLimits {
    LoadLimits::default()
}

fn first(n: usize) -> LoadLimits {
    LoadLimits { max_samples: Some(n), ..LoadLimits::default() }
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn npy_of<A: WritableElement, D: ndarray::Dimension>(a: &Array<A, D>) -> Vec<u8> {
    let mut out = Vec::new();
    a.write_npy(&mut out).unwrap();
    out
}

/// A hand-made `.npy` file (version 1.0) with any descr.
fn npy_raw(descr: &str, fortran: bool, shape: &[u64], payload: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let fortran = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(payload);
    out
}

/// An IDX file: magic `00 00 code ndim`, big-endian dims, then `payload` (already big-endian).
fn idx(code: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(payload);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A zip archive built by hand like numpy's `savez`/`savez_compressed` (which use
/// `force_zip64`, so local headers carry a zip64 extra field).
fn zip(members: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let mut crc = Crc::new();
        crc.update(data);
        let stored = if deflate {
            let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        } else {
            data.to_vec()
        };
        let method: u16 = if deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend(45u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(method.to_le_bytes());
        out.extend([0, 0, 0x21, 0]);
        out.extend(crc.sum().to_le_bytes());
        out.extend(u32::MAX.to_le_bytes());
        out.extend(u32::MAX.to_le_bytes());
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(20u16.to_le_bytes());
        out.extend(name.as_bytes());
        out.extend(1u16.to_le_bytes());
        out.extend(16u16.to_le_bytes());
        out.extend((data.len() as u64).to_le_bytes());
        out.extend((stored.len() as u64).to_le_bytes());
        out.extend(&stored);

        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(45u16.to_le_bytes());
        central.extend(45u16.to_le_bytes());
        central.extend(0u16.to_le_bytes());
        central.extend(method.to_le_bytes());
        central.extend([0, 0, 0x21, 0]);
        central.extend(crc.sum().to_le_bytes());
        central.extend((stored.len() as u32).to_le_bytes());
        central.extend((data.len() as u32).to_le_bytes());
        central.extend((name.len() as u16).to_le_bytes());
        central.extend([0u8; 12]);
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

fn npz_stored(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    zip(&refs, false)
}

/// Twelve values as three samples of shape [2, 2].
fn ramp() -> Vec<f64> {
    (0..12).map(|i| i as f64 - 3.0).collect()
}

fn assert_ramp(d: &Dataset) {
    assert_eq!(d.shape, vec![2, 2]);
    assert_eq!(d.samples, 3);
    assert_eq!(d.values, ramp());
    assert!(!d.scaled_from_u8);
    assert_eq!(d.sample(1), &[1.0, 2.0, 3.0, 4.0]);
}

/// The error message, checked to name the file.
fn message(err: DataError, path: &Path) -> String {
    let text = err.to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(text.contains(name), "message does not name the file: {text}");
    text
}

fn inputs_err(path: &Path) -> String {
    message(read_inputs(path, all()).expect_err("should be refused"), path)
}

fn labels_err(path: &Path) -> String {
    message(read_labels(path, all()).expect_err("should be refused"), path)
}

// ---------------------------------------------------------------- npy round trips

macro_rules! npy_round_trip {
    ($name:ident, $t:ty) => {
        #[test]
        fn $name() {
            let dir = TempDir::new().unwrap();
            let a = Array3::from_shape_vec((3, 2, 2), ramp().iter().map(|&v| v as $t).collect()).unwrap();
            let path = write(&dir, "a.npy", &npy_of(&a));
            assert_ramp(&read_inputs(&path, all()).unwrap());
        }
    };
}

npy_round_trip!(npy_f32, f32);
npy_round_trip!(npy_f64, f64);
npy_round_trip!(npy_i8, i8);
npy_round_trip!(npy_i16, i16);
npy_round_trip!(npy_i32, i32);
npy_round_trip!(npy_i64, i64);

#[test]
fn npy_unsigned_wide_types_are_used_as_they_are() {
    let dir = TempDir::new().unwrap();
    let a = Array1::from_vec(vec![1u16, 300, 65535]);
    let d = read_inputs(&write(&dir, "a.npy", &npy_of(&a)), all()).unwrap();
    assert_eq!(d.values, vec![1.0, 300.0, 65535.0]);
    assert_eq!(d.shape, Vec::<usize>::new());
    let a = Array1::from_vec(vec![7u64, 8]);
    let d = read_inputs(&write(&dir, "b.npy", &npy_of(&a)), all()).unwrap();
    assert_eq!(d.values, vec![7.0, 8.0]);
}

#[test]
fn npy_u8_is_scaled_to_unit_interval() {
    let dir = TempDir::new().unwrap();
    let a = Array3::from_shape_vec((2, 1, 3), vec![0u8, 51, 255, 255, 0, 102]).unwrap();
    let d = read_inputs(&write(&dir, "a.npy", &npy_of(&a)), all()).unwrap();
    assert!(d.scaled_from_u8);
    assert_eq!(d.shape, vec![1, 3]);
    assert_eq!(d.values, vec![0.0, 0.2, 1.0, 1.0, 0.0, 0.4]);
}

#[test]
fn npy_fortran_order_is_transposed() {
    let dir = TempDir::new().unwrap();
    let c = Array3::from_shape_vec((3, 2, 2), ramp()).unwrap();
    let mut f = Array3::<f64>::zeros((3, 2, 2).f());
    f.assign(&c);
    let bytes = npy_of(&f);
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'fortran_order': True"));
    let path = write(&dir, "f.npy", &bytes);
    assert_ramp(&read_inputs(&path, all()).unwrap());
    let d = read_inputs(&path, first(2)).unwrap();
    assert_eq!(d.samples, 2);
    assert_eq!(d.values, ramp()[..8].to_vec());
}

#[test]
fn npy_version_2_header_is_read() {
    let dir = TempDir::new().unwrap();
    let v1 = npy_raw("<f8", false, &[3, 2, 2], &ramp().iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
    let header_len = u16::from_le_bytes([v1[8], v1[9]]) as u32;
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    v2.extend(header_len.to_le_bytes());
    v2.extend(&v1[10..]);
    assert_ramp(&read_inputs(&write(&dir, "v2.npy", &v2), all()).unwrap());
}

// ---------------------------------------------------------------- npz

#[test]
fn npz_single_array_stored_by_ndarray_npy() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("one.npz");
    let mut npz = NpzWriter::new(fs::File::create(&path).unwrap());
    npz.add_array("whatever", &Array3::from_shape_vec((3, 2, 2), ramp()).unwrap()).unwrap();
    npz.finish().unwrap();
    assert_ramp(&read_inputs(&path, all()).unwrap());
}

#[test]
fn npz_picks_named_arrays_for_inputs_and_labels() {
    let dir = TempDir::new().unwrap();
    let x = npy_of(&Array3::from_shape_vec((3, 2, 2), ramp().iter().map(|&v| v as f32).collect()).unwrap());
    let y = npy_of(&Array1::from_vec(vec![2i64, 0, 1]));
    let other = npy_of(&Array1::from_vec(vec![9.0f64]));
    let bytes = npz_stored(&[("meta.npy", other), ("y.npy", y), ("x.npy", x)]);
    let path = write(&dir, "xy.npz", &bytes);
    assert_ramp(&read_inputs(&path, all()).unwrap());
    assert_eq!(read_labels(&path, all()).unwrap(), vec![2, 0, 1]);
}

#[test]
fn npz_arrays_are_chosen_by_name_and_ambiguity_is_refused() {
    let dir = TempDir::new().unwrap();
    let a = npy_of(&Array3::from_shape_vec((3, 2, 2), ramp()).unwrap());
    let b = npy_of(&Array1::from_vec(vec![2i64, 0, 1]));
    let path = write(&dir, "ab.npz", &npz_stored(&[("arr_0.npy", a.clone()), ("arr_1.npy", b.clone())]));
    // np.savez(f, a, b): no name says which array holds the inputs.
    let text = inputs_err(&path);
    assert!(text.contains("'arr_0', 'arr_1'") && text.contains("ab.npz:NAME"), "{text}");
    let keyed = |key: &str| PathBuf::from(format!("{}:{key}", path.display()));
    assert_ramp(&read_inputs(&keyed("arr_0"), all()).unwrap());
    assert_eq!(read_labels(&keyed("arr_1"), all()).unwrap(), vec![2, 0, 1]);
    let text = read_inputs(&keyed("images"), all()).unwrap_err().to_string();
    assert!(text.contains("no array named 'images'") && text.contains("'arr_0', 'arr_1'"), "{text}");
    // Two conventional names for the same role are ambiguous too.
    let path = write(&dir, "two.npz", &npz_stored(&[("x.npy", a.clone()), ("data.npy", a.clone())]));
    assert!(inputs_err(&path).contains("conventional name"), "{}", inputs_err(&path));
    // A name on a file that is not an archive.
    let npy = write(&dir, "plain.npy", &a);
    let text = read_inputs(&PathBuf::from(format!("{}:x", npy.display())), all()).unwrap_err().to_string();
    assert!(text.contains("only .npz archives"), "{text}");
}

#[test]
fn npz_deflated_like_savez_compressed() {
    let dir = TempDir::new().unwrap();
    let x = npy_of(&Array3::from_shape_vec((3, 2, 2), ramp()).unwrap());
    let y = npy_of(&Array1::from_vec(vec![1u8, 1, 0]));
    let bytes = zip(&[("images.npy", &x), ("labels.npy", &y)], true);
    let path = write(&dir, "c.npz", &bytes);
    assert_ramp(&read_inputs(&path, all()).unwrap());
    let d = read_inputs(&path, first(1)).unwrap();
    assert_eq!(d.values, ramp()[..4].to_vec());
    assert_eq!(read_labels(&path, all()).unwrap(), vec![1, 1, 0]);
}

#[test]
fn npz_without_arrays_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("empty.npz");
    NpzWriter::new(fs::File::create(&path).unwrap()).finish().unwrap();
    let text = inputs_err(&path);
    assert!(text.contains("holds no arrays"), "{text}");
    let path = write(&dir, "notes.npz", &zip(&[("readme.txt", b"hello")], false));
    assert!(inputs_err(&path).contains("holds no arrays"));
}

// ---------------------------------------------------------------- IDX

fn idx_round_trip(code: u8, size: usize, encode: fn(f64) -> Vec<u8>) {
    let dir = TempDir::new().unwrap();
    let payload: Vec<u8> = ramp().into_iter().flat_map(encode).collect();
    assert_eq!(payload.len(), 12 * size);
    let bytes = idx(code, &[3, 2, 2], &payload);
    assert_ramp(&read_inputs(&write(&dir, "plain-idx3-ubyte", &bytes), all()).unwrap());
    assert_ramp(&read_inputs(&write(&dir, "packed.bin", &gz(&bytes)), all()).unwrap());
}

#[test]
fn idx_i8() {
    idx_round_trip(0x09, 1, |v| (v as i8).to_be_bytes().to_vec());
}

#[test]
fn idx_i16() {
    idx_round_trip(0x0B, 2, |v| (v as i16).to_be_bytes().to_vec());
}

#[test]
fn idx_i32() {
    idx_round_trip(0x0C, 4, |v| (v as i32).to_be_bytes().to_vec());
}

#[test]
fn idx_f32() {
    idx_round_trip(0x0D, 4, |v| (v as f32).to_be_bytes().to_vec());
}

#[test]
fn idx_f64() {
    idx_round_trip(0x0E, 8, |v| v.to_be_bytes().to_vec());
}

#[test]
fn idx_u8_images_and_labels_plain_and_gzipped() {
    let dir = TempDir::new().unwrap();
    let pixels: Vec<u8> = (0..4 * 3 * 2).map(|i| (i * 10) as u8).collect();
    let images = idx(0x08, &[4, 3, 2], &pixels);
    let labels = idx(0x08, &[4], &[3, 1, 4, 1]);
    for (images, labels, tag) in [(images.clone(), labels.clone(), "plain"), (gz(&images), gz(&labels), "gz")] {
        let ip = write(&dir, &format!("images-{tag}"), &images);
        let lp = write(&dir, &format!("labels-{tag}"), &labels);
        let d = read_inputs(&ip, all()).unwrap();
        assert!(d.scaled_from_u8);
        assert_eq!((d.samples, d.shape.clone()), (4, vec![3, 2]));
        let expect: Vec<f64> = pixels.iter().map(|&p| p as f64 / 255.0).collect();
        assert_eq!(d.values, expect);
        assert_eq!(read_labels(&lp, all()).unwrap(), vec![3, 1, 4, 1]);
        assert_eq!(read_labels(&lp, first(2)).unwrap(), vec![3, 1]);
    }
}

#[test]
fn gzipped_npy_is_read() {
    let dir = TempDir::new().unwrap();
    let a = npy_of(&Array3::from_shape_vec((3, 2, 2), ramp()).unwrap());
    assert_ramp(&read_inputs(&write(&dir, "a.npy.gz", &gz(&a)), all()).unwrap());
}

// ---------------------------------------------------------------- limits

#[test]
fn limit_reads_only_the_first_samples() {
    let dir = TempDir::new().unwrap();
    let a = Array3::from_shape_vec((3, 2, 2), ramp()).unwrap();
    let path = write(&dir, "a.npy", &npy_of(&a));
    let d = read_inputs(&path, first(2)).unwrap();
    assert_eq!((d.samples, d.values.len()), (2, 8));
    assert_eq!(d.values, ramp()[..8].to_vec());
    let d = read_inputs(&path, first(100)).unwrap();
    assert_eq!(d.samples, 3);
    let d = read_inputs(&path, first(0)).unwrap();
    assert_eq!((d.samples, d.values.len()), (0, 0));
    let labels = write(&dir, "y.npy", &npy_of(&Array1::from_vec(vec![5u64, 6, 7])));
    assert_eq!(read_labels(&labels, first(2)).unwrap(), vec![5, 6]);
}

#[test]
fn max_bytes_refuses_before_reading() {
    let dir = TempDir::new().unwrap();
    let a = Array3::from_shape_vec((3, 2, 2), ramp()).unwrap();
    let path = write(&dir, "a.npy", &npy_of(&a));
    let small = LoadLimits { max_samples: None, max_bytes: 64 };
    let text = message(read_inputs(&path, small).unwrap_err(), &path);
    assert!(text.contains("load limit of 64 bytes"), "{text}");
    // Two samples (8 values, 64 bytes) fit.
    let d = read_inputs(&path, LoadLimits { max_samples: Some(2), ..small }).unwrap();
    assert_eq!(d.samples, 2);
}

// ---------------------------------------------------------------- fit_to

#[test]
fn fit_to_accepts_equal_and_singleton_shapes() {
    let d = Dataset { shape: vec![28, 28], samples: 1, values: vec![0.0; 784], scaled_from_u8: true };
    let p = Path::new("images.idx");
    assert_eq!(d.fit_to(&[28, 28], p).unwrap(), vec![28, 28]);
    assert_eq!(d.fit_to(&[1, 28, 28], p).unwrap(), vec![1, 28, 28]);
    assert_eq!(d.fit_to(&[28, 1, 28, 1], p).unwrap(), vec![28, 1, 28, 1]);
    let fitted = d.clone().into_fitted(&[1, 28, 28], p).unwrap();
    assert_eq!(fitted.shape, vec![1, 28, 28]);
    assert_eq!(fitted.sample(0).len(), 784);
}

#[test]
fn fit_to_refuses_mismatched_shapes() {
    let d = Dataset { shape: vec![28, 28], samples: 1, values: vec![0.0; 784], scaled_from_u8: false };
    let p = Path::new("/data/mnist-images.npy");
    for model in [&[784][..], &[3, 28, 28], &[1, 32, 32]] {
        let text = message(d.fit_to(model, p).unwrap_err(), p);
        assert!(text.contains("does not fit the model input shape"), "{text}");
        assert!(text.contains("[28, 28]"), "{text}");
        assert!(text.contains(&format!("{model:?}")), "{text}");
    }
}

#[test]
fn channels_last_images_are_told_to_transpose_not_reshape() {
    let d = Dataset { shape: vec![8, 8, 3], samples: 1, values: vec![0.0; 192], scaled_from_u8: false };
    let p = Path::new("rgb.npy");
    let text = message(d.fit_to(&[3, 8, 8], p).unwrap_err(), p);
    assert!(text.contains("channels-last") && text.contains("transpose(0, 3, 1, 2)"), "{text}");
    assert!(!text.contains("reshape the data"), "{text}");
    // Same size, other layout: a reshape may be right.
    let d = Dataset { shape: vec![64, 3], samples: 1, values: vec![0.0; 192], scaled_from_u8: false };
    assert!(message(d.fit_to(&[3, 8, 8], p).unwrap_err(), p).contains("reshape the data to (N, 3, 8, 8)"));
}

// ---------------------------------------------------------------- labels

#[test]
fn labels_of_every_integer_dtype() {
    let dir = TempDir::new().unwrap();
    let want = vec![0usize, 9, 3];
    let files = [
        npy_of(&Array1::from_vec(vec![0u8, 9, 3])),
        npy_of(&Array1::from_vec(vec![0i32, 9, 3])),
        npy_of(&Array1::from_vec(vec![0i64, 9, 3])),
        npy_of(&Array1::from_vec(vec![0u64, 9, 3])),
        npy_of(&Array1::from_vec(vec![0.0f32, 9.0, 3.0])),
        npy_of(&ndarray::Array2::from_shape_vec((3, 1), vec![0i64, 9, 3]).unwrap()),
        idx(0x08, &[3], &[0, 9, 3]),
    ];
    for (i, bytes) in files.iter().enumerate() {
        let path = write(&dir, &format!("labels{i}"), bytes);
        assert_eq!(read_labels(&path, all()).unwrap(), want, "file {i}");
    }
}

#[test]
fn negative_label_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "neg.npy", &npy_of(&Array1::from_vec(vec![1i32, -1, 2])));
    let text = labels_err(&path);
    assert!(text.contains("label at index 1 is -1"), "{text}");
    assert!(text.contains("negative"), "{text}");
}

#[test]
fn non_integer_labels_are_refused() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "frac.npy", &npy_of(&Array1::from_vec(vec![1.0f64, 2.5])));
    let text = labels_err(&path);
    assert!(text.contains("label at index 1 is 2.5: not an integer"), "{text}");
    let path = write(&dir, "nan.npy", &npy_of(&Array1::from_vec(vec![f32::NAN])));
    assert!(labels_err(&path).contains("not an integer"));
    let onehot = ndarray::Array2::from_shape_vec((2, 3), vec![0u8, 1, 0, 1, 0, 0]).unwrap();
    let path = write(&dir, "onehot.npy", &npy_of(&onehot));
    assert!(labels_err(&path).contains("one value per sample"));
}

// ---------------------------------------------------------------- refusals

#[test]
fn missing_file_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nowhere.npy");
    let text = inputs_err(&path);
    assert!(text.contains("cannot read data file"), "{text}");
    let text = message(read_inputs(dir.path(), all()).unwrap_err(), dir.path());
    assert!(text.contains("directory"), "{text}");
}

#[test]
fn truncated_files_are_refused() {
    let dir = TempDir::new().unwrap();
    let npy = npy_of(&Array3::from_shape_vec((3, 2, 2), ramp()).unwrap());
    let images = idx(0x08, &[4, 3, 2], &[7u8; 24]);
    let cases = [
        ("short.npy", npy[..npy.len() - 5].to_vec()),
        ("header.npy", npy[..40].to_vec()),
        ("short-idx", images[..images.len() - 1].to_vec()),
        ("dims-idx", images[..9].to_vec()),
        ("short-idx.gz", gz(&images[..images.len() - 3])),
        ("cut.gz", gz(&images)[..20].to_vec()),
        ("cut.npz", npz_stored(&[("x.npy", npy.clone())])[..100].to_vec()),
    ];
    for (name, bytes) in cases {
        let text = inputs_err(&write(&dir, name, &bytes));
        assert!(text.contains("truncated"), "{name}: {text}");
    }
}

#[test]
fn forged_huge_dimensions_are_refused_before_allocating() {
    let dir = TempDir::new().unwrap();
    // 2^32-1 samples of 65535 x 65535 u8: 1.8e19 values, overflows 64-bit byte counts.
    let path = write(&dir, "forged-idx", &idx(0x08, &[u32::MAX, 65535, 65535, 65535], &[0; 16]));
    let text = inputs_err(&path);
    assert!(text.contains("overflows"), "{text}");
    // 2^31 samples of 28 x 28: 13 TB as f64, over the 4 GiB default.
    let forged = idx(0x08, &[1 << 31, 28, 28], &[0; 64]);
    let text = inputs_err(&write(&dir, "big-idx", &forged));
    assert!(text.contains("header claims shape [2147483648, 28, 28]"), "{text}");
    assert!(text.contains("load limit"), "{text}");
    // The same behind gzip, where the length is unknown until decompressed.
    let text = inputs_err(&write(&dir, "big-idx.gz", &gz(&forged)));
    assert!(text.contains("load limit"), "{text}");
    // Within the limit but far beyond the file: truncated before allocating.
    let path = write(&dir, "long-idx", &idx(0x08, &[100_000, 28, 28], &[0; 64]));
    assert!(inputs_err(&path).contains("truncated"));
    let path = write(&dir, "long.npy", &npy_raw("<f8", false, &[1 << 40, 1 << 30], &[]));
    assert!(inputs_err(&path).contains("load limit"));
    let path = write(&dir, "huge.npy", &npy_raw("<f8", false, &[1 << 40, 1 << 40], &[]));
    assert!(inputs_err(&path).contains("overflows"));
}

#[test]
fn wrong_magic_is_refused() {
    let dir = TempDir::new().unwrap();
    for (name, bytes) in [
        ("text.npy", b"hello, world".to_vec()),
        ("empty.idx", Vec::new()),
        ("png", b"\x89PNG\r\n\x1a\n....".to_vec()),
        ("double.gz", gz(&gz(b"abc"))),
        ("garbage.gz", gz(b"garbage")),
    ] {
        let text = inputs_err(&write(&dir, name, &bytes));
        assert!(text.contains("unknown data format"), "{name}: {text}");
    }
    let text = inputs_err(&write(&dir, "x.bin", b"\x01\x02\x03\x04"));
    assert!(text.contains("first bytes are 01 02 03 04"), "{text}");
}

#[test]
fn wrong_dtype_is_refused() {
    let dir = TempDir::new().unwrap();
    let half = npy_raw("<f2", false, &[2], &[0; 4]);
    let text = inputs_err(&write(&dir, "half.npy", &half));
    assert!(text.contains("unsupported dtype") && text.contains("'<f2'"), "{text}");
    let big = npy_raw(">f4", false, &[2], &[0; 8]);
    let text = inputs_err(&write(&dir, "big.npy", &big));
    assert!(text.contains("big-endian"), "{text}");
    let header = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }\n";
    let mut structured = b"\x93NUMPY\x01\x00".to_vec();
    structured.extend((header.len() as u16).to_le_bytes());
    structured.extend(header.as_bytes());
    let text = inputs_err(&write(&dir, "rec.npy", &structured));
    assert!(text.contains("structured"), "{text}");
    let text = inputs_err(&write(&dir, "odd-idx", &idx(0x0A, &[1], &[0])));
    assert!(text.contains("unsupported dtype") && text.contains("0x0A"), "{text}");
}

#[test]
fn nan_and_infinite_inputs_are_refused() {
    let dir = TempDir::new().unwrap();
    let mut v: Vec<f32> = (0..12).map(|i| i as f32).collect();
    v[6] = f32::NAN;
    v[9] = f32::INFINITY;
    let path = write(&dir, "nan.npy", &npy_of(&Array3::from_shape_vec((3, 2, 2), v).unwrap()));
    let text = inputs_err(&path);
    assert!(text.contains("input value NaN"), "{text}");
    assert!(text.contains("sample 1, element 2"), "{text}");
    let payload: Vec<u8> = [1.0f64, f64::NEG_INFINITY].iter().flat_map(|v| v.to_be_bytes()).collect();
    let text = inputs_err(&write(&dir, "inf-idx", &idx(0x0E, &[2], &payload)));
    assert!(text.contains("-inf") && text.contains("sample 1, element 0"), "{text}");
}

#[test]
fn malformed_headers_are_refused() {
    let dir = TempDir::new().unwrap();
    for (name, header) in [
        ("noshape.npy", "{'descr': '<f4', 'fortran_order': False}"),
        ("deep.npy", "((((((((((((((((((((((((((((((((((("),
        ("neg.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}"),
        ("scalar.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': ()}"),
        ("zero.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 0)}"),
    ] {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend([0u8; 64]);
        let text = inputs_err(&write(&dir, name, &bytes));
        assert!(text.contains("malformed"), "{name}: {text}");
    }
}

// ---------------------------------------------------------------- fuzz

/// Valid files of every format, used as seeds for the fuzz test.
fn seeds() -> Vec<Vec<u8>> {
    let x = npy_of(&Array3::from_shape_vec((3, 2, 2), ramp()).unwrap());
    let x8 = npy_of(&Array3::from_shape_vec((3, 2, 2), (0..12u8).collect()).unwrap());
    let y = npy_of(&Array1::from_vec(vec![1i64, 0, 2]));
    let images = idx(0x08, &[3, 2, 2], &[9u8; 12]);
    let labels = idx(0x08, &[3], &[1, 2, 3]);
    let f = idx(0x0D, &[3, 4], &[0x3f; 48]);
    vec![
        x.clone(),
        x8.clone(),
        y.clone(),
        images.clone(),
        labels.clone(),
        f,
        gz(&images),
        gz(&x),
        npz_stored(&[("x.npy", x.clone()), ("y.npy", y.clone())]),
        zip(&[("x.npy", &x8), ("y.npy", &y)], true),
        npy_raw("<f4", true, &[2, 3], &[0x40; 24]),
    ]
}

#[test]
fn fuzzed_files_never_panic() {
    let dir = TempDir::new().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0x5167_6e67_6400);
    let seeds = seeds();
    let limits = [LoadLimits::default(), first(1), LoadLimits { max_samples: None, max_bytes: 1 << 20 }];
    let (mut ok, mut err) = (0, 0);
    for round in 0..3000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        match rng.gen_range(0..5) {
            0 => bytes.truncate(rng.gen_range(0..=bytes.len())),
            1 => {
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..bytes.len());
                    bytes[i] ^= 1 << rng.gen_range(0..8);
                }
            }
            2 => {
                // Overwrite a header byte with an extreme value.
                let i = rng.gen_range(0..bytes.len().min(80));
                bytes[i] = [0x00, 0xFF, 0x7F, 0x80][rng.gen_range(0..4)];
            }
            3 => {
                let n = rng.gen_range(0..64);
                bytes = (0..n).map(|_| rng.gen()).collect();
                if rng.gen_bool(0.5) && !bytes.is_empty() {
                    bytes[0] = [0x93, 0x1f, b'P', 0x00][rng.gen_range(0..4)];
                }
            }
            _ => {
                let i = rng.gen_range(0..bytes.len());
                let j = rng.gen_range(i..=bytes.len());
                bytes.drain(i..j);
            }
        }
        // A fresh file per round: rewriting one file in place is slow on some file systems.
        let path = write(&dir, &format!("fuzz{round}"), &bytes);
        let limit = limits[round % limits.len()];
        for result in [read_inputs(&path, limit).map(|_| ()), read_labels(&path, limit).map(|_| ())] {
            match result {
                Ok(()) => ok += 1,
                Err(e) => {
                    assert!(e.to_string().contains("fuzz"), "{e}");
                    err += 1;
                }
            }
        }
    }
    assert!(ok > 100 && err > 1000, "ok {ok}, err {err}");
}

// ---------------------------------------------------------------- fixtures

#[test]
fn fashion_mnist_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data");
    let images = root.join("fashion-mnist-test-1000-images-idx3-ubyte.gz");
    let labels = root.join("fashion-mnist-test-1000-labels-idx1-ubyte.gz");
    assert!(images.exists() && labels.exists(), "the Fashion-MNIST subset is part of the repository");
    let d = read_inputs(&images, all()).unwrap();
    assert_eq!((d.samples, d.shape.clone()), (1000, vec![28, 28]));
    assert!(d.scaled_from_u8);
    assert!(d.values.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(d.fit_to(&[1, 28, 28], &images).unwrap(), vec![1, 28, 28]);
    let y = read_labels(&labels, all()).unwrap();
    assert_eq!(y.len(), 1000);
    assert!(y.iter().all(|&l| l < 10));
    assert_eq!(read_inputs(&images, first(10)).unwrap().values, d.values[..7840].to_vec());
}
