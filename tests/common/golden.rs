//! Replays a golden trace of the reference implementation against a network and compares every
//! recorded quantity.
#![allow(dead_code)] // each test binary uses a different part of this module

use serde_json::Value;
use signgd::engine::{Observer, SimConfig, Simulator};
use signgd::snn::Network;

/// Tolerance of every comparison, in float64.
pub const TOLERANCE: f64 = 1e-12;

/// A parsed golden case.
pub struct GoldenCase {
    pub name: String,
    pub json: Value,
}

impl GoldenCase {
    pub fn load(name: &str) -> GoldenCase {
        let path = format!("{}/fixtures/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        GoldenCase { name: name.to_string(), json: serde_json::from_str(&text).unwrap() }
    }

    pub fn steps(&self) -> usize {
        self.json["T"].as_u64().unwrap() as usize
    }

    pub fn input(&self) -> Vec<f64> {
        floats(&self.json["input"])
    }

    pub fn param(&self, name: &str) -> Vec<f64> {
        flatten(&self.json["params"][name])
    }

    /// Populations in the trace's order.
    pub fn populations(&self) -> Vec<&Value> {
        let neurons = self.json["neurons"].as_object().unwrap();
        neurons.values().collect()
    }
}

pub fn floats(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

pub fn flatten(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

/// Per-operand lists: a two-operand population stores a list of lists.
fn operand_lists(value: &Value, operands: usize) -> Vec<Vec<f64>> {
    if operands == 1 {
        vec![floats(value)]
    } else {
        value.as_array().unwrap().iter().map(floats).collect()
    }
}

/// Compares `ours` with `golden`, broadcasting a golden list of length 1.
pub fn assert_close(what: &str, ours: &[f64], golden: &[f64]) {
    if golden.len() == 1 {
        for (i, a) in ours.iter().enumerate() {
            assert!((a - golden[0]).abs() <= TOLERANCE, "{what}[{i}]: ours {a}, golden {}", golden[0]);
        }
        return;
    }
    assert_eq!(ours.len(), golden.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(golden).enumerate() {
        assert!((a - b).abs() <= TOLERANCE, "{what}[{i}]: ours {a}, golden {b}, diff {}", (a - b).abs());
    }
}

/// One population's state after a step: operand estimates, spikes (0/1), output estimates.
type StepRecord = (Vec<Vec<f64>>, Vec<f64>, Vec<f64>);

#[derive(Default)]
struct Recorder {
    encoder: Vec<(Vec<f64>, Vec<f64>)>,
    populations: Vec<Vec<StepRecord>>,
    readout: Vec<Vec<f64>>,
}

impl Observer<f64> for Recorder {
    fn encoder(&mut self, _t: usize, emitted: &[f64], estimate: &[f64]) {
        self.encoder.push((emitted.to_vec(), estimate.to_vec()));
    }
    fn population(&mut self, t: usize, index: usize, operands: &[Vec<f64>], fired: &[u32], v: &[f64]) {
        if self.populations.len() <= index {
            self.populations.resize(index + 1, Vec::new());
        }
        let mut spikes = vec![0.0; v.len()];
        fired.iter().for_each(|&i| spikes[i as usize] = 1.0);
        assert_eq!(self.populations[index].len(), t - 1);
        self.populations[index].push((operands.to_vec(), spikes, v.to_vec()));
    }
    fn readout(&mut self, _t: usize, y: &[f64]) {
        self.readout.push(y.to_vec());
    }
}

/// Simulates `network` on the case's input with the reference settings and checks the encoder,
/// every population's static offsets and per-step x_hat, spikes and v, and the decoded output.
pub fn replay(case: &GoldenCase, network: &Network) {
    let steps = case.steps();
    let simulator = Simulator::<f64>::new(network, &SimConfig::reference(vec![steps])).unwrap();
    let mut workspace = simulator.workspace();
    let mut outputs = vec![0.0; network.output_size()];
    let mut recorder = Recorder::default();
    simulator.run(&mut workspace, &case.input(), &mut outputs, &mut recorder).unwrap();

    let name = &case.name;
    let decoder = &case.json["decoder"];
    assert_close(
        &format!("{name} decoder offset"),
        &network.operand_offset(&network.readout, &network.unit_outputs()),
        &floats(&decoder["offset"]),
    );
    assert_close(&format!("{name} decoder bias"), &network.readout.bias.to_vec(), &floats(&decoder["bias(y_init)"]));

    let encoder = case.json["encoder"].as_array().unwrap();
    assert_eq!(encoder.len(), steps);
    for (t, record) in encoder.iter().enumerate() {
        let (emitted, estimate) = &recorder.encoder[t];
        assert_close(&format!("{name} encoder spike t={}", t + 1), emitted, &floats(&record["enc_spike"]));
        assert_close(&format!("{name} encoder estimate t={}", t + 1), estimate, &floats(&record["enc_f"]));
    }

    // Relays are not neurons: the reference computes their values inside its affine layers.
    let populations = case.populations();
    let neurons: Vec<(usize, &signgd::snn::Population)> =
        network.populations.iter().enumerate().filter(|(_, p)| !p.kind.is_relay()).collect();
    assert_eq!(populations.len(), neurons.len(), "{name}: population count");
    for (golden, &(p, ours)) in populations.iter().zip(&neurons) {
        let operands = ours.operands.len();
        let statics = &golden["static"];
        for (j, (offset, bias)) in operand_lists(&statics["offset"], operands)
            .iter()
            .zip(operand_lists(&statics["x_init(bias)"], operands))
            .enumerate()
        {
            let offset_ours = network.operand_offset(&ours.operands[j], &network.unit_outputs());
            assert_close(&format!("{name} pop {p} operand {j} offset"), &offset_ours, offset);
            assert_close(&format!("{name} pop {p} operand {j} bias"), &ours.operands[j].bias.to_vec(), &bias);
        }
        let golden_steps = golden["steps"].as_array().unwrap();
        assert_eq!(golden_steps.len(), steps);
        for (t, record) in golden_steps.iter().enumerate() {
            let (x, spikes, v) = &recorder.populations[p][t];
            let at = format!("{name} pop {p} t={}", t + 1);
            for (j, golden_x) in operand_lists(&record["x_hat"], operands).iter().enumerate() {
                assert_close(&format!("{at} x_hat operand {j}"), &x[j], golden_x);
            }
            assert_eq!(spikes, &floats(&record["spike"]), "{at}: spikes differ");
            assert_close(&format!("{at} v"), v, &floats(&record["v"]));
        }
    }

    let golden_outputs = case.json["snn_output_per_t"].as_array().unwrap();
    for (t, golden_y) in golden_outputs.iter().enumerate() {
        assert_close(&format!("{name} y t={}", t + 1), &recorder.readout[t], &floats(golden_y));
    }
    assert_close(&format!("{name} final output"), &outputs, &floats(&golden_outputs[steps - 1]));
}
