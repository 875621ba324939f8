//! Two layers of the ANN evaluator at real size, float32, one thread: ResNet-18's 3×3 64→64
//! convolution on 56×56 and ViT-Tiny's 192→768 projection over 197 tokens. Prints GFLOP/s
//! (2 FLOP per multiply-accumulate) against one core's peak.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use signgd::model::eval::eval_op;
use signgd::model::Op;

/// Single-precision peak of one core of the development machine (AMD EPYC Zen 5, AVX-512: about
/// 3.3 × 10¹¹ FLOP/s on its two cores).
const PEAK_FLOPS_PER_CORE: f64 = 1.65e11;

fn tensor(shape: &[usize], seed: usize) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let values = (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 - 1000.0) * 1e-3).collect();
    ArrayD::from_shape_vec(IxDyn(shape), values).expect("shape and length agree")
}

/// One layer: its op, inputs, output shape and multiply-accumulates.
struct Layer {
    name: &'static str,
    op: Op,
    inputs: Vec<ArrayD<f32>>,
    out_shape: Vec<usize>,
    macs: u64,
}

impl Layer {
    fn run(&self) -> ArrayD<f32> {
        let views: Vec<ArrayViewD<f32>> = self.inputs.iter().map(|a| a.view()).collect();
        eval_op(&self.op, &views, &self.out_shape).expect("the layer evaluates")
    }
}

fn layers() -> Vec<Layer> {
    vec![
        Layer {
            name: "resnet18_conv3x3_64x64_56x56",
            op: Op::Conv { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1 },
            inputs: vec![tensor(&[1, 64, 56, 56], 1), tensor(&[64, 64, 3, 3], 2), tensor(&[64], 3)],
            out_shape: vec![1, 64, 56, 56],
            macs: 64 * 64 * 9 * 56 * 56,
        },
        Layer {
            name: "vit_tiny_matmul_197x192x768",
            op: Op::MatMul,
            inputs: vec![tensor(&[1, 197, 192], 4), tensor(&[192, 768], 5)],
            out_shape: vec![1, 197, 768],
            macs: 197 * 192 * 768,
        },
    ]
}

fn ann_layers(c: &mut Criterion) {
    let layers = layers();
    let mut group = c.benchmark_group("ann_layers");
    group.sample_size(20);
    for layer in &layers {
        group.throughput(Throughput::Elements(2 * layer.macs));
        group.bench_function(layer.name, |b| b.iter(|| layer.run()));
    }
    group.finish();
    for layer in &layers {
        layer.run();
        let started = Instant::now();
        let mut runs = 0u32;
        while runs < 10 || started.elapsed().as_secs_f64() < 1.0 {
            layer.run();
            runs += 1;
        }
        let seconds = started.elapsed().as_secs_f64() / f64::from(runs);
        let flops = 2.0 * layer.macs as f64 / seconds;
        println!(
            "{}: {:.3} ms, {:.1} GFLOP/s = {:.0}% of one core's peak ({:.0} GFLOP/s)",
            layer.name,
            seconds * 1e3,
            flops / 1e9,
            100.0 * flops / PEAK_FLOPS_PER_CORE,
            PEAK_FLOPS_PER_CORE / 1e9
        );
    }
}

criterion_group!(benches, ann_layers);
criterion_main!(benches);
