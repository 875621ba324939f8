//! Multiply-accumulates per second of the batched depthwise convolution kernel at real size, on
//! spikes at density 0.5: ConvNeXt-T's depthwise 7×7 (padding 3) on 96 channels at 56×56, with 5
//! inputs together (as many as a worker holds for ConvNeXt-T at 224×224 within its state budget)
//! and with 32 (the most a worker simulates together). The machine's float32 accumulate peak is
//! about 8.5 × 10¹⁰ per second per core on the AMD EPYC (Zen 5) the README's figures come from; on
//! an AVX2 machine without AVX-512 (Zen 3 at 2.45 GHz), about 3.9 × 10¹⁰. On a machine shared with
//! other work, time is the thread's time on the CPU (from `/proc/thread-self/schedstat` where the
//! system has it), so that waiting for the core does not count.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use signgd::engine::{BatchDepthwise, BatchKernel};
use signgd::snn::ConvBlock;

/// A 7×7, stride 1, padding 3 depthwise convolution with deterministic weights.
fn depthwise7x7(channels: usize, size: usize) -> ConvBlock<f32> {
    ConvBlock::new(
        (0..channels * 49).map(|i| ((i * 13) % 29) as f32 / 29.0 - 0.5).collect(),
        [channels, size, size],
        [channels, size, size],
        [7, 7],
        [1, 1],
        [3, 3],
        [1, 1],
        channels,
    )
}

/// Deterministic pseudo-random spike list at density 0.5, different per input.
fn half_of(n: usize, input: usize) -> Vec<u32> {
    (0..n as u32).filter(|j| (j.wrapping_add(input as u32 * 7919).wrapping_mul(2654435761) >> 7) & 1 == 1).collect()
}

/// Nanoseconds this thread has run on a CPU, if the system tells.
fn cpu_nanos() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// The time `iters` calls of `f` take: on the CPU where the system tells, else on the clock.
fn timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let (cpu, clock) = (cpu_nanos(), Instant::now());
    for _ in 0..iters {
        f();
    }
    match (cpu, cpu_nanos()) {
        (Some(start), Some(end)) => Duration::from_nanos(end - start),
        _ => clock.elapsed(),
    }
}

fn bench_depthwise(c: &mut Criterion, name: &str, conv: ConvBlock<f32>, lanes: usize) {
    let kernel = BatchDepthwise::prepare(&conv).expect("a depthwise convolution");
    let sources: usize = conv.in_shape.iter().product();
    let fired: Vec<Vec<u32>> = (0..lanes).map(|b| half_of(sources, b)).collect();
    let fired: Vec<&[u32]> = fired.iter().map(Vec::as_slice).collect();
    let mut spread = vec![0.0f32; kernel.spread_len(lanes)];
    let mut product = vec![0.0f32; conv.out_shape.iter().product::<usize>() * lanes];
    let mut products = product.clone();
    let mut scratch = Vec::new();
    kernel.spread(&fired, &mut spread);
    let macs = kernel.product(lanes, &spread, &mut product);
    let mut group = c.benchmark_group("batched_depthwise");
    group.throughput(Throughput::Elements(macs));
    group.bench_function(format!("product/{name}"), |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                black_box(kernel.product(lanes, black_box(&spread), &mut product));
            })
        })
    });
    group.bench_function(format!("spread_product_write_out/{name}"), |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                kernel.spread_spikes(&fired, &mut spread);
                black_box(kernel.products(lanes, &spread, &mut scratch, &mut products));
            })
        })
    });
    group.finish();
}

fn kernels(c: &mut Criterion) {
    bench_depthwise(c, "convnext_tiny_7x7_96_56x56_5_inputs", depthwise7x7(96, 56), 5);
    bench_depthwise(c, "convnext_tiny_7x7_96_56x56_32_inputs", depthwise7x7(96, 56), 32);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = kernels
}
criterion_main!(benches);
