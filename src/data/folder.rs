//! Image folders in torchvision's `ImageFolder` layout: one sub-folder per class (classes in
//! sorted order, labels their indices), JPEG and PNG files found recursively in sorted order,
//! preprocessed as torchvision's usual evaluation transforms do.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};

use super::{read_all, DataError, Dataset, InputSource, LoadLimits};

/// File extensions read as images (compared without case).
const EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// ImageNet's per-channel mean and standard deviation (torchvision's reference scripts).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The evaluation transform: `Resize(resize)` of the shorter side (bilinear, antialiased),
/// `CenterCrop` to the model's size, scaling to [0, 1], then `Normalize(mean, std)` per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Length the shorter side is resized to; `None` takes images as they are (they must then
    /// have the model's size, or at least cover it for the centre crop).
    pub resize: Option<u32>,
    /// Per-channel mean subtracted after scaling to [0, 1] (one value for every channel, or one
    /// per channel).
    pub mean: Vec<f64>,
    /// Per-channel standard deviation divided by.
    pub std: Vec<f64>,
}

impl Preprocess {
    /// No resize, no normalisation: pixel values / 255.
    pub fn none() -> Self {
        Preprocess { resize: None, mean: vec![0.0], std: vec![1.0] }
    }

    /// torchvision's ImageNet evaluation transform for a model taking `crop`×`crop` images:
    /// resize to `crop / 0.875` (256 for 224), centre crop, ImageNet mean and std.
    pub fn imagenet(crop: usize) -> Self {
        let resize = (crop as f64 / 0.875).round() as u32;
        Preprocess { resize: Some(resize), mean: IMAGENET_MEAN.to_vec(), std: IMAGENET_STD.to_vec() }
    }
}

/// The images of a folder and their classes.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFolder {
    /// Class names: the sub-folders' names, sorted.
    pub classes: Vec<String>,
    /// Every image with its class index, class by class, files in sorted order.
    pub images: Vec<(PathBuf, usize)>,
}

impl ImageFolder {
    /// Lists the classes and images of `dir`.
    pub fn scan(dir: &Path) -> Result<Self, DataError> {
        let io = |path: &Path, source| DataError::Io { path: path.to_path_buf(), source };
        let mut classes: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        classes.sort();
        if classes.is_empty() {
            return Err(DataError::Malformed {
                path: dir.to_path_buf(),
                detail: "an image folder needs one sub-folder per class (the ImageFolder layout: DIR/CLASS/IMAGE.jpg), and this one has none".into(),
            });
        }
        let mut images = Vec::new();
        for (label, (_, class_dir)) in classes.iter().enumerate() {
            let mut files = Vec::new();
            walk(class_dir, &mut files).map_err(|e| io(class_dir, e))?;
            files.sort();
            images.extend(files.into_iter().map(|f| (f, label)));
        }
        if images.is_empty() {
            return Err(DataError::Malformed {
                path: dir.to_path_buf(),
                detail: format!("its class folders hold no image (files ending in {})", EXTENSIONS.join(", ")),
            });
        }
        Ok(ImageFolder { classes: classes.into_iter().map(|(name, _)| name).collect(), images })
    }

    /// The labels of the first `limit` images.
    pub fn labels(&self, limit: LoadLimits) -> Vec<usize> {
        self.images.iter().take(limit.max_samples.unwrap_or(usize::MAX)).map(|&(_, l)| l).collect()
    }

    /// Decodes and preprocesses the first `limit` images into samples of `shape`: the model's
    /// input without the batch axis, `[C, H, W]` (or `[H, W, C]` when only the last axis has 1 or
    /// 3 entries), with C = 1 (grey) or 3 (RGB).
    pub fn load(&self, limit: LoadLimits, shape: &[usize], preprocess: &Preprocess) -> Result<Dataset, DataError> {
        let inputs = self.inputs(limit, shape, preprocess)?;
        let per_sample = inputs.layout.channels * inputs.layout.height * inputs.layout.width;
        let bytes = (inputs.len() as u64).saturating_mul(per_sample as u64).saturating_mul(8);
        if bytes > limit.max_bytes {
            return Err(DataError::TooLarge {
                path: self.images[0].0.clone(),
                detail: format!("{} images of {shape:?} ({bytes} bytes as f64)", inputs.len()),
                limit: limit.max_bytes,
            });
        }
        read_all(&inputs)
    }

    /// The first `limit` images as inputs of `shape` (see [`ImageFolder::load`]), each decoded
    /// and preprocessed when it is read.
    pub fn inputs(
        &self,
        limit: LoadLimits,
        shape: &[usize],
        preprocess: &Preprocess,
    ) -> Result<FolderInputs, DataError> {
        let layout = Layout::of(shape).ok_or_else(|| DataError::Malformed {
            path: self.images.first().map(|(p, _)| p.clone()).unwrap_or_default(),
            detail: format!("the model's input {shape:?} is not an image of 1 or 3 channels ([C, H, W] or [H, W, C]); give the data as .npy instead"),
        })?;
        for (what, values) in [("mean", &preprocess.mean), ("std", &preprocess.std)] {
            if values.len() != 1 && values.len() != layout.channels {
                return Err(DataError::Malformed {
                    path: PathBuf::from(format!("--{what}")),
                    detail: format!(
                        "{} values for a model of {} channels; give one, or one per channel",
                        values.len(),
                        layout.channels
                    ),
                });
            }
        }
        let count = self.images.len().min(limit.max_samples.unwrap_or(usize::MAX));
        Ok(FolderInputs {
            files: self.images[..count].iter().map(|(path, _)| path.clone()).collect(),
            shape: shape.to_vec(),
            layout,
            preprocess: preprocess.clone(),
        })
    }
}

/// The images of a folder, decoded and preprocessed as they are read.
pub struct FolderInputs {
    files: Vec<PathBuf>,
    shape: Vec<usize>,
    layout: Layout,
    preprocess: Preprocess,
}

impl InputSource for FolderInputs {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn scaled_from_u8(&self) -> bool {
        true
    }

    fn read(&self, index: usize, into: &mut [f64]) -> Result<(), DataError> {
        let path = self.files.get(index).ok_or_else(|| DataError::Malformed {
            path: PathBuf::from("the image folder"),
            detail: format!("image {index} asked for, but there are only {}", self.files.len()),
        })?;
        let values = sample(path, &self.layout, &self.preprocess)?;
        if values.len() != into.len() {
            return Err(DataError::Malformed {
                path: path.clone(),
                detail: format!("the image gives {} values where {} are asked for", values.len(), into.len()),
            });
        }
        into.copy_from_slice(&values);
        Ok(())
    }
}

/// Appends every image file under `dir` (recursively) to `out`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Where channels, rows and columns lie in a sample.
struct Layout {
    channels: usize,
    height: usize,
    width: usize,
    channels_last: bool,
}

impl Layout {
    fn of(shape: &[usize]) -> Option<Self> {
        match *shape {
            [c @ (1 | 3), h, w] => Some(Layout { channels: c, height: h, width: w, channels_last: false }),
            [h, w, c @ (1 | 3)] => Some(Layout { channels: c, height: h, width: w, channels_last: true }),
            [h, w] => Some(Layout { channels: 1, height: h, width: w, channels_last: false }),
            _ => None,
        }
    }
}

/// One image, decoded, resized, centre-cropped, scaled and normalised, in the model's layout.
fn sample(path: &Path, layout: &Layout, preprocess: &Preprocess) -> Result<Vec<f64>, DataError> {
    let decoded = image::ImageReader::open(path)
        .map_err(|source| DataError::Io { path: path.to_path_buf(), source })?
        .with_guessed_format()
        .map_err(|source| DataError::Io { path: path.to_path_buf(), source })?
        .decode()
        .map_err(|e| DataError::Malformed {
            path: path.to_path_buf(),
            detail: format!("cannot decode the image: {e}"),
        })?;
    let rgb = resized(decoded.to_rgb8(), preprocess.resize);
    let (w, h) = rgb.dimensions();
    let (tw, th) = (layout.width as u32, layout.height as u32);
    if w < tw || h < th {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            detail: format!(
                "the image is {w}×{h}{}, smaller than the model's {tw}×{th}; use --preprocess imagenet (resize and centre crop) or resize the images",
                if preprocess.resize.is_some() { " after resizing" } else { "" }
            ),
        });
    }
    // torchvision's CenterCrop: offsets round((size − crop) / 2), halves to even.
    let top = ((h - th) as f64 / 2.0).round_ties_even() as u32;
    let left = ((w - tw) as f64 / 2.0).round_ties_even() as u32;
    let channel = |c: usize, v: f64| {
        let mean = preprocess.mean[c.min(preprocess.mean.len() - 1)];
        let std = preprocess.std[c.min(preprocess.std.len() - 1)];
        (v / 255.0 - mean) / std
    };
    let mut out = vec![0.0; layout.channels * layout.height * layout.width];
    for y in 0..th {
        for x in 0..tw {
            let [r, g, b] = rgb.get_pixel(left + x, top + y).0;
            let pixel = (y * tw + x) as usize;
            if layout.channels == 1 {
                // PIL's convert("L"): ITU-R 601-2 luma.
                let luma = (r as f64 * 299.0 + g as f64 * 587.0 + b as f64 * 114.0) / 1000.0;
                out[pixel] = channel(0, luma);
            } else {
                for (c, v) in [r, g, b].into_iter().enumerate() {
                    let index =
                        if layout.channels_last { pixel * 3 + c } else { c * layout.height * layout.width + pixel };
                    out[index] = channel(c, v as f64);
                }
            }
        }
    }
    Ok(out)
}

/// The image with its shorter side resized to `shorter` (torchvision's `Resize(int)`: the longer
/// side becomes ⌊shorter · long / short⌋), bilinear with antialiasing.
fn resized(image: RgbImage, shorter: Option<u32>) -> RgbImage {
    let Some(s) = shorter else { return image };
    let (w, h) = image.dimensions();
    let (nw, nh) = if w <= h {
        (s, (s as u64 * h as u64 / w.max(1) as u64) as u32)
    } else {
        ((s as u64 * w as u64 / h.max(1) as u64) as u32, s)
    };
    if (nw, nh) == (w, h) {
        return image;
    }
    DynamicImage::ImageRgb8(image).resize_exact(nw, nh, FilterType::Triangle).to_rgb8()
}
