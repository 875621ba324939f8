//! Canonicalisation: fuses PyTorch's decomposed GELU, LayerNorm and Softmax into canonical ops.
//!
//! Each fusion rewrites the *last* node of a matched pattern in place (its output value is kept)
//! so the node order stays topological; the now-unused intermediate nodes are removed by
//! [`Graph::retain_live`].

use ndarray::{ArrayD, IxDyn};

use super::graph::{Graph, Op, ValueId};
use super::infer::broadcast;
use super::tensor::Tensor;

const SQRT2: f64 = std::f64::consts::SQRT_2;
const FRAC_1_SQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const TANH_C: f64 = 0.797_884_560_802_865_4; // sqrt(2/pi)

/// Rewrites decomposed patterns into canonical ops (erf and tanh GELU, LayerNorm, Softmax)
/// until none is left; returns the number of fusions. Dead nodes are removed between passes.
pub fn canonicalize(g: &mut Graph) -> usize {
    let mut count = 0;
    loop {
        let before = count;
        for i in 0..g.nodes.len() {
            let fused = match g.nodes[i].op {
                Op::Erf => fuse_gelu_erf(g, i),
                Op::Tanh => fuse_gelu_tanh(g, i),
                Op::ReduceMean { .. } => fuse_layernorm(g, i),
                Op::Exp => fuse_softmax(g, i),
                _ => false,
            };
            if fused {
                count += 1;
            }
        }
        if count == before {
            return count;
        }
        g.retain_live();
    }
}

fn scalar(g: &Graph, v: ValueId) -> Option<f64> {
    let c = g.constant(v)?;
    if c.len() == 1 {
        c.iter_f64().next()
    } else {
        None
    }
}

fn near(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-4 * b.abs().max(1.0))
}

/// The other operand of a two-input node, given one of them.
fn other(g: &Graph, node: usize, v: ValueId) -> Option<ValueId> {
    let ins = &g.nodes[node].inputs;
    if ins.len() != 2 {
        return None;
    }
    if ins[0] == v {
        Some(ins[1])
    } else if ins[1] == v {
        Some(ins[0])
    } else {
        None
    }
}

fn producer_is(g: &Graph, v: ValueId, op: fn(&Op) -> bool) -> Option<usize> {
    g.producer(v).filter(|&p| op(&g.nodes[p].op))
}

/// Consumers of `v` with the given op, as (node index, output value).
fn consumers_with(g: &Graph, v: ValueId, op: fn(&Op) -> bool) -> Vec<(usize, ValueId)> {
    g.consumers(v).into_iter().filter(|&c| op(&g.nodes[c].op)).map(|c| (c, g.nodes[c].output)).collect()
}

fn is_mul(o: &Op) -> bool {
    matches!(o, Op::Mul)
}
fn is_add(o: &Op) -> bool {
    matches!(o, Op::Add)
}

/// Given `a = 1 + f(x)`, finds `0.5 * x * a` in any association and returns its final node.
fn gelu_tail(g: &Graph, x: ValueId, a: ValueId) -> Option<usize> {
    for (c, y1) in consumers_with(g, a, is_mul) {
        let o = other(g, c, a)?;
        if o == x {
            for (c2, _) in consumers_with(g, y1, is_mul) {
                if near(other(g, c2, y1).and_then(|h| scalar(g, h)), 0.5) {
                    return Some(c2);
                }
            }
        } else if let Some(p) = producer_is(g, o, is_mul) {
            if other(g, p, x).is_some_and(|h| near(scalar(g, h), 0.5)) {
                return Some(c);
            }
        } else if near(scalar(g, o), 0.5) {
            for (c2, _) in consumers_with(g, y1, is_mul) {
                if other(g, c2, y1) == Some(x) {
                    return Some(c2);
                }
            }
        }
    }
    None
}

fn replace_with_gelu(g: &mut Graph, last: usize, x: ValueId, tanh: bool) -> bool {
    let out = g.nodes[last].output;
    if g.values[out].shape != g.values[x].shape || g.is_constant(x) {
        return false;
    }
    g.nodes[last].op = Op::Gelu { tanh };
    g.nodes[last].inputs = vec![x];
    true
}

/// Finds `1 + v` among the consumers of `v`.
fn plus_one(g: &Graph, v: ValueId) -> Option<ValueId> {
    consumers_with(g, v, is_add)
        .into_iter()
        .find(|&(c, _)| near(other(g, c, v).and_then(|o| scalar(g, o)), 1.0))
        .map(|(_, out)| out)
}

/// `x * 0.5 * (1 + erf(x / √2))`, with `x / √2` also as `x * (1/√2)`.
fn fuse_gelu_erf(g: &mut Graph, erf: usize) -> bool {
    let d = g.nodes[erf].inputs[0];
    let Some(p) = g.producer(d) else { return false };
    let ins = g.nodes[p].inputs.clone();
    let x = match g.nodes[p].op {
        Op::Div if ins.len() == 2 && near(scalar(g, ins[1]), SQRT2) => ins[0],
        Op::Mul if ins.len() == 2 && near(scalar(g, ins[1]), FRAC_1_SQRT2) => ins[0],
        Op::Mul if ins.len() == 2 && near(scalar(g, ins[0]), FRAC_1_SQRT2) => ins[1],
        _ => return false,
    };
    let Some(a) = plus_one(g, g.nodes[erf].output) else {
        return false;
    };
    match gelu_tail(g, x, a) {
        Some(last) => replace_with_gelu(g, last, x, false),
        None => false,
    }
}

/// Whether `v` is `x^3` (as Pow(x, 3), x * x², x² * x or (x*x)*x).
fn is_cube_of(g: &Graph, v: ValueId, x: ValueId) -> bool {
    let Some(p) = g.producer(v) else { return false };
    let n = &g.nodes[p];
    match n.op {
        Op::Pow => n.inputs[0] == x && near(scalar(g, n.inputs[1]), 3.0),
        Op::Mul => match other(g, p, x) {
            Some(sq) => g.producer(sq).is_some_and(|q| {
                let m = &g.nodes[q];
                (matches!(m.op, Op::Square) && m.inputs[0] == x)
                    || (matches!(m.op, Op::Mul) && m.inputs == [x, x])
                    || (matches!(m.op, Op::Pow) && m.inputs[0] == x && near(scalar(g, m.inputs[1]), 2.0))
            }),
            None => false,
        },
        _ => false,
    }
}

/// `0.5 * x * (1 + tanh(√(2/π) * (x + 0.044715 x³)))`.
fn fuse_gelu_tanh(g: &mut Graph, t: usize) -> bool {
    let u = g.nodes[t].inputs[0];
    let Some(pu) = producer_is(g, u, is_mul) else {
        return false;
    };
    let ins = g.nodes[pu].inputs.clone();
    let v = if near(scalar(g, ins[1]), TANH_C) {
        ins[0]
    } else if near(scalar(g, ins[0]), TANH_C) {
        ins[1]
    } else {
        return false;
    };
    let Some(pv) = producer_is(g, v, is_add) else {
        return false;
    };
    let add_ins = g.nodes[pv].inputs.clone();
    let mut found = None;
    for (xi, wi) in [(0, 1), (1, 0)] {
        let (x, w) = (add_ins[xi], add_ins[wi]);
        if let Some(pw) = producer_is(g, w, is_mul) {
            let mi = g.nodes[pw].inputs.clone();
            let cube = if near(scalar(g, mi[0]), 0.044715) {
                mi[1]
            } else if near(scalar(g, mi[1]), 0.044715) {
                mi[0]
            } else {
                continue;
            };
            if is_cube_of(g, cube, x) {
                found = Some(x);
                break;
            }
        }
    }
    let Some(x) = found else { return false };
    let Some(a) = plus_one(g, g.nodes[t].output) else {
        return false;
    };
    match gelu_tail(g, x, a) {
        Some(last) => replace_with_gelu(g, last, x, true),
        None => false,
    }
}

/// `(x - mean) / sqrt(mean((x - mean)²) + eps) [* γ] [+ β]` over trailing axes.
fn fuse_layernorm(g: &mut Graph, m1: usize) -> bool {
    let Op::ReduceMean { axes, keepdims: true } = g.nodes[m1].op.clone() else {
        return false;
    };
    let x = g.nodes[m1].inputs[0];
    let xs = g.values[x].shape.clone();
    let r = xs.len();
    let Some(&k) = axes.first() else { return false };
    if axes != (k..r).collect::<Vec<_>>() || g.is_constant(x) {
        return false;
    }
    let mean = g.nodes[m1].output;
    for (sub, d) in consumers_with(g, mean, |o| matches!(o, Op::Sub)) {
        if g.nodes[sub].inputs != [x, mean] {
            continue;
        }
        // squares of d
        let sq: Vec<ValueId> = g
            .consumers(d)
            .into_iter()
            .filter(|&c| {
                let n = &g.nodes[c];
                match n.op {
                    Op::Square => true,
                    Op::Mul => n.inputs == [d, d],
                    Op::Pow => near(scalar(g, n.inputs[1]), 2.0) && n.inputs[0] == d,
                    _ => false,
                }
            })
            .map(|c| g.nodes[c].output)
            .collect();
        for p in sq {
            for (m2, var) in consumers_with(g, p, |o| matches!(o, Op::ReduceMean { .. })) {
                if !matches!(&g.nodes[m2].op, Op::ReduceMean { axes: a2, keepdims: true } if *a2 == axes) {
                    continue;
                }
                for (ae, ve) in consumers_with(g, var, is_add) {
                    let Some(eps) = other(g, ae, var).and_then(|e| scalar(g, e)) else {
                        continue;
                    };
                    for (_, s) in consumers_with(g, ve, |o| matches!(o, Op::Sqrt)) {
                        for (dv, nrm) in consumers_with(g, s, |o| matches!(o, Op::Div)) {
                            if g.nodes[dv].inputs != [d, s] {
                                continue;
                            }
                            return finish_layernorm(g, x, k, eps, dv, nrm);
                        }
                    }
                }
            }
        }
    }
    false
}

/// Reshapes a per-feature constant to the normalised shape, if it broadcasts there.
fn param(g: &Graph, c: ValueId, norm: &[usize]) -> Option<Tensor> {
    let a = g.constant(c)?;
    if broadcast(norm, a.shape()).ok()? != norm {
        return None;
    }
    if a.shape() == norm {
        return Some(a.clone());
    }
    Some(a.to_f64().broadcast(IxDyn(norm))?.as_standard_layout().into_owned().into())
}

fn finish_layernorm(g: &mut Graph, x: ValueId, k: usize, eps: f64, div: usize, nrm: ValueId) -> bool {
    let norm: Vec<usize> = g.values[x].shape[k..].to_vec();
    let mut last = div;
    let mut gamma = None;
    let mut beta = None;
    if let Some((c, y1)) = consumers_with(g, nrm, is_mul)
        .into_iter()
        .find(|&(c, _)| other(g, c, nrm).is_some_and(|o| param(g, o, &norm).is_some()))
    {
        gamma = param(g, other(g, c, nrm).expect("checked"), &norm);
        last = c;
        if let Some((c2, _)) = consumers_with(g, y1, is_add)
            .into_iter()
            .find(|&(c2, _)| other(g, c2, y1).is_some_and(|o| param(g, o, &norm).is_some()))
        {
            beta = param(g, other(g, c2, y1).expect("checked"), &norm);
            last = c2;
        }
    }
    let out = g.nodes[last].output;
    if g.values[out].shape != g.values[x].shape {
        return false;
    }
    let name = g.nodes[last].name.clone();
    let gamma = gamma.unwrap_or_else(|| ArrayD::from_elem(IxDyn(&norm), 1.0).into());
    let gv = g.add_constant(format!("{name}/layernorm_scale"), gamma);
    let mut inputs = vec![x, gv];
    if let Some(b) = beta {
        inputs.push(g.add_constant(format!("{name}/layernorm_bias"), b));
    }
    g.nodes[last].op = Op::LayerNorm { axis: k, epsilon: eps };
    g.nodes[last].inputs = inputs;
    true
}

/// `exp(x) / sum(exp(x), axis, keepdims)`.
fn fuse_softmax(g: &mut Graph, e: usize) -> bool {
    let x = g.nodes[e].inputs[0];
    let ex = g.nodes[e].output;
    for (_, s) in consumers_with(g, ex, |o| matches!(o, Op::ReduceSum { axes, keepdims: true } if axes.len() == 1)) {
        let Some(rs) = g.producer(s) else { continue };
        let Op::ReduceSum { axes, .. } = &g.nodes[rs].op else {
            continue;
        };
        let axis = axes[0];
        for (dv, _) in consumers_with(g, s, |o| matches!(o, Op::Div)) {
            if g.nodes[dv].inputs == [ex, s] && g.values[g.nodes[dv].output].shape == g.values[x].shape {
                g.nodes[dv].op = Op::Softmax { axis };
                g.nodes[dv].inputs = vec![x];
                return true;
            }
        }
    }
    false
}
