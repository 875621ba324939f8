//! Image folders (torchvision's ImageFolder layout) as `--data`: classes from the sorted
//! sub-folders, preprocessing as torchvision's evaluation transforms, results identical to the
//! same pixels given as an array.

use std::path::Path;
use std::process::Command;

use image::{GrayImage, Rgb, RgbImage};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use signgd::data::{
    read_inputs, read_labels, ImageFolder, InputSource, LoadLimits, Preprocess, IMAGENET_MEAN, IMAGENET_STD,
};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data").join(name)
}

fn signgd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_signgd")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap()
}

/// Runs `common` on an image folder (`folder_args`) and on the same inputs given as arrays, `x`
/// (28×28 grey images, row-major) and labels `y`, written as .npy files into `dir`; checks that
/// both succeed with byte-identical SNN outputs and returns both JSON results.
fn folder_and_arrays_agree(
    dir: &Path,
    common: &[&str],
    folder_args: &[&str],
    x: Vec<f64>,
    y: Vec<i64>,
) -> (serde_json::Value, serde_json::Value) {
    let (x_path, y_path) = (dir.join("x.npy"), dir.join("y.npy"));
    ndarray::Array4::from_shape_vec((y.len(), 1, 28, 28), x)
        .unwrap()
        .write_npy(std::fs::File::create(&x_path).unwrap())
        .unwrap();
    ndarray::Array1::from_vec(y).write_npy(std::fs::File::create(&y_path).unwrap()).unwrap();
    let (from_folder, from_array) = (dir.join("folder.npy"), dir.join("array.npy"));
    let folder_run = signgd(&[common, folder_args, &["--dump-outputs", from_folder.to_str().unwrap()]].concat());
    assert!(folder_run.status.success(), "{}", String::from_utf8_lossy(&folder_run.stderr));
    let array_args = ["--data", x_path.to_str().unwrap(), "--labels", y_path.to_str().unwrap()];
    let array_run = signgd(&[common, &array_args, &["--dump-outputs", from_array.to_str().unwrap()]].concat());
    assert!(array_run.status.success(), "{}", String::from_utf8_lossy(&array_run.stderr));
    assert_eq!(std::fs::read(&from_folder).unwrap(), std::fs::read(&from_array).unwrap());
    (serde_json::from_slice(&folder_run.stdout).unwrap(), serde_json::from_slice(&array_run.stdout).unwrap())
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

    let scanned = ImageFolder::scan(&folder).unwrap();
    assert_eq!(scanned.classes, classes_present.iter().map(|c| format!("class{c}")).collect::<Vec<_>>());

    let common = ["run", "--model", "fixtures/models/resnet.onnx", "--timesteps", "8", "--threads", "2", "--json"];
    let (folder_json, array_json) =
        folder_and_arrays_agree(scratch.path(), &common, &["--data", folder.to_str().unwrap()], x, y);
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
    // The centre crop of a left/right split keeps the split in the middle (the shorter side is
    // already 4: no resampling); grey for one channel uses PIL's luma.
    let mut split = RgbImage::from_pixel(8, 4, Rgb([0, 0, 0]));
    for y in 0..4 {
        for x in 4..8 {
            split.put_pixel(x, y, Rgb([255, 255, 255]));
        }
    }
    std::fs::remove_file(class.join("a.png")).unwrap();
    split.save(class.join("b.png")).unwrap();
    let folder = ImageFolder::scan(scratch.path()).unwrap();
    let crop_only = Preprocess { resize: Some(4), ..Preprocess::none() };
    let grey = folder.load(LoadLimits::default(), &[1, 4, 4], &crop_only).unwrap();
    assert_eq!(grey.values, [0.0, 0.0, 1.0, 1.0].repeat(4));
    // Too small for the model without resizing: the error says what to do.
    let error = folder.load(LoadLimits::default(), &[3, 32, 32], &Preprocess::none()).unwrap_err().to_string();
    assert!(error.contains("b.png") && error.contains("--preprocess imagenet"), "{error}");
}

/// A committed image folder or reference tensor (made with torchvision, see fixtures/images).
fn images(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images").join(name)
}

/// A committed float32 reference tensor, flattened, with its shape.
fn reference(name: &str) -> (Vec<usize>, Vec<f64>) {
    let array = ndarray::ArrayD::<f32>::read_npy(std::fs::File::open(images("reference").join(name)).unwrap()).unwrap();
    (array.shape().to_vec(), array.iter().map(|&v| v as f64).collect())
}

/// The files of a committed folder in torchvision's `ImageFolder.samples` order.
fn torchvision_order(folder: &str) -> Vec<String> {
    let listing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(images("reference/files.json")).unwrap()).unwrap();
    listing["files"][folder].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(images("")).unwrap().to_string_lossy().replace('\\', "/")
}

/// Largest |Δ| per image between `ours` and torchvision's `theirs` ([N, C, H, W] each), in pixel
/// units: normalised values differ by Δ·std when the pixels differ by Δ.
fn pixel_differences(ours: &[f64], theirs: &[f64], images: usize, std: &[f64]) -> Vec<f64> {
    assert_eq!(ours.len(), theirs.len());
    let per_image = ours.len() / images;
    let plane = per_image / std.len();
    (0..images)
        .map(|i| {
            (0..per_image)
                .map(|k| {
                    let at = i * per_image + k;
                    (ours[at] - theirs[at]).abs() * std[k / plane]
                })
                .fold(0.0, f64::max)
        })
        .collect()
}

#[test]
fn preprocessing_reproduces_torchvision_to_the_pixel() {
    let fashion = ImageFolder::scan(&images("fashion")).unwrap();
    let resized = ImageFolder::scan(&images("resized")).unwrap();
    for (folder, name) in [(&fashion, "fashion"), (&resized, "resized")] {
        let ours: Vec<String> = folder.images.iter().map(|(p, _)| relative(p)).collect();
        assert_eq!(ours, torchvision_order(name), "the order of {name}");
    }
    let limit = LoadLimits::default();
    let grey = [0.5];
    let cases: Vec<(&ImageFolder, Vec<usize>, Preprocess, &str)> = vec![
        (&fashion, vec![1, 28, 28], Preprocess::none(), "fashion-totensor.npy"),
        (
            &resized,
            vec![1, 28, 28],
            Preprocess { resize: Some(32), mean: grey.to_vec(), std: grey.to_vec() },
            "resized-grey-resize32-crop28.npy",
        ),
        (
            &resized,
            vec![3, 32, 32],
            Preprocess { resize: Some(36), ..Preprocess::imagenet(224) },
            "resized-rgb-resize36-crop32-imagenet.npy",
        ),
    ];
    let mut worst = (0.0f64, 0.0f64);
    for (folder, shape, preprocess, name) in cases {
        let ours = folder.load(limit, &shape, &preprocess).unwrap();
        let (their_shape, theirs) = reference(name);
        assert_eq!(their_shape, [&[folder.images.len()][..], &shape].concat(), "{name}");
        let differences = pixel_differences(&ours.values, &theirs, folder.images.len(), &preprocess.std);
        for ((path, _), difference) in folder.images.iter().zip(differences) {
            let jpeg = path.extension().unwrap() == "jpg";
            eprintln!("{name} {}: largest difference {:.3e} of a level", relative(path), difference * 255.0);
            let worst = if jpeg { &mut worst.1 } else { &mut worst.0 };
            *worst = worst.max(difference);
        }
    }
    // The 224×224 ImageNet preset, on a picture large enough for antialiasing to matter.
    let index = resized.images.iter().position(|(p, _)| relative(p).contains("c-320x290")).unwrap();
    let inputs = resized.inputs(limit, &[3, 224, 224], &Preprocess::imagenet(224)).unwrap();
    let mut ours = vec![0.0; 3 * 224 * 224];
    inputs.read(index, &mut ours).unwrap();
    let (_, theirs) = reference("resized-c-320x290-resize256-crop224-imagenet.npy");
    let difference = pixel_differences(&ours, &theirs, 1, &IMAGENET_STD)[0];
    eprintln!("imagenet 224 c-320x290: largest difference {:.3e} of a level", difference * 255.0);
    worst.0 = worst.0.max(difference);
    // JPEG decoders differ by a few levels (IDCT rounding, chroma upsampling): the colour JPEG as
    // decoded, before any resizing, already differs from libjpeg-turbo's pixels by that much.
    let index = resized.images.iter().position(|(p, _)| relative(p).contains("b-45x61")).unwrap();
    let decoded = resized.inputs(limit, &[3, 61, 45], &Preprocess::none()).unwrap();
    let mut ours = vec![0.0; 3 * 61 * 45];
    decoded.read(index, &mut ours).unwrap();
    let decoding = pixel_differences(&ours, &reference("resized-b-45x61-totensor.npy").1, 1, &[1.0])[0];
    eprintln!("decoding b-45x61-rgb.jpg: largest difference {:.3e} of a level", decoding * 255.0);
    // PNG: torchvision's pixels exactly (up to the float32 storage of the reference); JPEG:
    // within the decoders' difference.
    assert!(worst.0 < 1e-6, "PNG pixels differ by {} of a level", worst.0 * 255.0);
    assert!(decoding > 0.5 / 255.0 && decoding <= 3.0 / 255.0 + 1e-6, "decoding differs by {decoding}");
    assert!(worst.1 <= decoding + 1e-6, "JPEG pixels differ by {} of a level", worst.1 * 255.0);
}

#[test]
fn the_committed_folder_gives_the_outputs_of_the_same_pictures_through_idx() {
    let folder = ImageFolder::scan(&images("fashion")).unwrap();
    assert_eq!(folder.classes, ["0-tshirt", "1-trouser", "2-pullover"]);
    let n = folder.images.len();
    assert!(n >= 30, "{n} images");
    let idx = read_inputs(&fixture("fashion-mnist-test-1000-images-idx3-ubyte.gz"), LoadLimits::default()).unwrap();
    let idx_labels =
        read_labels(&fixture("fashion-mnist-test-1000-labels-idx1-ubyte.gz"), LoadLimits::default()).unwrap();
    let decoded = folder.load(LoadLimits::default(), &[1, 28, 28], &Preprocess::none()).unwrap();
    // Each file is named after its picture's index in the IDX file, and its class folder is the
    // picture's label. PNG files hold the IDX pixels exactly; JPEG files (lossy) enter the
    // array as decoded.
    let mut x = Vec::with_capacity(n * 784);
    let mut y = Vec::with_capacity(n);
    for (k, (path, label)) in folder.images.iter().enumerate() {
        let index: usize = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(idx_labels[index], *label, "{}", path.display());
        let pixels = &decoded.values[k * 784..(k + 1) * 784];
        if path.extension().unwrap() == "png" {
            assert_eq!(pixels, idx.sample(index), "{}", path.display());
            x.extend_from_slice(idx.sample(index));
        } else {
            assert_ne!(pixels, idx.sample(index), "{} is lossy", path.display());
            x.extend_from_slice(pixels);
        }
        y.push(idx_labels[index] as i64);
    }
    let scratch = tempfile::tempdir().unwrap();
    let common = ["run", "--model", "fixtures/models/vgg.onnx", "--timesteps", "4,16", "--threads", "2", "--json"];
    let folder_path = images("fashion");
    let (folder_json, array_json) =
        folder_and_arrays_agree(scratch.path(), &common, &["--data", folder_path.to_str().unwrap()], x, y);
    for key in ["ann_accuracy", "checkpoints", "network"] {
        assert_eq!(folder_json[key], array_json[key], "{key}");
    }
    // The classes keep Fashion-MNIST's labels, so the accuracy is the model's real one.
    assert!(folder_json["ann_accuracy"].as_f64().unwrap() > 0.8, "{}", folder_json["ann_accuracy"]);
    assert_eq!(folder_json["data"]["classes"], serde_json::json!(["0-tshirt", "1-trouser", "2-pullover"]));
}

/// A copy of the committed 28×28 folder, to be spoilt.
fn copy_of_fashion(into: &Path) -> std::path::PathBuf {
    let folder = into.join("folder");
    for (path, _) in ImageFolder::scan(&images("fashion")).unwrap().images {
        let target = folder.join(path.strip_prefix(images("fashion")).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&path, &target).unwrap();
    }
    folder
}

#[test]
fn bad_images_and_folders_are_refused_naming_the_file() {
    let run = |folder: &Path, extra: &[&str]| {
        let args = [
            &["run", "--model", "fixtures/models/mlp.onnx", "--timesteps", "2", "--data"][..],
            &[folder.to_str().unwrap()],
            extra,
        ]
        .concat();
        let out = signgd(&args);
        assert!(!out.status.success(), "accepted: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let scratch = tempfile::tempdir().unwrap();
    let folder = copy_of_fashion(scratch.path());
    let good = folder.join("1-trouser/0002.png");

    // A truncated PNG, last in its class: found when it is read, named, with a non-zero exit.
    let bytes = std::fs::read(&good).unwrap();
    let truncated = folder.join("1-trouser/9999.png");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let error = run(&folder, &[]);
    assert!(error.contains("9999.png") && error.contains("cannot decode"), "{error}");
    std::fs::remove_file(&truncated).unwrap();

    // Text with a .jpg name.
    let text = folder.join("2-pullover/notes.jpg");
    std::fs::write(&text, "not a picture\n").unwrap();
    let error = run(&folder, &[]);
    assert!(error.contains("notes.jpg") && error.contains("cannot decode"), "{error}");
    std::fs::remove_file(&text).unwrap();

    // A class folder without images: refused as torchvision's ImageFolder does (the labels of
    // the classes after it would otherwise shift).
    std::fs::create_dir_all(folder.join("3-dress")).unwrap();
    std::fs::write(folder.join("3-dress/README.txt"), "to do\n").unwrap();
    let error = run(&folder, &[]);
    assert!(error.contains("3-dress") && error.contains("no image"), "{error}");
    std::fs::remove_dir_all(folder.join("3-dress")).unwrap();

    // Mixed sizes without --preprocess: no silent crop; the message says what to do.
    std::fs::copy(images("resized/2-pullover/a-100x75-rgb.png"), folder.join("0-tshirt/big.png")).unwrap();
    let error = run(&folder, &[]);
    assert!(
        error.contains("big.png") && error.contains("100×75") && error.contains("--preprocess imagenet"),
        "{error}"
    );
    // A sliver that resizing for a 224 model would blow up to 256×512,000 pixels: refused
    // before allocating.
    let sliver = scratch.path().join("sliver");
    std::fs::create_dir_all(sliver.join("a")).unwrap();
    GrayImage::new(1, 2000).save(sliver.join("a/sliver.png")).unwrap();
    let inputs = ImageFolder::scan(&sliver)
        .unwrap()
        .inputs(LoadLimits::default(), &[3, 224, 224], &Preprocess::imagenet(224))
        .unwrap();
    let error = inputs.read(0, &mut vec![0.0; 3 * 224 * 224]).unwrap_err().to_string();
    assert!(error.contains("sliver.png") && error.contains("1×2000") && error.contains("256×512000"), "{error}");
    // …and with --preprocess a folder of mixed sizes is read.
    let out = signgd(&[
        "run",
        "--model",
        "fixtures/models/mlp.onnx",
        "--timesteps",
        "2",
        "--preprocess",
        "imagenet",
        "--mean",
        "0.5",
        "--std",
        "0.5",
        "--data",
        folder.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn nested_folders_keep_torchvisions_order_and_other_image_types_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let class = scratch.path().join("cls");
    for file in ["top.png", "a/z.png", "a-c/x.png", "a/b/y.png", "B.png"] {
        let path = class.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        GrayImage::new(2, 2).save(&path).unwrap();
    }
    // torchvision 0.29's ImageFolder(...).samples for this tree: directories sorted as strings
    // ("cls/a-c" before "cls/a/b": '-' < '/'), files by name within each ('B' < 't').
    let order: Vec<String> = ImageFolder::scan(scratch.path())
        .unwrap()
        .images
        .iter()
        .map(|(p, _)| p.strip_prefix(scratch.path()).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(order, ["cls/B.png", "cls/top.png", "cls/a/z.png", "cls/a-c/x.png", "cls/a/b/y.png"]);
    // A BMP would be one of torchvision's images: refused, not silently skipped.
    std::fs::write(class.join("a/scan.BMP"), b"BM").unwrap();
    let error = ImageFolder::scan(scratch.path()).unwrap_err().to_string();
    assert!(error.contains("scan.BMP") && error.contains("convert it to PNG"), "{error}");
}

#[test]
fn preprocess_imagenet_gives_the_outputs_of_torchvisions_tensors() {
    // A 28×28 model: --preprocess imagenet resizes to round(28 / 0.875) = 32 and crops 28, the
    // transform of the grey reference tensors, with --mean/--std 0.5 as there.
    let preprocess = Preprocess { mean: vec![0.5], std: vec![0.5], ..Preprocess::imagenet(28) };
    assert_eq!(preprocess.resize, Some(32));
    let folder = ImageFolder::scan(&images("resized")).unwrap();
    let n = folder.images.len();
    let ours = folder.load(LoadLimits::default(), &[1, 28, 28], &preprocess).unwrap();
    let (_, theirs) = reference("resized-grey-resize32-crop28.npy");
    // torchvision's pixels for PNG files (JPEG files as decoded here), normalised in float64.
    let mut x = Vec::with_capacity(n * 784);
    for (k, (path, _)) in folder.images.iter().enumerate() {
        let range = k * 784..(k + 1) * 784;
        if path.extension().unwrap() == "png" {
            let pixels = theirs[range.clone()].iter().map(|&t| ((t * 0.5 + 0.5) * 255.0).round());
            x.extend(pixels.map(|v| (v / 255.0 - 0.5) / 0.5));
            assert_eq!(&x[range.clone()], &ours.values[range], "{}", path.display());
        } else {
            x.extend_from_slice(&ours.values[range]);
        }
    }
    let y: Vec<i64> = folder.images.iter().map(|&(_, label)| label as i64).collect();
    let scratch = tempfile::tempdir().unwrap();
    let common = ["run", "--model", "fixtures/models/resnet.onnx", "--timesteps", "4,16", "--threads", "2", "--json"];
    let folder_path = images("resized");
    let folder_args =
        ["--data", folder_path.to_str().unwrap(), "--preprocess", "imagenet", "--mean", "0.5", "--std", "0.5"];
    let (folder_json, array_json) = folder_and_arrays_agree(scratch.path(), &common, &folder_args, x, y);
    for key in ["ann_accuracy", "checkpoints"] {
        assert_eq!(folder_json[key], array_json[key], "{key}");
    }
    assert_eq!(folder_json["data"]["preprocess"], "imagenet");
}
