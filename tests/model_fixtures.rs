//! Real PyTorch exports (`fixtures/models/*.onnx`) against PyTorch's float32 logits on 1000
//! Fashion-MNIST test images. Skips (with a note) when the fixtures are absent.

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, IxDyn};
use signgd::model::read_onnx;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Reads a gzipped IDX file: returns (dims, bytes).
fn read_idx_gz(path: &Path) -> (Vec<usize>, Vec<u8>) {
    let f = std::fs::File::open(path).unwrap();
    let mut buf = Vec::new();
    flate2::read::GzDecoder::new(f).read_to_end(&mut buf).unwrap();
    assert_eq!(&buf[..2], &[0, 0]);
    assert_eq!(buf[2], 0x08, "unsigned byte data");
    let nd = buf[3] as usize;
    let dims: Vec<usize> =
        (0..nd).map(|i| u32::from_be_bytes(buf[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let data = buf[4 + 4 * nd..].to_vec();
    assert_eq!(data.len(), dims.iter().product::<usize>());
    (dims, data)
}

fn argmax(row: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in row.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

#[test]
fn fixtures_match_pytorch_logits() {
    let models = root().join("models");
    let images = root().join("data/fashion-mnist-test-1000-images-idx3-ubyte.gz");
    let entries = std::fs::read_dir(&models).expect("the fixture models are part of the repository");
    assert!(images.exists(), "{} is part of the repository", images.display());
    let (dims, pixels) = read_idx_gz(&images);
    let labels_path = root().join("data/fashion-mnist-test-1000-labels-idx1-ubyte.gz");
    let labels = labels_path.exists().then(|| read_idx_gz(&labels_path).1);
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    let mut onnx: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    onnx.sort();
    assert!(onnx.len() >= 16, "expected the eight fixture families in two opsets, found {}", onnx.len());
    let mut failures = Vec::new();
    for path in onnx {
        let fname = path.file_name().unwrap().to_string_lossy().to_string();
        let stem = fname.trim_end_matches(".onnx").trim_end_matches(".opset17").trim_end_matches(".opset20");
        let logits_path = models.join(format!("{stem}.logits.npy"));
        if !logits_path.exists() {
            failures.push(format!("{fname}: no {stem}.logits.npy"));
            continue;
        }
        let want: Array2<f32> = ndarray_npy::read_npy(&logits_path).unwrap();
        let g = match read_onnx(&path, None) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{fname}: {e}"));
                continue;
            }
        };
        let mut ops: Vec<&str> = g.nodes.iter().map(|x| x.op.name()).collect();
        ops.sort();
        ops.dedup();
        let count = n.min(want.nrows());
        let mut max_diff = 0f32;
        let mut agree = 0;
        let (mut acc_ours, mut acc_torch) = (0, 0);
        for i in 0..count {
            let img: Vec<f32> = pixels[i * h * w..(i + 1) * h * w].iter().map(|&p| p as f32 / 255.0).collect();
            let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, h, w]), img).unwrap();
            let y = match g.evaluate(&x) {
                Ok(y) => y,
                Err(e) => {
                    failures.push(format!("{fname}: image {i}: {e}"));
                    break;
                }
            };
            let row = want.row(i);
            for (a, b) in y.iter().zip(row.iter()) {
                max_diff = max_diff.max((a - b).abs());
            }
            let (ours, theirs) = (argmax(y.iter().copied()), argmax(row.iter().copied()));
            agree += (ours == theirs) as usize;
            if let Some(l) = &labels {
                acc_ours += (ours == l[i] as usize) as usize;
                acc_torch += (theirs == l[i] as usize) as usize;
            }
        }
        eprintln!(
            "{fname}: {count} images, max |logit diff| {max_diff:.3e}, argmax agreement {agree}/{count}, accuracy ours {acc_ours} torch {acc_torch}; ops {ops:?}"
        );
        if max_diff > 1e-4 || agree != count {
            failures.push(format!("{fname}: max diff {max_diff:.3e}, agreement {agree}/{count}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
