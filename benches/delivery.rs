//! Synaptic events delivered per second by the event-delivery kernels, at spike density 0.5:
//! a fully connected 1024×1024 linear block and a 3×3 convolution block (32→32 channels, 32×32).
//! `engine_tiles` is the engine's register-tiled kernel; `generic_scatter` the plain scatter of
//! `SynapseBlock::deliver_events`, one event at a time.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use signgd::engine::{ColumnTiles, TileScratch};
use signgd::snn::{ConvBlock, SynapseBlock};
use sprs::TriMat;

/// Deterministic pseudo-random spike list at density 0.5.
fn half_of(n: usize) -> Vec<u32> {
    (0..n as u32).filter(|j| (j.wrapping_mul(2654435761) >> 7) & 1 == 1).collect()
}

fn linear_block(n: usize) -> SynapseBlock<f32> {
    rectangular_block(n, n)
}

fn conv_block() -> SynapseBlock<f32> {
    SynapseBlock::Conv(ConvBlock::new(
        (0..32 * 32 * 9).map(|i| ((i * 13) % 29) as f32 / 29.0 - 0.5).collect(),
        [32, 32, 32],
        [32, 32, 32],
        [3, 3],
        [1, 1],
        [1, 1],
        [1, 1],
        1,
    ))
}

fn bench_block(c: &mut Criterion, name: &str, block: SynapseBlock<f32>) {
    let fired = half_of(block.sources());
    let fan_out = block.fan_out();
    let events: u64 = fired.iter().map(|&j| fan_out[j as usize] as u64).sum();
    let mut acc = vec![0.0f32; block.targets()];
    let mut group = c.benchmark_group("event_delivery");
    group.throughput(Throughput::Elements(events));
    group.bench_function(format!("generic_scatter/{name}"), |b| {
        b.iter(|| {
            acc.fill(0.0);
            block.deliver_events(black_box(&fired), &mut acc);
            black_box(&acc);
        })
    });
    if let SynapseBlock::Sparse { matrix } = &block {
        let tiles = ColumnTiles::new(matrix);
        let mut scratch = TileScratch::default();
        group.bench_function(format!("engine_tiles/{name}"), |b| {
            b.iter(|| {
                acc.fill(0.0);
                tiles.add_spikes(black_box(&fired), &mut scratch, &mut acc);
                black_box(&acc);
            })
        });
    }
    group.finish();
}

/// The tile kernel on blocks of 256 targets and a growing number of sources: time should grow
/// in proportion to the synapses (events per second constant).
fn synapse_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("synapse_scaling");
    for sources in [256, 512, 1024, 2048] {
        let SynapseBlock::Sparse { matrix } = rectangular_block(256, sources) else { unreachable!() };
        let tiles = ColumnTiles::new(&matrix);
        let fired = half_of(sources);
        let mut scratch = TileScratch::default();
        let mut acc = vec![0.0f32; 256];
        group.throughput(Throughput::Elements(fired.len() as u64 * 256));
        group.bench_function(format!("engine_tiles/256x{sources}"), |b| {
            b.iter(|| {
                acc.fill(0.0);
                tiles.add_spikes(black_box(&fired), &mut scratch, &mut acc);
                black_box(&acc);
            })
        });
    }
    group.finish();
}

fn rectangular_block(targets: usize, sources: usize) -> SynapseBlock<f32> {
    let mut tri = TriMat::new((targets, sources));
    for c in 0..sources {
        for r in 0..targets {
            tri.add_triplet(r, c, ((r * 31 + c * 17) % 97) as f32 / 97.0 - 0.5);
        }
    }
    SynapseBlock::Sparse { matrix: tri.to_csc() }
}

fn delivery(c: &mut Criterion) {
    bench_block(c, "linear_1024x1024_density_0.5", linear_block(1024));
    bench_block(c, "conv3x3_32x32x32_density_0.5", conv_block());
}

criterion_group!(benches, delivery, synapse_scaling);
criterion_main!(benches);
