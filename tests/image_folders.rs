//! Image folders (torchvision's ImageFolder layout) as `--data`: classes from the sorted
//! sub-folders, preprocessing as torchvision's evaluation transforms, results identical to the
//! same pixels given as an array.

use std::path::Path;
use std::process::Command;

use image::{GrayImage, Rgb, RgbImage};
use ndarray_npy::WriteNpyExt;
use signgd::data::{read_inputs, read_labels, ImageFolder, LoadLimits, Preprocess, IMAGENET_MEAN, IMAGENET_STD};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data").join(name)
}

fn signgd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_signgd")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap()
}

#[test]
fn a_folder_of_pngs_gives_what_the_same_pixels_as_an_array_give() {
    let n = 24;
    let limit = LoadLimits { max_samples: Some(n), ..Default::default() };
    let images = read_inputs(&fixture("fashion-mnist-test-1000-images-idx3-ubyte.gz"), limit).unwrap();
    let labels = read_labels(&fixture("fashion-mnist-test-1000-labels-idx1-ubyte.gz"), limit).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("folder");
    for (i, &label) in labels.iter().enumerate() {
        let class = folder.join(format!("class{label}"));
        std::fs::create_dir_all(&class).unwrap();
        let pixels: Vec<u8> = images.sample(i).iter().map(|&v| (v * 255.0).round() as u8).collect();
        GrayImage::from_raw(28, 28, pixels).unwrap().save(class.join(format!("{i:04}.png"))).unwrap();
    }
    // The folder's order: class by class, files sorted; the same order as arrays.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (labels[i], i));
    let classes_present: Vec<usize> = {
        let mut c = labels.clone();
        c.sort();
        c.dedup();
        c
    };
    // Float64, as the folder's pixels / 255 are: the same calibration to the last bit.
    let x: Vec<f64> = order.iter().flat_map(|&i| images.sample(i).iter().copied()).collect();
    let y: Vec<i64> =
        order.iter().map(|&i| classes_present.iter().position(|&c| c == labels[i]).unwrap() as i64).collect();
    let (x_path, y_path) = (scratch.path().join("x.npy"), scratch.path().join("y.npy"));
    ndarray::Array4::from_shape_vec((n, 1, 28, 28), x)
        .unwrap()
        .write_npy(std::fs::File::create(&x_path).unwrap())
        .unwrap();
    ndarray::Array1::from_vec(y).write_npy(std::fs::File::create(&y_path).unwrap()).unwrap();

    let scanned = ImageFolder::scan(&folder).unwrap();
    assert_eq!(scanned.classes, classes_present.iter().map(|c| format!("class{c}")).collect::<Vec<_>>());

    let common = ["run", "--model", "fixtures/models/resnet.onnx", "--timesteps", "8", "--threads", "2", "--json"];
    let (from_folder, from_array) = (scratch.path().join("folder.npy"), scratch.path().join("array.npy"));
    let folder_run = signgd(
        &[&common[..], &["--data", folder.to_str().unwrap(), "--dump-outputs", from_folder.to_str().unwrap()]].concat(),
    );
    assert!(folder_run.status.success(), "{}", String::from_utf8_lossy(&folder_run.stderr));
    let array_run = signgd(
        &[
            &common[..],
            &["--data", x_path.to_str().unwrap(), "--labels", y_path.to_str().unwrap()],
            &["--dump-outputs", from_array.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(array_run.status.success(), "{}", String::from_utf8_lossy(&array_run.stderr));
    assert_eq!(std::fs::read(&from_folder).unwrap(), std::fs::read(&from_array).unwrap());
    let folder_json: serde_json::Value = serde_json::from_slice(&folder_run.stdout).unwrap();
    let array_json: serde_json::Value = serde_json::from_slice(&array_run.stdout).unwrap();
    assert_eq!(folder_json["ann_accuracy"], array_json["ann_accuracy"]);
    assert_eq!(folder_json["data"]["classes"][0], format!("class{}", classes_present[0]));
    assert!(folder_json["provenance"]["files"]["data"]["bytes"].as_u64().unwrap() > 0);
}

#[test]
fn imagenet_preprocessing_resizes_crops_and_normalises() {
    let scratch = tempfile::tempdir().unwrap();
    let class = scratch.path().join("cat");
    std::fs::create_dir_all(&class).unwrap();
    // 400×300, a uniform colour: every crop pixel is that colour, normalised per channel.
    RgbImage::from_pixel(400, 300, Rgb([200, 100, 50])).save(class.join("a.png")).unwrap();
    let folder = ImageFolder::scan(scratch.path()).unwrap();
    let data = folder.load(LoadLimits::default(), &[3, 224, 224], &Preprocess::imagenet(224)).unwrap();
    assert_eq!((data.samples, data.values.len()), (1, 3 * 224 * 224));
    for (c, value) in [200.0, 100.0, 50.0].into_iter().enumerate() {
        let expected = (value / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        let plane = &data.values[c * 224 * 224..(c + 1) * 224 * 224];
        assert!(plane.iter().all(|&v| (v - expected).abs() < 1e-12), "channel {c}");
    }
    // The centre crop of a left/right split keeps the split in the middle; grey for one channel
    // uses PIL's luma weights.
    let mut split = RgbImage::from_pixel(8, 4, Rgb([0, 0, 0]));
    for y in 0..4 {
        for x in 4..8 {
            split.put_pixel(x, y, Rgb([255, 255, 255]));
        }
    }
    std::fs::remove_file(class.join("a.png")).unwrap();
    split.save(class.join("b.png")).unwrap();
    let folder = ImageFolder::scan(scratch.path()).unwrap();
    let grey = folder.load(LoadLimits::default(), &[1, 4, 4], &Preprocess::none()).unwrap();
    assert_eq!(grey.values, [0.0, 0.0, 1.0, 1.0].repeat(4));
    // Too small for the model without resizing: the error says what to do.
    let error = folder.load(LoadLimits::default(), &[3, 32, 32], &Preprocess::none()).unwrap_err().to_string();
    assert!(error.contains("b.png") && error.contains("--preprocess imagenet"), "{error}");
}
