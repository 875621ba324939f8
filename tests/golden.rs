//! Every golden trace of the reference implementation, replayed on networks built by hand from
//! the traces' `params`: x_hat, spikes and v of every population at every step, the encoder and
//! the decoded output agree within 1e-12 in float64, with no differing spike.

mod common;

use common::golden::{replay, GoldenCase};
use signgd::snn::{GeluTarget, Network, NeuronKind, Operand, Population, Source, SynapseBlock};
use sprs::{CsMat, TriMat};

fn diagonal(scale: Vec<f64>) -> SynapseBlock {
    SynapseBlock::Diagonal { scale }
}

/// A sparse block from `(row, col, weight)` entries.
fn sparse(rows: usize, cols: usize, entries: &[(usize, usize, f64)]) -> SynapseBlock {
    let mut tri = TriMat::new((rows, cols));
    for &(r, c, w) in entries {
        tri.add_triplet(r, c, w);
    }
    let matrix: CsMat<f64> = tri.to_csc();
    SynapseBlock::Sparse { matrix }
}

fn population(name: &str, kind: NeuronKind, size: usize, operands: Vec<Operand>) -> Population {
    Population { name: name.into(), kind, shape: vec![size], operands }
}

fn network(inputs: usize, populations: Vec<Population>, readout: Operand) -> Network {
    let outputs = readout.len();
    Network { input_shape: vec![inputs], populations, readout, output_shape: vec![outputs] }
}

fn identity_readout(from: usize, size: usize) -> Operand {
    Operand::new(vec![0.0; size]).with(Source::Population(from), diagonal(vec![1.0; size]))
}

fn gelu() -> NeuronKind {
    NeuronKind::Gelu { target: GeluTarget::Sigmoid }
}

#[test]
fn gelu_pipeline() {
    let case = GoldenCase::load("gelu_pipeline");
    let a = case.param("a")[0];
    let operand = Operand::new(vec![0.0; 9]).with(Source::Input, diagonal(vec![a; 9]));
    let net = network(9, vec![population("gelu", gelu(), 9, vec![operand])], identity_readout(0, 9));
    replay(&case, &net);
}

#[test]
fn gelu_const() {
    let case = GoldenCase::load("gelu_const");
    let weight = case.param("lin.weight");
    let entries: Vec<_> = weight.iter().enumerate().map(|(r, &w)| (r, 0, w)).collect();
    let operand = Operand::new(case.param("lin.bias")).with(Source::Input, sparse(9, 1, &entries));
    let net = network(1, vec![population("gelu", gelu(), 9, vec![operand])], identity_readout(0, 9));
    replay(&case, &net);
}

#[test]
fn relu_pipeline() {
    let case = GoldenCase::load("relu_pipeline");
    let a = case.param("a")[0];
    // Normalisation: m = per-element max of the ReLU's output over the calibration set (here
    // the input itself), m := 1 where m <= 1e-5; ReLU(z) = m ⊙ ReLU(z / m).
    let m: Vec<f64> = case.input().iter().map(|x| (a * x).max(0.0)).map(|m| if m <= 1e-5 { 1.0 } else { m }).collect();
    let operand = Operand::new(vec![0.0; 9]).with(Source::Input, diagonal(m.iter().map(|m| a / m).collect()));
    let readout = Operand::new(vec![0.0; 9]).with(Source::Population(0), diagonal(m));
    let net = network(9, vec![population("relu", NeuronKind::Relu, 9, vec![operand])], readout);
    replay(&case, &net);
}

/// 2×2 max pooling of a 2×2 map: max over rows (two neurons), then over columns (one).
fn max4(case: &GoldenCase, first_operands: [Operand; 2]) -> Network {
    let rows = population("max_h", NeuronKind::Max, 2, first_operands.into());
    let columns = population(
        "max_w",
        NeuronKind::Max,
        1,
        vec![
            Operand::new(vec![0.0]).with(Source::Population(0), sparse(1, 2, &[(0, 0, 1.0)])),
            Operand::new(vec![0.0]).with(Source::Population(0), sparse(1, 2, &[(0, 1, 1.0)])),
        ],
    );
    let _ = case;
    network(4, vec![rows, columns], identity_readout(1, 1))
}

#[test]
fn max4_pipeline() {
    let case = GoldenCase::load("max4_pipeline");
    let a = case.param("a")[0];
    let row =
        |r: usize| Operand::new(vec![0.0; 2]).with(Source::Input, sparse(2, 4, &[(0, 2 * r, a), (1, 2 * r + 1, a)]));
    let net = max4(&case, [row(0), row(1)]);
    replay(&case, &net);
}

#[test]
fn max4_const() {
    let case = GoldenCase::load("max4_const");
    let b = case.param("lin.bias");
    // The linear layer's weights are all zero: no synapses, the bias is the whole map.
    let row = |r: usize| Operand::new(b[2 * r..2 * r + 2].to_vec()).with(Source::Input, sparse(2, 4, &[]));
    let net = max4(&case, [row(0), row(1)]);
    replay(&case, &net);
}

/// LayerNorm(8): u = x − mean(x) (affine), q = square(u), d = mean(q) + ε (affine),
/// n = u / sqrt(d), out = γ n + β (affine, the readout).
fn layernorm8(case: &GoldenCase, centred: Operand) -> Network {
    let n = 8;
    let square = population("square", NeuronKind::Square, n, vec![centred.clone()]);
    let all_to_all: Vec<_> = (0..n).flat_map(|r| (0..n).map(move |c| (r, c, 1.0 / n as f64))).collect();
    let variance = Operand::new(vec![1e-5; n]).with(Source::Population(0), sparse(n, n, &all_to_all));
    let normalise = population("normalise", NeuronKind::DivSqrt, n, vec![centred, variance]);
    let readout = Operand::new(case.param("ln.bias")).with(Source::Population(1), diagonal(case.param("ln.weight")));
    network(n, vec![square, normalise], readout)
}

#[test]
fn layernorm8_pipeline() {
    let case = GoldenCase::load("layernorm8_pipeline");
    let a = case.param("a")[0];
    let n = 8;
    let centring: Vec<_> = (0..n)
        .flat_map(|r| (0..n).map(move |c| (r, c, a * (if r == c { 1.0 } else { 0.0 } - 1.0 / n as f64))))
        .collect();
    let centred = Operand::new(vec![0.0; n]).with(Source::Input, sparse(n, n, &centring));
    replay(&case, &layernorm8(&case, centred));
}

#[test]
fn layernorm8_const() {
    let case = GoldenCase::load("layernorm8_const");
    let b = case.param("lin.bias");
    let mean = b.iter().sum::<f64>() / b.len() as f64;
    let centred = Operand::new(b.iter().map(|b| b - mean).collect::<Vec<f64>>()).with(Source::Input, sparse(8, 8, &[]));
    replay(&case, &layernorm8(&case, centred));
}
