//! The engine's building blocks: synapse blocks against dense arithmetic, schedules, encoders,
//! checkpoints, the IF baseline's dynamics, and refusal of malformed networks.

use signgd::engine::{Dynamics, SimConfig, Simulator};
use signgd::snn::{
    ConvBlock, EncoderKind, Network, NetworkError, NeuronKind, Operand, Population, Scale, Schedule, Source,
    SynapseBlock,
};
use sprs::TriMat;

/// Direct (dense loop) 2-D convolution of a [C,H,W] input, no bias.
fn dense_conv(conv: &ConvBlock, input: &[f64]) -> Vec<f64> {
    let [ci, h, w] = conv.in_shape;
    let [co, oh, ow] = conv.out_shape;
    let [kh, kw] = conv.kernel_size;
    let (ipg, opg) = (ci / conv.groups, co / conv.groups);
    let mut out = vec![0.0; co * oh * ow];
    for o in 0..co {
        let g = o / opg;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut sum = 0.0;
                for c in 0..ipg {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let y = (oy * conv.strides[0] + ky * conv.dilations[0]) as isize - conv.pads[0] as isize;
                            let x = (ox * conv.strides[1] + kx * conv.dilations[1]) as isize - conv.pads[1] as isize;
                            if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                                continue;
                            }
                            let input_index = ((g * ipg + c) * h + y as usize) * w + x as usize;
                            sum += conv.kernel[((o * ipg + c) * kh + ky) * kw + kx] * input[input_index];
                        }
                    }
                }
                out[(o * oh + oy) * ow + ox] = sum;
            }
        }
    }
    out
}

fn conv(
    in_shape: [usize; 3],
    out_c: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    groups: usize,
) -> ConvBlock {
    let [ci, h, w] = in_shape;
    let out = |n: usize| (n + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
    let kernel = (0..out_c * (ci / groups) * k * k).map(|i| ((i * 7919) % 23) as f64 / 11.0 - 1.0).collect();
    ConvBlock::new(
        kernel,
        in_shape,
        [out_c, out(h), out(w)],
        [k, k],
        [stride, stride],
        [pad, pad],
        [dilation, dilation],
        groups,
    )
}

#[test]
fn conv_block_matches_dense_convolution() {
    let cases = [
        conv([3, 8, 8], 4, 3, 1, 1, 1, 1),
        conv([4, 9, 7], 6, 3, 2, 1, 1, 2),
        conv([6, 7, 7], 6, 7, 1, 3, 1, 6),   // depthwise 7×7
        conv([2, 10, 10], 2, 3, 1, 2, 2, 1), // dilated
        conv([1, 28, 28], 8, 4, 4, 0, 1, 1), // patchify stem
    ];
    for block in cases {
        let n: usize = block.in_shape.iter().product();
        let input: Vec<f64> = (0..n).map(|i| ((i * 31) % 17) as f64 / 8.0 - 1.0).collect();
        let expected = dense_conv(&block, &input);
        let synapses = SynapseBlock::Conv(block.clone());
        synapses.validate().unwrap();
        let mut dense = vec![0.0; synapses.targets()];
        synapses.multiply_add(&input, &mut dense);
        // Binary events: the spiking sources are those with a positive input.
        let fired: Vec<u32> = (0..n as u32).filter(|&j| input[j as usize] > 0.0).collect();
        let binary: Vec<f64> = input.iter().map(|&x| if x > 0.0 { 1.0 } else { 0.0 }).collect();
        let mut events = vec![0.0; synapses.targets()];
        synapses.deliver_events(&fired, &mut events);
        let expected_events = dense_conv(&block, &binary);
        for i in 0..expected.len() {
            assert!((dense[i] - expected[i]).abs() < 1e-12, "{:?} {i}", block.in_shape);
            assert!((events[i] - expected_events[i]).abs() < 1e-12);
        }
        // Fan-out counts every synapse once: their sum is the number of (input, output, tap)
        // triples that meet.
        let total: u64 = synapses.fan_out().iter().map(|&f| f as u64).sum();
        let ones = vec![1.0; n];
        let mut count_block = block.clone();
        count_block.kernel.iter_mut().for_each(|k| *k = 1.0);
        let expected_total: f64 = dense_conv(&count_block, &ones).iter().sum();
        assert_eq!(total, expected_total as u64);
        // Memory is the kernel, not the connections.
        assert_eq!(synapses.stored_weights(), block.kernel.len());
    }
}

fn sparse(rows: usize, cols: usize, entries: &[(usize, usize, f64)]) -> SynapseBlock {
    let mut tri = TriMat::new((rows, cols));
    for &(r, c, w) in entries {
        tri.add_triplet(r, c, w);
    }
    SynapseBlock::Sparse { matrix: tri.to_csc() }
}

#[test]
fn offsets_come_from_the_blocks() {
    let operand = Operand::new(vec![0.5, -1.0])
        .with(Source::Input, sparse(2, 3, &[(0, 0, 1.0), (0, 2, 2.0), (1, 1, -3.0)]))
        .with(Source::Input, SynapseBlock::Diagonal { scale: vec![0.25, 0.75] }.clone_resized());
    assert_eq!(operand.response_to_ones(), vec![3.0 + 0.25, -3.0 + 0.75]);
    assert_eq!(operand.offset(), vec![3.25 + 1.0, -2.25 - 2.0]);
}

trait Resize {
    fn clone_resized(self) -> SynapseBlock;
}
impl Resize for SynapseBlock {
    /// A 2→2 diagonal block used as a 3→2 map for the offset test: pad with a zero column.
    fn clone_resized(self) -> SynapseBlock {
        match self {
            SynapseBlock::Diagonal { scale } => sparse(2, 3, &[(0, 0, scale[0]), (1, 1, scale[1])]),
            other => other,
        }
    }
}

#[test]
fn schedules() {
    let exp = Schedule::default().steps(4).unwrap();
    assert_eq!(exp, vec![0.15, 0.15 * 0.95, 0.15 * 0.95 * 0.95, 0.15 * 0.95 * 0.95 * 0.95]);
    assert_eq!(Schedule::Inverse { eta0: 0.5 }.steps(3).unwrap(), vec![0.5, 0.25, 0.5 / 3.0]);
    assert_eq!(Schedule::Constant { eta0: 0.1 }.steps(2).unwrap(), vec![0.1, 0.1]);
    assert_eq!(Schedule::IfMethod.steps(3).unwrap(), vec![0.5, 1.0 / 3.0, 0.25]);
    assert_eq!(Schedule::parse("exp:0.15:0.95").unwrap(), Schedule::default());
    assert_eq!(Schedule::parse("inverse:0.3").unwrap(), Schedule::Inverse { eta0: 0.3 });
    let sum: f64 = Schedule::default().steps(2000).unwrap().iter().sum();
    assert!((sum - 3.0).abs() < 1e-9, "Σ η = η0/(1−γ) = 3");
    for bad in ["exp:0.15", "exp:-1:0.9", "exp:0.1:1.5", "constant:x", "linear:0.1", "inverse:0"] {
        let error = Schedule::parse(bad).unwrap_err();
        assert!(matches!(error, NetworkError::Schedule(_)), "{bad}: {error}");
    }
    let empty = Schedule::Table { values: vec![] };
    assert!(empty.validate().unwrap_err().to_string().contains("empty"));
    let short = Schedule::Table { values: vec![0.1; 10] };
    assert!(short.steps(11).unwrap_err().to_string().contains("defines only 10"));
}

/// One neuron of `kind` reading the input through a unit diagonal, read out unchanged.
fn single(kind: NeuronKind, inputs: usize) -> Network {
    let operands = (0..kind.arity())
        .map(|_| {
            Operand::new(vec![0.0; inputs]).with(Source::Input, SynapseBlock::Diagonal { scale: vec![1.0; inputs] })
        })
        .collect();
    Network {
        input_shape: vec![inputs],
        populations: vec![Population { name: "p".into(), kind, shape: vec![inputs], operands }],
        readout: Operand::new(vec![0.0; inputs])
            .with(Source::Population(0), SynapseBlock::Diagonal { scale: vec![1.0; inputs] }),
        output_shape: vec![inputs],
    }
}

fn run(network: &Network, config: &SimConfig, input: &[f64]) -> Vec<f64> {
    let simulator = Simulator::<f64>::new(network, config).unwrap();
    let mut workspace = simulator.workspace();
    let mut outputs = vec![0.0; simulator.checkpoints().len() * network.output_size()];
    simulator.run(&mut workspace, input, &mut outputs, &mut ()).unwrap();
    outputs
}

#[test]
fn encoders() {
    let net = single(NeuronKind::Relu, 3);
    let input = [0.2, 0.7, -0.4];
    let mut observed = Vec::new();
    struct Capture<'a>(&'a mut Vec<Vec<f64>>);
    impl signgd::engine::Observer<f64> for Capture<'_> {
        fn encoder(&mut self, _t: usize, _u: &[f64], e: &[f64]) {
            self.0.push(e.to_vec());
        }
    }
    for encoder in [EncoderKind::Float, EncoderKind::Spike, EncoderKind::Exact] {
        observed.clear();
        let config = SimConfig { encoder, ..SimConfig::reference(vec![64]) };
        let simulator = Simulator::<f64>::new(&net, &config).unwrap();
        let mut ws = simulator.workspace();
        let mut out = vec![0.0; 3];
        simulator.run(&mut ws, &input, &mut out, &mut Capture(&mut observed)).unwrap();
        let etas = Schedule::default().steps(64).unwrap();
        match encoder {
            EncoderKind::Float => {
                // Closed form e_t = x (1 − Π(1 − η_i)).
                let gain = 1.0 - etas.iter().map(|e| 1.0 - e).product::<f64>();
                for (e, x) in observed[63].iter().zip(input) {
                    assert!((e - x * gain).abs() < 1e-12);
                }
            }
            EncoderKind::Spike => {
                // A binary signGD estimate: within the last step size of the input.
                for (e, x) in observed[63].iter().zip(input) {
                    assert!((e - x).abs() <= 2.0 * etas[63] + 1e-12, "{e} {x}");
                }
            }
            _ => {
                for t in [0, 1, 63] {
                    assert_eq!(observed[t], input.to_vec(), "exact from the first step");
                }
            }
        }
    }
}

#[test]
fn checkpoints_read_the_decoder_during_one_run() {
    let net = single(NeuronKind::Square, 2);
    let input = [0.3, -0.6];
    let all = run(&net, &SimConfig::reference(vec![8, 16, 32]), &input);
    for (k, steps) in [8, 16, 32].into_iter().enumerate() {
        let alone = run(&net, &SimConfig::reference(vec![steps]), &input);
        assert_eq!(&all[k * 2..k * 2 + 2], alone.as_slice());
    }
    // Unsorted and repeated checkpoints are sorted and deduplicated.
    let simulator = Simulator::<f64>::new(&net, &SimConfig::reference(vec![16, 8, 16])).unwrap();
    assert_eq!(simulator.checkpoints(), &[8, 16]);
    assert_eq!(simulator.steps(), 16);
}

#[test]
fn signgd_converges_towards_the_function() {
    for (kind, x, expected) in [
        (NeuronKind::Square, 0.8, 0.64),
        (NeuronKind::Exp, -0.5, (-0.5f64).exp()),
        (NeuronKind::Abs, -0.7, 0.7),
        (NeuronKind::Relu, 0.45, 0.45),
    ] {
        let net = single(kind, 1);
        let config = SimConfig { encoder: EncoderKind::Exact, ..SimConfig::reference(vec![256]) };
        let y = run(&net, &config, &[x])[0];
        assert!((y - expected).abs() < 0.02, "{kind:?}: {y} vs {expected}");
    }
}

#[test]
fn integrate_and_fire_baseline_is_a_running_average() {
    // x_t = c + A Σu/(t+1): with u constant the estimate is c + A u t/(t+1); the rate-coded
    // ReLU neuron's output approaches clip(x, 0, 1).
    let net = single(NeuronKind::Relu, 3);
    let input = [0.3, -0.2, 1.5];
    let y = run(&net, &SimConfig::integrate_and_fire(vec![1000]), &input);
    assert!((y[0] - 0.3).abs() < 0.005, "{y:?}");
    assert!(y[1].abs() < 0.005);
    assert!((y[2] - 1.0).abs() < 0.005, "saturates at 1");
    // Non-ReLU populations are refused by name.
    let error = Simulator::<f64>::new(&single(NeuronKind::Square, 1), &SimConfig::integrate_and_fire(vec![8]))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("ReLU") && error.contains("`p` (square)"), "{error}");
    assert_eq!(SimConfig::integrate_and_fire(vec![1]).dynamics, Dynamics::Subgradient);
}

#[test]
fn float32_and_float64_run_the_same_code() {
    let net = single(NeuronKind::Gelu { target: signgd::snn::GeluTarget::Sigmoid }, 4);
    let input = [-1.0, -0.25, 0.5, 2.0];
    let config = SimConfig::reference(vec![32, 128]);
    let wide = run(&net, &config, &input);
    let simulator = Simulator::<f32>::new(&net, &config).unwrap();
    let mut ws = simulator.workspace();
    let mut narrow = vec![0.0f32; 8];
    let input32: Vec<f32> = input.iter().map(|&x| x as f32).collect();
    simulator.run(&mut ws, &input32, &mut narrow, &mut ()).unwrap();
    for (a, b) in wide.iter().zip(&narrow) {
        assert!((a - *b as f64).abs() < 1e-4, "{a} {b}");
    }
}

fn expect_error(network: &Network, needle: &str) {
    let error = Simulator::<f64>::new(network, &SimConfig::reference(vec![4])).err().expect("refused").to_string();
    assert!(error.contains(needle), "`{error}` should mention `{needle}`");
}

#[test]
fn malformed_networks_are_refused() {
    let good = single(NeuronKind::Max, 2);
    Simulator::<f64>::new(&good, &SimConfig::reference(vec![4])).unwrap();

    let mut wrong_arity = good.clone();
    wrong_arity.populations[0].operands.pop();
    expect_error(&wrong_arity, "a max neuron takes 2 operand(s), the population has 1");

    let mut unary_with_two = single(NeuronKind::Relu, 2);
    let extra = unary_with_two.populations[0].operands[0].clone();
    unary_with_two.populations[0].operands.push(extra);
    expect_error(&unary_with_two, "a relu neuron takes 1 operand(s), the population has 2");

    let mut wrong_block = good.clone();
    wrong_block.populations[0].operands[0].projections[0].block = SynapseBlock::Diagonal { scale: vec![1.0; 3] };
    expect_error(&wrong_block, "maps 3 sources to 3 targets, but the input has 2 elements and the operand 2");

    let mut wrong_bias = good.clone();
    wrong_bias.populations[0].operands[1].bias = vec![0.0; 5].into();
    expect_error(&wrong_bias, "operand 2 has 5 constants for 2 neurons");

    let mut forward_reference = good.clone();
    forward_reference.populations[0].operands[0].projections[0].source = Source::Population(0);
    expect_error(&forward_reference, "does not come before it");

    let mut missing = good.clone();
    missing.readout.projections[0].source = Source::Population(7);
    expect_error(&missing, "population 7, which does not exist");

    let mut nan = good.clone();
    let mut bias = nan.readout.bias.to_vec();
    bias[1] = f64::NAN;
    nan.readout.bias = bias.into();
    expect_error(&nan, "constant 1 is NaN");

    let mut bad_conv = single(NeuronKind::Relu, 8);
    bad_conv.populations[0].operands[0].projections[0].block =
        SynapseBlock::Conv(ConvBlock { groups: 3, ..conv([2, 2, 2], 2, 1, 1, 0, 1, 1) });
    expect_error(&bad_conv, "3 groups do not divide");

    let empty_schedule = SimConfig { schedule: Schedule::Table { values: vec![] }, ..SimConfig::reference(vec![4]) };
    let error = Simulator::<f64>::new(&good, &empty_schedule).err().unwrap().to_string();
    assert!(error.contains("empty"), "{error}");
    let beyond = SimConfig { schedule: Schedule::Table { values: vec![0.1; 8] }, ..SimConfig::reference(vec![4, 16]) };
    let error = Simulator::<f64>::new(&good, &beyond).err().unwrap().to_string();
    assert!(error.contains("checkpoint 16 lies beyond the 8 steps"), "{error}");
    let none = Simulator::<f64>::new(&good, &SimConfig::reference(vec![])).err().unwrap().to_string();
    assert!(none.contains("no checkpoint"), "{none}");

    let simulator = Simulator::<f64>::new(&good, &SimConfig::reference(vec![4])).unwrap();
    let mut ws = simulator.workspace();
    let error = simulator.run(&mut ws, &[1.0; 3], &mut [0.0; 2], &mut ()).unwrap_err().to_string();
    assert!(error.contains("the input has 3 elements, the network takes 2"), "{error}");
}

#[test]
fn network_round_trips_through_json() {
    let mut net = single(NeuronKind::Division, 2);
    net.populations[0].operands[1].projections[0].block = sparse(2, 2, &[(0, 1, 0.5), (1, 0, 2.0)]);
    let text = serde_json::to_string(&net).unwrap();
    let back: Network = serde_json::from_str(&text).unwrap();
    assert_eq!(net, back);
}

/// The same network with its convolutions as kernels and as explicit sparse matrices: the
/// direct-convolution, row-major and event kernels must give the same outputs.
#[test]
fn convolution_kernels_agree_with_sparse_matrices() {
    // Few output channels per group (direct convolution) and many (rearranged kernel columns).
    for (out_first, out_second) in [(4, 3), (16, 8)] {
        kernels_agree(out_first, out_second);
    }
}

fn kernels_agree(out_first: usize, out_second: usize) {
    use signgd::convert::affine::conv_matrix;
    let mut first = conv([2, 6, 6], out_first, 3, 1, 1, 1, 2);
    first.target_scale = Scale::Each((0..out_first * 36).map(|i| 0.5 + (i % 5) as f64 * 0.25).collect());
    let second = conv([out_first, 6, 6], out_second, 3, 2, 1, 1, 1);
    let build = |as_matrix: bool| {
        let block = |c: &ConvBlock| {
            if as_matrix {
                SynapseBlock::Sparse { matrix: conv_matrix(c).to_csc() }
            } else {
                SynapseBlock::Conv(c.clone())
            }
        };
        let n1: usize = first.out_shape.iter().product();
        let n2: usize = second.out_shape.iter().product();
        Network {
            input_shape: vec![2, 6, 6],
            populations: vec![
                Population {
                    name: "a".into(),
                    kind: NeuronKind::Relu,
                    shape: vec![n1],
                    operands: vec![Operand::new(vec![0.1 * 2f64.sqrt(); n1]).with(Source::Input, block(&first))],
                },
                Population {
                    name: "b".into(),
                    kind: NeuronKind::Gelu { target: signgd::snn::GeluTarget::Sigmoid },
                    shape: vec![n2],
                    operands: vec![
                        Operand::new(vec![-0.05 * 3f64.sqrt(); n2]).with(Source::Population(0), block(&second))
                    ],
                },
            ],
            readout: Operand::new(vec![0.0; 2]).with(
                Source::Population(1),
                sparse(2, n2, &(0..n2).map(|j| (j % 2, j, 0.1 * (j % 7) as f64 - 0.3)).collect::<Vec<_>>()),
            ),
            output_shape: vec![2],
        }
    };
    // Irrational inputs and constants: with rational ones some neurons sit exactly on their
    // spike threshold, where the last bit of a summation order decides.
    let input: Vec<f64> = (0..72).map(|i| 0.5 + 0.5 * (i as f64 * 0.731).sin()).collect();
    for encoder in [EncoderKind::Float, EncoderKind::Spike] {
        // Early steps only: signGD keeps every estimate within a step of its target, so a
        // rounding difference between two summation orders may flip a spike later on.
        let config = SimConfig { encoder, ..SimConfig::reference(vec![1, 2, 3, 4]) };
        let kernels = run(&build(false), &config, &input);
        let matrices = run(&build(true), &config, &input);
        for (a, b) in kernels.iter().zip(&matrices) {
            assert!((a - b).abs() < 1e-9, "{encoder:?}: {kernels:?} vs {matrices:?}");
        }
        assert!(kernels.iter().any(|y| y.abs() > 1e-3), "the network does something");
    }
}
