//! Multiply-accumulates per second of the real-valued per-token layers at real size: a relay's
//! values (real, none zero) through ResMLP-S24's channel-mixing 384→1536 layer over its 196
//! tokens, and through its token-mixing 196→196 layer over 384 channels. The machine's float32
//! accumulate peak (a multiply and an add per lane and cycle on each of two pipe pairs) is about
//! 4.2 × 10¹⁰ per second per core on the AMD Zen 4 machine and 8.3 × 10¹⁰ on the Zen 5 one, at
//! the 2.6 GHz base clock.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use signgd::engine::{DenseKernel, StructuredScratch};
use signgd::snn::{DenseBlock, Matrix, Weights};

/// `tokens` tokens through a source-major (`x @ W`) `inputs`→`outputs` matrix of deterministic
/// weights.
fn per_token(tokens: usize, inputs: usize, outputs: usize) -> DenseBlock {
    let weights: Vec<f64> = (0..inputs * outputs).map(|i| ((i * 13) % 29) as f64 / 29.0 - 0.5).collect();
    let matrix = Matrix { weights: Weights::from_f64(weights), offset: 0, output_stride: 1, input_stride: outputs };
    DenseBlock::new(tokens, inputs, outputs, 1, matrix)
}

fn bench_layer(c: &mut Criterion, name: &str, block: DenseBlock) {
    let kernel = DenseKernel::<f32>::prepare(&block);
    let values: Vec<f32> = (0..block.sources).map(|j| ((j * 7919) % 1000) as f32 / 500.0 - 1.0001).collect();
    let mut scratch = StructuredScratch::default();
    let mut acc = vec![0.0f32; block.targets];
    let mut group = c.benchmark_group("relay_tokens");
    group.throughput(Throughput::Elements(block.synapses()));
    group.bench_function(name, |b| b.iter(|| kernel.add(black_box(&values), false, &mut scratch, black_box(&mut acc))));
    group.finish();
}

fn layers(c: &mut Criterion) {
    bench_layer(c, "resmlp_s24_channels_384_to_1536_196_tokens", per_token(196, 384, 1536));
    bench_layer(c, "resmlp_s24_tokens_196_to_196_384_channels", per_token(384, 196, 196));
}

criterion_group!(benches, layers);
criterion_main!(benches);
