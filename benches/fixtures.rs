//! One input simulated for 16 steps on every fixture family (float32, reference settings):
//! the per-step cost of whole networks, in synaptic events delivered per second.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};
use signgd::convert::{convert, ConvertOptions};
use signgd::data::{read_inputs, LoadLimits};
use signgd::engine::{SimConfig, Simulator};
use signgd::model::read_onnx;

const STEPS: usize = 16;

fn family(c: &mut Criterion, name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = read_onnx(&root.join(format!("fixtures/models/{name}.onnx")), None).expect("fixture model");
    let data = read_inputs(
        &root.join("fixtures/data/fashion-mnist-test-1000-images-idx3-ubyte.gz"),
        LoadLimits { max_samples: Some(16), ..LoadLimits::default() },
    )
    .expect("fixture data");
    let shape = graph.values[graph.input].shape.clone();
    let calibration: Vec<ArrayD<f64>> =
        (0..data.samples).map(|i| ArrayD::from_shape_vec(IxDyn(&shape), data.sample(i).to_vec()).unwrap()).collect();
    let network = convert(&graph, &ConvertOptions { calibration: calibration.into(), ..ConvertOptions::default() })
        .unwrap()
        .network;
    let simulator = Simulator::<f32>::new(&network, &SimConfig::reference(vec![STEPS])).unwrap();
    let mut workspace = simulator.workspace();
    let input: Vec<f32> = data.sample(0).iter().map(|&x| x as f32).collect();
    let mut outputs = vec![0.0f32; simulator.output_size()];
    simulator.run(&mut workspace, &input, &mut outputs, &mut ()).unwrap();
    let counts = &workspace.counters.at_checkpoints[0];
    let events: u64 = counts.iter().map(|c| c.synaptic_events + c.dense_macs).sum();
    let mut group = c.benchmark_group("fixture_steps");
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.bench_function(format!("{name}_{STEPS}_steps"), |b| {
        b.iter(|| simulator.run(&mut workspace, &input, &mut outputs, &mut ()).unwrap())
    });
    group.finish();
}

fn fixtures(c: &mut Criterion) {
    for name in ["mlp", "vgg", "resnet", "regnetx", "convnext", "mixer", "resmlp", "attention"] {
        family(c, name);
    }
}

criterion_group!(benches, fixtures);
criterion_main!(benches);
