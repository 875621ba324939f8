//! Bilinear resizing exactly as Pillow's `Image.resize(size, Image.BILINEAR)` does it, which is
//! what torchvision's `Resize` applies to PIL images: a separable triangle filter whose support
//! widens with the downscale factor (antialiasing), weights in 22-bit fixed point, a horizontal
//! pass rounded to 8 bits, then a vertical pass over that 8-bit result.

use image::RgbImage;

/// Fraction bits of the fixed-point weights (32 bits, minus 8 for the pixel value and 2 spare).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Half-width of the bilinear (triangle) filter at scale 1.
const BILINEAR_SUPPORT: f64 = 1.0;

/// The weights giving one output pixel: the first input pixel they apply to and one fixed-point
/// weight per input pixel from there on.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// `image` resized to `width`×`height` as Pillow's bilinear resampling does, to the last bit.
pub fn resize_bilinear(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_width, in_height) = image.dimensions();
    if (width, height) == (in_width, in_height) || width == 0 || height == 0 {
        return if (width, height) == (in_width, in_height) { image.clone() } else { RgbImage::new(width, height) };
    }
    let vertical = taps(in_height as usize, height as usize);
    // Only the input rows the vertical pass reads go through the horizontal pass.
    let first_row = vertical.first().map_or(0, |t| t.first);
    let end_row = vertical.last().map_or(0, |t| t.first + t.weights.len());
    let rows = if width == in_width {
        image.as_raw()[first_row * in_width as usize * 3..end_row * in_width as usize * 3].to_vec()
    } else {
        horizontal_pass(image, first_row..end_row, width)
    };
    if height == in_height {
        return RgbImage::from_raw(width, height, rows).expect("the horizontal pass keeps every row");
    }
    let stride = width as usize * 3;
    let mut out = vec![0u8; height as usize * stride];
    for (y, tap) in vertical.iter().enumerate() {
        let start = tap.first - first_row;
        for i in 0..stride {
            let sum = tap
                .weights
                .iter()
                .enumerate()
                .fold(rounding(), |acc, (k, &w)| acc + rows[(start + k) * stride + i] as i32 * w);
            out[y * stride + i] = clip8(sum);
        }
    }
    RgbImage::from_raw(width, height, out).expect("the vertical pass fills every pixel")
}

/// The rows `rows` of `image` resampled to `width` columns.
fn horizontal_pass(image: &RgbImage, rows: std::ops::Range<usize>, width: u32) -> Vec<u8> {
    let in_stride = image.width() as usize * 3;
    let raw = image.as_raw();
    let horizontal = taps(image.width() as usize, width as usize);
    let mut out = Vec::with_capacity(rows.len() * width as usize * 3);
    for y in rows {
        let row = &raw[y * in_stride..(y + 1) * in_stride];
        for tap in &horizontal {
            for c in 0..3 {
                let sum = tap
                    .weights
                    .iter()
                    .enumerate()
                    .fold(rounding(), |acc, (k, &w)| acc + row[(tap.first + k) * 3 + c] as i32 * w);
                out.push(clip8(sum));
            }
        }
    }
    out
}

/// The initial value of a fixed-point sum: one half, so the final shift rounds.
fn rounding() -> i32 {
    1 << (PRECISION_BITS - 1)
}

/// A fixed-point sum as a pixel value, clipped to [0, 255].
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's triangle filter.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// The taps of every output pixel when `in_size` pixels are resampled to `out_size`: centred on
/// `(i + 0.5) · scale`, the filter stretched by the scale when shrinking, weights normalised to a
/// sum of one and then rounded (half away from zero) to fixed point.
fn taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = BILINEAR_SUPPORT * filter_scale;
    let inverse = 1.0 / filter_scale;
    (0..out_size)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            // Truncating casts, as the reference's conversions to int do.
            let first = ((centre - support + 0.5) as i64).max(0) as usize;
            let end = ((centre + support + 0.5) as i64).min(in_size as i64) as usize;
            let raw: Vec<f64> = (first..end).map(|x| triangle((x as f64 - centre + 0.5) * inverse)).collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let fixed = w * (1u32 << PRECISION_BITS) as f64;
                    (if fixed < 0.0 { fixed - 0.5 } else { fixed + 0.5 }) as i32
                })
                .collect();
            Taps { first, weights }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn halving_averages_pairs_and_keeps_a_uniform_image() {
        // 4 → 2 columns: scale 2, support 2, centres 1 and 3. Around centre 1, pixels 0, 1, 2
        // (centres 0.5, 1.5, 2.5) weigh 1 − |d|/2 = 0.75, 0.75, 0.25, normalised [3, 3, 1] / 7;
        // around centre 3, pixels 1, 2, 3 weigh [1, 3, 3] / 7.
        let mut image = RgbImage::new(4, 1);
        for (x, v) in [0u8, 70, 140, 210].into_iter().enumerate() {
            image.put_pixel(x as u32, 0, Rgb([v, v, v]));
        }
        let out = resize_bilinear(&image, 2, 1);
        // (3·0 + 3·70 + 1·140) / 7 = 50; (1·70 + 3·140 + 3·210) / 7 = 160.
        assert_eq!(out.get_pixel(0, 0).0, [50, 50, 50]);
        assert_eq!(out.get_pixel(1, 0).0, [160, 160, 160]);
        let uniform = RgbImage::from_pixel(37, 23, Rgb([200, 100, 7]));
        let out = resize_bilinear(&uniform, 11, 64);
        assert!(out.pixels().all(|p| p.0 == [200, 100, 7]));
    }

    #[test]
    fn upscaling_interpolates_between_neighbours() {
        // 2 → 4: scale 0.5, support 1; output 1 has centre 0.75: weights for x = 0, 1 are
        // 1 − |0.5 − 0.75| = 0.75 and 1 − |1.5 − 0.75| = 0.25.
        let mut image = RgbImage::new(2, 1);
        image.put_pixel(0, 0, Rgb([0, 100, 255]));
        image.put_pixel(1, 0, Rgb([200, 100, 0]));
        let out = resize_bilinear(&image, 4, 1);
        assert_eq!(out.get_pixel(1, 0).0, [50, 100, 191]);
        assert_eq!(out.get_pixel(0, 0).0, [0, 100, 255]);
    }
}
