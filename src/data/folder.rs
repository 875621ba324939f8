//! Image folders in torchvision's `ImageFolder` layout: one sub-folder per class (classes in
//! sorted order, labels their indices), JPEG and PNG files found recursively in sorted order,
//! preprocessed as torchvision's usual evaluation transforms do.

mod resize;

use std::path::{Path, PathBuf};

use super::{read_all, DataError, Dataset, InputSource, LoadLimits};
use resize::resize_bilinear;

/// File extensions read as images (compared without case).
const EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// The other extensions torchvision's `ImageFolder` reads as images: refused rather than skipped,
/// so that the images and labels stay those torchvision would give.
const OTHER_TORCHVISION_EXTENSIONS: &[&str] = &["ppm", "bmp", "pgm", "tif", "tiff", "webp"];

/// Largest image a resize may make (RGB bytes): a sliver of an image would otherwise become an
/// enormous one.
const MAX_RESIZED_BYTES: u64 = 256 << 20;

/// ImageNet's per-channel mean and standard deviation (torchvision's reference scripts).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The evaluation transform: `Resize(resize)` of the shorter side (PIL's antialiased bilinear,
/// reproduced exactly), `CenterCrop` to the model's size, `Grayscale()` for a one-channel model
/// (PIL's integer luma), scaling to [0, 1], then `Normalize(mean, std)` per channel; images are
/// first converted to RGB as torchvision's `ImageFolder` loader does (`convert("RGB")`).
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Length the shorter side is resized to before the centre crop; `None` takes images as
    /// they are, and every image must then have the model's size.
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
        let mut empty = Vec::new();
        for (label, (name, class_dir)) in classes.iter().enumerate() {
            let files = image_files(class_dir)?;
            if files.is_empty() {
                empty.push(name.as_str());
            }
            images.extend(files.into_iter().map(|f| (f, label)));
        }
        // torchvision's ImageFolder refuses a class without images (its labels would shift).
        if !empty.is_empty() {
            return Err(DataError::Malformed {
                path: dir.to_path_buf(),
                detail: format!(
                    "the class folder{} {} hold{} no image (files ending in .{}); add images or remove the folder",
                    if empty.len() > 1 { "s" } else { "" },
                    empty.join(", "),
                    if empty.len() > 1 { "" } else { "s" },
                    EXTENSIONS.join(", .")
                ),
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
                        "{} values (given, or the --preprocess preset's) for a model of {} channel{}; give --{what} with one value, or one per channel",
                        values.len(),
                        layout.channels,
                        if layout.channels == 1 { "" } else { "s" }
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

/// The image files under `dir`, recursively, in torchvision's order: directories by their path
/// as a string (`sorted(os.walk(dir))`), then files by name within each.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut directories = Vec::new();
    list_directories(dir, &mut directories)?;
    directories.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(directories.into_iter().flat_map(|(_, files)| files).collect())
}

/// Appends `dir` and every directory under it to `out`, each with its image files sorted by
/// name; refuses a file torchvision would read as an image that this reader cannot decode.
fn list_directories(dir: &Path, out: &mut Vec<(String, Vec<PathBuf>)>) -> Result<(), DataError> {
    let io = |source| DataError::Io { path: dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            list_directories(&path, out)?;
            continue;
        }
        let extension = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
        match extension.as_deref() {
            Some(e) if EXTENSIONS.contains(&e) => files.push(path),
            Some(e) if OTHER_TORCHVISION_EXTENSIONS.contains(&e) => {
                return Err(DataError::Malformed {
                    path,
                    detail: "torchvision's ImageFolder would read this file as an image, but only JPEG and PNG images are read here; convert it to PNG or move it out of the folder".into(),
                })
            }
            _ => {}
        }
    }
    files.sort_by_key(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()));
    out.push((dir.to_string_lossy().into_owned(), files));
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
            detail: format!("cannot decode the image ({e}); the file may be truncated or not a JPEG or PNG image: replace it or move it out of the folder"),
        })?;
    let rgb = decoded.to_rgb8();
    let rgb = match preprocess.resize {
        None => rgb,
        Some(shorter) => {
            let (nw, nh) = resized_size(rgb.dimensions(), shorter);
            let bytes = nw as u64 * nh as u64 * 3;
            if bytes > MAX_RESIZED_BYTES {
                return Err(DataError::Malformed {
                    path: path.to_path_buf(),
                    detail: format!(
                        "the image is {}×{}: resizing its shorter side to {shorter} would make a {nw}×{nh} image of {bytes} bytes (at most {MAX_RESIZED_BYTES}); crop it to a usual aspect ratio or move it out of the folder",
                        rgb.width(),
                        rgb.height()
                    ),
                });
            }
            resize_bilinear(&rgb, nw, nh)
        }
    };
    let (w, h) = rgb.dimensions();
    let (tw, th) = (layout.width as u32, layout.height as u32);
    if preprocess.resize.is_none() && (w, h) != (tw, th) {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            detail: format!(
                "the image is {w}×{h} and the model takes {tw}×{th}; use --preprocess imagenet (resize and centre crop) or give images of the model's size"
            ),
        });
    }
    if w < tw || h < th {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            detail: format!("the image is {w}×{h} after resizing, smaller than the model's {tw}×{th}"),
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
                out[pixel] = channel(0, luma(r, g, b) as f64);
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

/// PIL's `convert("L")` of an RGB pixel: ITU-R 601-2 luma in 16-bit fixed point, rounded.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// The size of a `w`×`h` image with its shorter side resized to `shorter` (torchvision's
/// `Resize(int)`: the longer side becomes `int(shorter * long / short)`).
fn resized_size((w, h): (u32, u32), shorter: u32) -> (u32, u32) {
    let (short, long) = (w.min(h).max(1), w.max(h));
    let new_long = (shorter as f64 * long as f64 / short as f64) as u32;
    if w <= h {
        (shorter, new_long)
    } else {
        (new_long, shorter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_is_pils_integer_form() {
        // (255·19595 + 32768) >> 16 = 76 (the float weights would give 76.245).
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(7, 7, 7), 7);
    }

    #[test]
    fn resize_keeps_the_aspect_ratio_with_truncation() {
        // 400×300 to a shorter side of 256: 256 · 400 / 300 = 341.33 → 341.
        assert_eq!(resized_size((400, 300), 256), (341, 256));
        assert_eq!(resized_size((33, 57), 32), (32, 55));
        assert_eq!(resized_size((28, 28), 32), (32, 32));
    }
}
