//! Converts the bundled MLP fixture, simulates one Fashion-MNIST image for 64 steps while an
//! observer counts each population's spikes, and prints the prediction and the counters.
//!
//!     cargo run --release --example spike_counts

use std::path::Path;
use std::sync::Arc;

use signgd::convert::{convert, CalibrationSet, ConvertOptions};
use signgd::data::{open_inputs, InputSource, LoadLimits};
use signgd::engine::{Observer, SimConfig, Simulator};
use signgd::model::read_onnx;

/// Spikes per population, summed over the steps.
struct SpikeCounts(Vec<usize>);

impl Observer<f32> for SpikeCounts {
    fn observes_encoder(&self) -> bool {
        false
    }
    fn population(&mut self, _t: usize, index: usize, _operands: &[Vec<f32>], fired: &[u32], _v: &[f32]) {
        self.0[index] += fired.len();
    }
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let graph = read_onnx(&root.join("models/mlp.onnx"), None)?;
    let images: Arc<dyn InputSource> =
        open_inputs(&root.join("data/fashion-mnist-test-1000-images-idx3-ubyte.gz"), LoadLimits::default())?.into();
    let options = ConvertOptions { calibration: CalibrationSet::new(images.clone()), ..ConvertOptions::default() };
    let network = convert(&graph, &options)?.network;

    let simulator = Simulator::<f32>::new(&network, &SimConfig::reference(vec![64]))?;
    let mut workspace = simulator.workspace();
    let mut pixels = vec![0.0; network.input_size()];
    images.read(0, &mut pixels)?;
    let input: Vec<f32> = pixels.iter().map(|&v| v as f32).collect();
    let mut outputs = vec![0.0; simulator.output_size()];
    let mut spikes = SpikeCounts(vec![0; network.populations.len()]);
    simulator.run(&mut workspace, &input, &mut outputs, &mut spikes)?;

    println!("class at T = 64: {}", signgd::runner::argmax(&outputs));
    for ((population, counts), observed) in
        network.populations.iter().zip(&workspace.counters.populations).zip(&spikes.0)
    {
        println!("{:>24}: {observed} spikes, {} synaptic events", population.name, counts.synaptic_events);
    }
    Ok(())
}
