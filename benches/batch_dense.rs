//! Multiply-accumulates per second of the batched dense kernel at real size: ViT-Tiny's per-token
//! 192→768 layer (the first of its MLP) over 197 tokens, spikes at density 0.5, for one input (a
//! worker simulates one ViT-Tiny input at a time: its 185 M neurons take 843 MiB of state per
//! input, and a batch holds at most 1 GiB) and for two. A product computes every term of every
//! token, so its multiply-accumulates are twice the synaptic events at density 0.5. The machine's
//! float32 accumulate peak is about 8.5 × 10¹⁰ per second per core (AVX-512, Zen 5); on an AVX2
//! machine without AVX-512 (Zen 3 at 2.45 GHz), about 3.9 × 10¹⁰.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ndarray::{ArcArray, IxDyn};
use signgd::engine::BatchDense;
use signgd::snn::{DenseBlock, Matrix, Weights};

/// A per-token `inputs → outputs` layer over `tokens` tokens, its float32 matrix stored
/// `[input][output]` as an ONNX MatMul stores it.
fn per_token(tokens: usize, inputs: usize, outputs: usize) -> DenseBlock {
    let values: Vec<f32> = (0..inputs * outputs).map(|i| ((i * 13) % 29) as f32 / 29.0 - 0.5).collect();
    let weights = Weights::F32(ArcArray::from_shape_vec(IxDyn(&[values.len()]), values).expect("one axis"));
    DenseBlock::new(tokens, inputs, outputs, 1, Matrix { weights, offset: 0, output_stride: 1, input_stride: outputs })
}

/// Deterministic pseudo-random spike list at density 0.5, different per input.
fn half_of(n: usize, input: usize) -> Vec<u32> {
    (0..n as u32).filter(|j| (j.wrapping_add(input as u32 * 7919).wrapping_mul(2654435761) >> 7) & 1 == 1).collect()
}

fn bench_batched(c: &mut Criterion, name: &str, dense: DenseBlock, lanes: usize) {
    let kernel = BatchDense::<f32>::prepare(&dense).expect("a dense block the batched kernel computes");
    let fired: Vec<Vec<u32>> = (0..lanes).map(|b| half_of(dense.sources, b)).collect();
    let mut spread = vec![0.0f32; kernel.spread_len(lanes)];
    let mut product = vec![0.0f32; dense.logical_targets() * lanes];
    kernel.spread(lanes, |b| &fired[b], &mut spread);
    let macs = kernel.product(lanes, &spread, &mut product);
    let events: usize = fired.iter().map(|f| f.len() * dense.outputs).sum();
    println!("{name}: {macs} multiply-accumulates per product, {events} synaptic events");
    let mut group = c.benchmark_group("batched_dense");
    group.throughput(Throughput::Elements(macs));
    group.bench_function(format!("product/{name}"), |b| {
        b.iter(|| black_box(kernel.product(lanes, black_box(&spread), &mut product)))
    });
    group.bench_function(format!("spread_and_product/{name}"), |b| {
        b.iter(|| {
            kernel.spread(lanes, |b| &fired[b], &mut spread);
            black_box(kernel.product(lanes, &spread, &mut product))
        })
    });
    group.finish();
}

fn kernels(c: &mut Criterion) {
    bench_batched(c, "vit_tiny_192x768_197_tokens_1_input", per_token(197, 192, 768), 1);
    bench_batched(c, "vit_tiny_192x768_197_tokens_2_inputs", per_token(197, 192, 768), 2);
}

criterion_group!(benches, kernels);
criterion_main!(benches);
