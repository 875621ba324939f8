//! Synapse blocks: who reaches whom with what weight, stored in memory proportional to the
//! weights. A block maps the output vector of one source to one operand of a target population.

use serde::{Deserialize, Serialize};
use sprs::CsMat;

use super::NetworkError;
use crate::real::Real;

/// Geometry and kernel of a 2-D convolution seen as a synapse block: fan-out is computed on the
/// fly from the kernel, never materialised. Tensors are channel-major (C, H, W), as in ONNX.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvBlock<W = f64> {
    /// Kernel `[out_channels][in_channels / groups][kh][kw]`, row-major.
    pub kernel: Vec<W>,
    /// Source shape `[C, H, W]`.
    pub in_shape: [usize; 3],
    /// Target shape `[C, OH, OW]`.
    pub out_shape: [usize; 3],
    /// Kernel size `[kh, kw]`.
    pub kernel_size: [usize; 2],
    /// Strides `[sh, sw]`.
    pub strides: [usize; 2],
    /// Leading padding `[top, left]`.
    pub pads: [usize; 2],
    /// Dilations `[dh, dw]`.
    pub dilations: [usize; 2],
    /// Number of channel groups (the input channels for a depthwise convolution).
    pub groups: usize,
    /// A per-target factor applied after the convolution (an elementwise scaling that followed
    /// it in the ANN, such as ReLU normalisation); empty for none.
    #[serde(default = "Vec::new")]
    pub target_scale: Vec<W>,
}

/// A block of synapses from one source to one operand of a target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SynapseBlock<W = f64> {
    /// A general linear map: a compressed sparse column matrix `[targets × sources]`, each column
    /// the fan-out of one source.
    Sparse {
        /// The matrix in CSC storage.
        #[serde(with = "csc_serde")]
        matrix: CsMat<W>,
    },
    /// A convolution: kernel plus geometry.
    Conv(ConvBlock<W>),
    /// An elementwise map: target i receives `scale[i]` times source i.
    Diagonal {
        /// One weight per element.
        scale: Vec<W>,
    },
}

impl<W: Copy> SynapseBlock<W> {
    /// Number of source elements the block reads.
    pub fn sources(&self) -> usize {
        match self {
            SynapseBlock::Sparse { matrix } => matrix.cols(),
            SynapseBlock::Conv(conv) => conv.in_shape.iter().product(),
            SynapseBlock::Diagonal { scale } => scale.len(),
        }
    }

    /// Number of target elements the block writes.
    pub fn targets(&self) -> usize {
        match self {
            SynapseBlock::Sparse { matrix } => matrix.rows(),
            SynapseBlock::Conv(conv) => conv.out_shape.iter().product(),
            SynapseBlock::Diagonal { scale } => scale.len(),
        }
    }

    /// Number of stored weights (the block's memory in elements).
    pub fn stored_weights(&self) -> usize {
        match self {
            SynapseBlock::Sparse { matrix } => matrix.nnz(),
            SynapseBlock::Conv(conv) => conv.kernel.len() + conv.target_scale.len(),
            SynapseBlock::Diagonal { scale } => scale.len(),
        }
    }

    /// Short name of the block's kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            SynapseBlock::Sparse { .. } => "sparse",
            SynapseBlock::Conv(_) => "conv",
            SynapseBlock::Diagonal { .. } => "diagonal",
        }
    }
}

impl<W: Real> SynapseBlock<W> {
    /// Adds `scale` times column `source` (the fan-out of one source) to `acc`.
    #[inline]
    pub fn add_column(&self, source: usize, scale: W, acc: &mut [W]) {
        match self {
            SynapseBlock::Sparse { matrix } => {
                let start = matrix.indptr().outer_inds_sz(source);
                let rows = &matrix.indices()[start.clone()];
                let weights = &matrix.data()[start];
                for (&row, &w) in rows.iter().zip(weights) {
                    acc[row] += scale * w;
                }
            }
            SynapseBlock::Conv(conv) => conv.for_each_synapse(source, |target, w| acc[target] += scale * w),
            SynapseBlock::Diagonal { scale: d } => acc[source] += scale * d[source],
        }
    }

    /// Adds the columns of every source in `fired` (each weight once): binary event delivery.
    #[inline]
    pub fn deliver_events(&self, fired: &[u32], acc: &mut [W]) {
        match self {
            SynapseBlock::Sparse { matrix } => {
                let (indptr, indices, data) = (matrix.indptr(), matrix.indices(), matrix.data());
                for &j in fired {
                    let range = indptr.outer_inds_sz(j as usize);
                    for (&row, &w) in indices[range.clone()].iter().zip(&data[range]) {
                        acc[row] += w;
                    }
                }
            }
            SynapseBlock::Conv(conv) => {
                for &j in fired {
                    conv.for_each_synapse(j as usize, |target, w| acc[target] += w);
                }
            }
            SynapseBlock::Diagonal { scale } => {
                for &j in fired {
                    acc[j as usize] += scale[j as usize];
                }
            }
        }
    }

    /// Adds `A u` for a dense real-valued source vector `u`.
    pub fn multiply_add(&self, u: &[W], acc: &mut [W]) {
        match self {
            SynapseBlock::Diagonal { scale } => {
                for ((a, &value), &d) in acc.iter_mut().zip(u).zip(scale) {
                    *a += value * d;
                }
            }
            _ => {
                for (j, &value) in u.iter().enumerate() {
                    self.add_column(j, value, acc);
                }
            }
        }
    }

    /// Number of synapses leaving each source (its fan-out).
    pub fn fan_out(&self) -> Vec<u32> {
        let mut out = vec![0u32; self.sources()];
        match self {
            SynapseBlock::Sparse { matrix } => {
                for (j, count) in out.iter_mut().enumerate() {
                    *count = matrix.indptr().outer_inds_sz(j).len() as u32;
                }
            }
            SynapseBlock::Conv(conv) => {
                for (j, count) in out.iter_mut().enumerate() {
                    conv.for_each_synapse(j, |_, _| *count += 1);
                }
            }
            SynapseBlock::Diagonal { .. } => out.iter_mut().for_each(|c| *c = 1),
        }
        out
    }

    /// Number of synapses reaching each target (its fan-in).
    pub fn fan_in(&self) -> Vec<u32> {
        let mut out = vec![0u32; self.targets()];
        match self {
            SynapseBlock::Sparse { matrix } => matrix.indices().iter().for_each(|&row| out[row] += 1),
            SynapseBlock::Conv(conv) => {
                for j in 0..self.sources() {
                    conv.for_each_synapse(j, |target, _| out[target] += 1);
                }
            }
            SynapseBlock::Diagonal { .. } => out.iter_mut().for_each(|c| *c = 1),
        }
        out
    }

    /// `A 1`: the response of the targets when every source emits 1.
    pub fn response_to_ones(&self) -> Vec<W> {
        let mut acc = vec![W::zero(); self.targets()];
        for j in 0..self.sources() {
            self.add_column(j, W::one(), &mut acc);
        }
        acc
    }

    /// The same block with its weights converted to another precision.
    pub fn cast<T: Real>(&self) -> SynapseBlock<T> {
        let convert = |w: &W| T::of(w.to_f64_lossless());
        match self {
            SynapseBlock::Sparse { matrix } => SynapseBlock::Sparse { matrix: matrix.map(convert) },
            SynapseBlock::Conv(conv) => SynapseBlock::Conv(ConvBlock {
                kernel: conv.kernel.iter().map(convert).collect(),
                in_shape: conv.in_shape,
                out_shape: conv.out_shape,
                kernel_size: conv.kernel_size,
                strides: conv.strides,
                pads: conv.pads,
                dilations: conv.dilations,
                groups: conv.groups,
                target_scale: conv.target_scale.iter().map(convert).collect(),
            }),
            SynapseBlock::Diagonal { scale } => SynapseBlock::Diagonal { scale: scale.iter().map(convert).collect() },
        }
    }

    /// Checks internal consistency: CSC storage, geometry, finite weights.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let weights: &[W] = match self {
            SynapseBlock::Sparse { matrix } => {
                if !matrix.is_csc() {
                    return Err(NetworkError::Block("sparse block must be stored by columns (CSC)".into()));
                }
                matrix.data()
            }
            SynapseBlock::Conv(conv) => {
                conv.validate()?;
                &conv.kernel
            }
            SynapseBlock::Diagonal { scale } => scale,
        };
        if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
            return Err(NetworkError::Block(format!("weight {i} of a {} block is {}", self.kind_name(), weights[i])));
        }
        Ok(())
    }
}

impl<W: Real> ConvBlock<W> {
    /// Calls `visit(target, weight)` for every synapse leaving source element `source`.
    #[inline]
    pub fn for_each_synapse(&self, source: usize, mut visit: impl FnMut(usize, W)) {
        let [in_c, in_h, in_w] = self.in_shape;
        let [out_c, out_h, out_w] = self.out_shape;
        let [kh, kw] = self.kernel_size;
        let (ci, rest) = (source / (in_h * in_w), source % (in_h * in_w));
        let (y, x) = (rest / in_w, rest % in_w);
        let in_per_group = in_c / self.groups;
        let out_per_group = out_c / self.groups;
        let group = ci / in_per_group;
        let ci_in_group = ci % in_per_group;
        for ky in 0..kh {
            let Some(oy) = output_index(y, ky, self.pads[0], self.dilations[0], self.strides[0], out_h) else {
                continue;
            };
            for kx in 0..kw {
                let Some(ox) = output_index(x, kx, self.pads[1], self.dilations[1], self.strides[1], out_w) else {
                    continue;
                };
                for co in group * out_per_group..(group + 1) * out_per_group {
                    let w = self.kernel[((co * in_per_group + ci_in_group) * kh + ky) * kw + kx];
                    let target = (co * out_h + oy) * out_w + ox;
                    match self.target_scale.get(target) {
                        Some(&scale) => visit(target, w * scale),
                        None => visit(target, w),
                    }
                }
            }
        }
    }

    fn validate(&self) -> Result<(), NetworkError> {
        let [in_c, _, _] = self.in_shape;
        let [out_c, _, _] = self.out_shape;
        let [kh, kw] = self.kernel_size;
        let bad = |what: String| Err(NetworkError::Block(format!("convolution block: {what}")));
        if self.groups == 0 || in_c % self.groups != 0 || out_c % self.groups != 0 {
            return bad(format!("{} groups do not divide {in_c} input and {out_c} output channels", self.groups));
        }
        if self.strides.contains(&0) || self.dilations.contains(&0) {
            return bad("strides and dilations must be positive".into());
        }
        let expected = out_c * (in_c / self.groups) * kh * kw;
        if self.kernel.len() != expected {
            return bad(format!("kernel holds {} weights, geometry needs {expected}", self.kernel.len()));
        }
        let targets: usize = self.out_shape.iter().product();
        if !self.target_scale.is_empty() && self.target_scale.len() != targets {
            return bad(format!("{} target scales for {targets} targets", self.target_scale.len()));
        }
        if let Some(i) = self.target_scale.iter().position(|s| !s.is_finite()) {
            return bad(format!("target scale {i} is {}", self.target_scale[i]));
        }
        Ok(())
    }
}

/// The output row (or column) that input position `pos` reaches through kernel tap `k`.
#[inline]
pub(crate) fn output_index(
    pos: usize,
    k: usize,
    pad: usize,
    dilation: usize,
    stride: usize,
    size: usize,
) -> Option<usize> {
    let shifted = (pos + pad).checked_sub(k * dilation)?;
    if shifted % stride != 0 {
        return None;
    }
    let out = shifted / stride;
    (out < size).then_some(out)
}

mod csc_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use sprs::CsMat;

    #[derive(Deserialize)]
    struct Csc<W> {
        rows: usize,
        cols: usize,
        indptr: Vec<usize>,
        indices: Vec<usize>,
        data: Vec<W>,
    }

    #[derive(Serialize)]
    struct CscRef<'a, W> {
        rows: usize,
        cols: usize,
        indptr: Vec<usize>,
        indices: &'a [usize],
        data: &'a [W],
    }

    pub fn serialize<W: Serialize, S: Serializer>(m: &CsMat<W>, s: S) -> Result<S::Ok, S::Error> {
        CscRef {
            rows: m.rows(),
            cols: m.cols(),
            indptr: m.indptr().to_proper().into_owned(),
            indices: m.indices(),
            data: m.data(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, W: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<CsMat<W>, D::Error> {
        let c = Csc::<W>::deserialize(d)?;
        CsMat::try_new_csc((c.rows, c.cols), c.indptr, c.indices, c.data)
            .map_err(|(_, _, _, e)| serde::de::Error::custom(e))
    }
}
