//! Multiply-accumulates per second of the batched convolution kernel at real size, on spikes at
//! density 0.5: ResNet-18's 3×3 64→64 block at 56×56 (8 inputs together, as a worker runs
//! 224×224 inputs) and its 3×3 512→512 block at 7×7 and at 1×1 (32 inputs together; the 1×1 map
//! is the last stage of ResNet-18 at 32×32). The machine's float32 accumulate peak is about
//! 8.5 × 10¹⁰ per second per core on the AMD EPYC (Zen 5) the README's figures come from.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use signgd::engine::BatchConv;
use signgd::snn::ConvBlock;

/// A 3×3, stride 1, padding 1 convolution with deterministic weights.
fn conv3x3(channels_in: usize, channels_out: usize, size: usize) -> ConvBlock<f32> {
    ConvBlock::new(
        (0..channels_out * channels_in * 9).map(|i| ((i * 13) % 29) as f32 / 29.0 - 0.5).collect(),
        [channels_in, size, size],
        [channels_out, size, size],
        [3, 3],
        [1, 1],
        [1, 1],
        [1, 1],
        1,
    )
}

/// Deterministic pseudo-random spike list at density 0.5, different per input.
fn half_of(n: usize, input: usize) -> Vec<u32> {
    (0..n as u32).filter(|j| (j.wrapping_add(input as u32 * 7919).wrapping_mul(2654435761) >> 7) & 1 == 1).collect()
}

fn bench_batched(c: &mut Criterion, name: &str, conv: ConvBlock<f32>, lanes: usize) {
    let kernel = BatchConv::prepare(&conv).expect("a plain convolution");
    let sources: usize = conv.in_shape.iter().product();
    let fired: Vec<Vec<u32>> = (0..lanes).map(|b| half_of(sources, b)).collect();
    let mut spread = vec![0.0f32; kernel.spread_len(lanes)];
    let mut product = vec![0.0f32; conv.out_shape.iter().product::<usize>() * lanes];
    kernel.spread(lanes, |b| &fired[b], &mut spread);
    let macs = kernel.product(lanes, &spread, &mut product);
    let mut group = c.benchmark_group("batched_conv");
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
    bench_batched(c, "resnet18_3x3_64_56x56_8_inputs", conv3x3(64, 64, 56), 8);
    bench_batched(c, "resnet18_3x3_512_7x7_32_inputs", conv3x3(512, 512, 7), 32);
    bench_batched(c, "resnet18_3x3_512_1x1_32_inputs", conv3x3(512, 512, 1), 32);
}

criterion_group!(benches, kernels);
criterion_main!(benches);
