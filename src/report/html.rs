//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no external
//! resources).

use std::fmt::Write as _;

use super::svg::{self, esc, Bar, HLine, Series, PALETTE};
use super::{human, ReportData};
use crate::stats::energy::format_pj;

const COMPUTE: &str = "#0072B2";
const MEMORY: &str = "#E69F00";
const ANN_COMPUTE: &str = "#009E73";
const ANN_MEMORY: &str = "#CC79A7";

/// The number of charts [`render`] draws.
pub const CHARTS: usize = 7;

/// Renders the page.
pub fn render(r: &ReportData) -> String {
    let mut out = String::new();
    let model = r.run.get("model").and_then(|m| m.as_str()).unwrap_or("?");
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>signgd report: {}</title>
<style>
body {{ font-family: sans-serif; margin: 24px auto; max-width: 1040px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ccc; }}
table {{ border-collapse: collapse; font-size: 13px; margin: 8px 0; }}
td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }}
td.wrap {{ white-space: normal; }}
div.scroll {{ overflow-x: auto; }}
table {{ font-size: 12px; }}
td.l, th.l {{ text-align: left; }}
pre {{ background: #f6f6f6; padding: 10px; font-size: 12px; overflow-x: auto; }}
p.caption {{ font-size: 13px; color: #444; max-width: 980px; }}
svg.chart {{ display: block; margin: 8px 0; max-width: 100%; height: auto; }}
</style></head><body>
<h1>signgd report: {}</h1>
"#,
        esc(model),
        esc(model)
    );
    let _ = writeln!(
        out,
        "<p>{} inputs, checkpoints {}; written by {}; report schema version {}.</p>",
        r.inputs,
        esc(&format!("{:?}", r.checkpoints)),
        esc(&r.generator),
        r.schema_version
    );
    settings_table(&mut out, r);

    // 1. Accuracy.
    out += "<h2>Accuracy against timesteps</h2>\n";
    let acc = &r.accuracy;
    let mut series = Vec::new();
    if acc.checkpoints.iter().any(|c| c.snn_accuracy.is_some()) {
        series.push(Series {
            name: "SNN accuracy".into(),
            points: acc
                .checkpoints
                .iter()
                .filter_map(|c| c.snn_accuracy.map(|a| (c.timesteps as f64, 100.0 * a)))
                .collect(),
            color: PALETTE[0].into(),
            dashed: false,
            markers: true,
        });
    }
    series.push(Series {
        name: "SNN agrees with ANN".into(),
        points: acc.checkpoints.iter().map(|c| (c.timesteps as f64, 100.0 * c.agreement)).collect(),
        color: PALETTE[2].into(),
        dashed: true,
        markers: true,
    });
    let hlines: Vec<HLine> = acc
        .ann
        .map(|a| HLine { name: format!("ANN accuracy ({:.2}%)", 100.0 * a), y: 100.0 * a, color: PALETTE[1].into() })
        .into_iter()
        .collect();
    let log_x = spans_octaves(&r.checkpoints);
    out += &svg::line_chart("Accuracy against timesteps", "timesteps", "%", &series, &hlines, log_x, false);
    out += "\n<p class=\"caption\">SNN accuracy and agreement with the ANN's predicted class at each checkpoint (one simulation read at every checkpoint); the dashed horizontal line is the ANN's accuracy.</p>\n";
    table(
        &mut out,
        &[
            "T",
            "SNN accuracy",
            "95% CI",
            "ANN accuracy",
            "95% CI",
            "agreement",
            "McNemar p (SNN vs ANN)",
            "mean |Δ output|",
        ],
        acc.checkpoints.iter().map(|c| {
            vec![
                c.timesteps.to_string(),
                pct(c.snn_accuracy),
                super::interval_range(c.snn_accuracy_ci95),
                pct(acc.ann),
                super::interval_range(acc.ann_ci95),
                pct(Some(c.agreement)),
                c.mcnemar_vs_ann.map_or("-".into(), |t| {
                    format!(
                        "{} ({} vs {} inputs right by one only)",
                        super::p_value_text(t.p_value),
                        t.first_only,
                        t.second_only
                    )
                }),
                c.mean_abs_diff.map_or("-".into(), |d| format!("{d:.3e}")),
            ]
        }),
    );
    out += "<p class=\"caption\">Intervals: 95% Wilson score intervals over the evaluated inputs. McNemar's exact test compares the SNN with the ANN on the same inputs: a small p says the two differ in accuracy beyond chance.</p>\n";

    // 2. Firing rates.
    let t_last = r.last_timesteps();
    out += "<h2>Firing rate per population</h2>\n";
    let bars: Vec<Bar> = r
        .populations
        .iter()
        .filter(|p| p.info.has_neurons())
        .filter_map(|p| {
            let c = p.checkpoints.last()?;
            let rate = c.firing_rate?;
            Some(Bar {
                label: format!("{} ({})", p.info.name, p.info.kind),
                segments: vec![(rate, PALETTE[0].into())],
                note: format!("{rate:.3}"),
            })
        })
        .collect();
    out += &svg::bar_chart(
        &format!("Firing rate per population (spikes per neuron per step, T={t_last})"),
        "spikes per neuron per step",
        &bars,
        &[],
    );
    out += "\n<p class=\"caption\">Fraction of neurons emitting s = 1 per step, averaged over all inputs and steps up to the last checkpoint. Relays (real-valued, no neurons) and the readout are not shown. A signGD neuron emits 0 or 1 every step, both carrying information; about half emit 1.</p>\n";

    // 3. Energy per population.
    out += "<h2>Energy per population</h2>\n";
    let e_rows: Vec<(String, f64, f64, bool)> = r
        .populations
        .iter()
        .filter_map(|p| {
            let e = p.checkpoints.last()?.energy_per_input;
            Some((format!("SNN · {}", p.info.name), e.compute_pj, e.memory_pj, true))
        })
        .chain(r.ann.layers.iter().filter(|l| l.energy.memory_inclusive_pj > 0.0).map(|l| {
            (format!("ANN · {} ({})", l.layer.name, l.layer.op), l.energy.compute_pj, l.energy.memory_pj, false)
        }))
        .collect();
    let (bars, unit) = energy_bars(&e_rows, |compute, memory| format_pj(compute + memory));
    out += &svg::bar_chart(
        &format!(
            "Energy per input by population (SNN at T={t_last}) and by layer (ANN), model {}",
            r.energy.model.name
        ),
        &format!("energy per input ({unit})"),
        &bars,
        &[("SNN compute", COMPUTE), ("SNN memory", MEMORY), ("ANN compute", ANN_COMPUTE), ("ANN memory", ANN_MEMORY)],
    );
    out += "\n<p class=\"caption\">Each bar is compute-only energy (dark) plus memory traffic (light); the label at the right is the memory-inclusive total. SNN rows include relays and the readout (they receive synaptic events and read real values); ANN rows are the layers of one forward pass that cost anything (data movement is free).</p>\n";

    // 4. Energy in total.
    out += "<h2>Energy in total: SNN against ANN</h2>\n";
    let mut totals: Vec<(String, f64, f64, bool)> = r
        .energy
        .checkpoints
        .iter()
        .map(|e| (format!("SNN, T={}", e.timesteps), e.snn.compute_pj, e.snn.memory_pj, true))
        .collect();
    let ann = r.ann.total.energy;
    totals.push(("ANN, one forward pass".into(), ann.compute_pj, ann.memory_pj, false));
    let (bars, unit) = energy_bars(&totals, |compute, memory| {
        format!("{} ({} compute)", format_pj(compute + memory), format_pj(compute))
    });
    out += &svg::bar_chart(
        &format!("Energy per input in total, model {}", r.energy.model.name),
        &format!("energy per input ({unit})"),
        &bars,
        &[("SNN compute", COMPUTE), ("SNN memory", MEMORY), ("ANN compute", ANN_COMPUTE), ("ANN memory", ANN_MEMORY)],
    );
    table(
        &mut out,
        &[
            "T",
            "SNN convention",
            "SNN compute",
            "SNN + memory",
            "ANN convention",
            "ANN compute",
            "ANN + memory",
            "SNN/ANN compute",
            "SNN/ANN + memory",
        ],
        r.energy.checkpoints.iter().map(|e| {
            vec![
                e.timesteps.to_string(),
                format_pj(e.snn.convention_pj),
                format_pj(e.snn.compute_pj),
                format_pj(e.snn.memory_inclusive_pj),
                format_pj(e.ann.convention_pj),
                format_pj(e.ann.compute_pj),
                format_pj(e.ann.memory_inclusive_pj),
                e.ratio_compute.map_or("-".into(), |x| format!("{x:.2}×")),
                e.ratio_memory_inclusive.map_or("-".into(), |x| format!("{x:.2}×")),
            ]
        }),
    );
    out += "<p class=\"caption\">Convention: E_ANN = E_MAC × MACs; E_SNN = E_MAC × dense MACs + E_AC × synaptic events. Compute adds signGD's drive additions, nonlinearity evaluations and neuron updates (SNN) and elementwise operations (ANN); + memory adds state and weight memory traffic.</p>\n";
    energy_against_t(&mut out, r);
    out += "<h3>Every shipped cost model (T = last checkpoint, per input)</h3>\n";
    table(
        &mut out,
        &["model", "title", "SNN compute", "SNN + memory", "ANN compute", "ANN + memory"],
        r.energy.presets.iter().map(|p| {
            vec![
                p.name.clone(),
                p.title.clone(),
                format_pj(p.snn.compute_pj),
                format_pj(p.snn.memory_inclusive_pj),
                format_pj(p.ann.compute_pj),
                format_pj(p.ann.memory_inclusive_pj),
            ]
        }),
    );

    // 5 and 6. One input up close.
    match &r.observation {
        Some(o) => {
            let ra = &o.raster;
            out += "<h2>Spike raster</h2>\n";
            out += &svg::raster(
                &format!(
                    "Spikes of `{}` for input {} (neurons 0–{} of {})",
                    ra.name,
                    o.input,
                    ra.shown.saturating_sub(1),
                    ra.neurons
                ),
                ra.steps,
                ra.shown,
                &ra.spikes,
            );
            let _ = writeln!(
                out,
                "<p class=\"caption\">One mark per spike (s = 1) of population {} `{}` while input {} is simulated; choose with --raster-population NAME|INDEX and --raster-input I. At most {} neurons are drawn.</p>",
                ra.population,
                esc(&ra.name),
                o.input,
                crate::stats::observe::MAX_RASTER_NEURONS
            );
            out += "<h2>SNN against ANN over time</h2>\n";
            let series: Vec<Series> = o
                .errors
                .iter()
                .enumerate()
                .map(|(i, e)| Series {
                    name: e.name.clone(),
                    points: e.mean_abs_error.iter().enumerate().map(|(t, &v)| ((t + 1) as f64, v)).collect(),
                    color: PALETTE[i % PALETTE.len()].into(),
                    dashed: i >= PALETTE.len(),
                    markers: false,
                })
                .collect();
            out += &svg::line_chart(
                &format!("Mean |SNN estimate − ANN value| per population, input {}", o.input),
                "timestep",
                "mean absolute error (log scale)",
                &series,
                &[],
                false,
                true,
            );
            out += "\n<p class=\"caption\">For each population with neurons: the mean over its neurons of |v_t − ANN value|, where v_t is the population's output estimate after step t and the ANN value is the converted graph's value at the node of the same name (after the conversion passes, so ReLU outputs are normalised).</p>\n";
        }
        None => out += "<h2>Spike raster</h2>\n<p>No input was observed.</p>\n",
    }

    // Tables.
    out += "<h2>Counts per population</h2>\n";
    let _ = writeln!(out, "<p class=\"caption\">At T={t_last}, per input (averaged over {} inputs). populations.csv has every checkpoint, summed over the inputs.</p>", r.inputs);
    table(
        &mut out,
        &[
            "population",
            "kind",
            "neurons",
            "rate",
            "spikes",
            "syn. events",
            "dense MACs",
            "drive adds",
            "updates",
            "nonlin. evals",
            "state r/w",
            "weight reads",
            "energy",
        ],
        r.populations.iter().filter_map(|p| {
            let c = p.checkpoints.last()?;
            let q = &c.per_input;
            Some(vec![
                p.info.name.clone(),
                p.info.kind.clone(),
                if p.info.has_neurons() { p.info.neurons.to_string() } else { "-".into() },
                c.firing_rate.map_or("-".into(), |x| format!("{x:.3}")),
                human(q.spikes),
                human(q.synaptic_events),
                human(q.dense_macs),
                human(q.drive_additions),
                human(q.neuron_updates),
                human(q.nonlinearity_evaluations),
                format!("{} / {}", human(q.state_reads), human(q.state_writes)),
                human(q.weight_reads),
                format_pj(c.energy_per_input.memory_inclusive_pj),
            ])
        }),
    );
    out += "<h2>ANN layers (one forward pass)</h2>\n";
    table(
        &mut out,
        &["layer", "op", "MACs", "other ops", "weight reads", "activation reads", "writes", "energy"],
        r.ann.layers.iter().chain([&r.ann.total]).map(|l| {
            vec![
                l.layer.name.clone(),
                l.layer.op.clone(),
                human(l.layer.macs as f64),
                human(l.layer.elementwise_ops as f64),
                human(l.layer.weight_reads as f64),
                human(l.layer.activation_reads as f64),
                human(l.layer.activation_writes as f64),
                format_pj(l.energy.memory_inclusive_pj),
            ]
        }),
    );
    out += "<h2>Cost model and assumptions</h2>\n";
    let _ = writeln!(
        out,
        "<p>Model <b>{}</b>: {} (from {}).</p>",
        esc(&r.energy.model.name),
        esc(&r.energy.model.title),
        esc(&r.energy.model.origin)
    );
    table(
        &mut out,
        &["entry", "pJ", "source"],
        r.energy.model.costs.entries().iter().map(|(n, c)| vec![n.to_string(), format!("{}", c.pj), c.source.clone()]),
    );
    if let Some(m) = &r.energy.model.memory {
        let _ = writeln!(out, "<p>Memory levels ({}-bit words: {}):</p>", m.word_bits, esc(&m.word_bits_source));
        table(
            &mut out,
            &["level", "up to", "pJ per 64 bits", "source"],
            m.levels.iter().map(|l| {
                vec![
                    l.name.clone(),
                    l.max_bytes.map_or("-".into(), |b| format!("{b} B")),
                    format!("{}", l.pj_per_64_bits),
                    l.source.clone(),
                ]
            }),
        );
    }
    out += "<ul>\n";
    for a in &r.energy.assumptions {
        let _ = writeln!(out, "<li>{}</li>", esc(a));
    }
    out += "</ul>\n<h2>Summary (as <code>signgd report</code> prints it)</h2>\n<pre>";
    out += &esc(&r.summary());
    out += "</pre>\n</body></html>\n";
    out
}

/// Energy against timesteps: the chart of both SNN curves against the ANN's lines, the
/// conventions, break-even, the accuracy-matched checkpoint and the ranges.
fn energy_against_t(out: &mut String, r: &ReportData) {
    let e = &r.energy;
    *out += "<h2>Energy against timesteps</h2>\n";
    let series = vec![
        Series {
            name: "SNN compute-only".into(),
            points: e.checkpoints.iter().map(|c| (c.timesteps as f64, c.snn.compute_pj)).collect(),
            color: COMPUTE.into(),
            dashed: false,
            markers: true,
        },
        Series {
            name: "SNN memory-inclusive".into(),
            points: e.checkpoints.iter().map(|c| (c.timesteps as f64, c.snn.memory_inclusive_pj)).collect(),
            color: MEMORY.into(),
            dashed: false,
            markers: true,
        },
    ];
    let ann = r.ann.total.energy;
    let hlines = vec![
        HLine {
            name: format!("ANN compute-only ({})", format_pj(ann.compute_pj)),
            y: ann.compute_pj,
            color: ANN_COMPUTE.into(),
        },
        HLine {
            name: format!("ANN memory-inclusive ({})", format_pj(ann.memory_inclusive_pj)),
            y: ann.memory_inclusive_pj,
            color: ANN_MEMORY.into(),
        },
    ];
    out.push_str(&svg::line_chart(
        &format!("Energy per input against timesteps, model {}", e.model.name),
        "timesteps",
        "energy per input (pJ, log scale)",
        &series,
        &hlines,
        spans_octaves(&r.checkpoints),
        true,
    ));
    let point = |p: &Option<super::BreakEvenPoint>| match p {
        Some(p) if p.exact => format!("T = {} (interpolated {:.2})", p.timesteps, p.interpolated),
        Some(p) => format!(
            "between T = {} and T = {} (interpolated {:.2})",
            p.previous_checkpoint, p.timesteps, p.interpolated
        ),
        None => format!("not reached up to T = {}", r.last_timesteps()),
    };
    let _ = writeln!(
        out,
        "<p class=\"caption\">The SNN's energy per input grows with T (cumulative, under the conventions below); the ANN's is one forward pass. Break-even, the first checkpoint at which the SNN reaches the ANN: compute-only {}, memory-inclusive {}. The ANN's memory-inclusive energy is {} with per-layer reuse (lower bound) and {} without reuse (upper bound).</p>",
        esc(&point(&e.break_even_timestep.compute)),
        esc(&point(&e.break_even_timestep.memory_inclusive)),
        format_pj(e.ann_memory_bounds.reuse.memory_inclusive_pj),
        format_pj(e.ann_memory_bounds.no_reuse.memory_inclusive_pj)
    );
    if let Some(sentence) = r.static_sentence() {
        let mut sentence = sentence;
        sentence.replace_range(..1, "S");
        let _ = writeln!(out, "<p>{}.</p>", esc(&sentence));
    }
    let span = |s: Option<super::Span>, f: &dyn Fn(f64) -> String| super::span_text(s, f, " – ");
    let times = |x: f64| format!("{x:.2}×");
    if let Some(m) = &e.at_ann_accuracy {
        let g = m.energy.range.unwrap_or_default();
        let _ = writeln!(
            out,
            "<p>First checkpoint within 1 point of the ANN's accuracy: <b>T = {}</b> ({:.2}% against {:.2}%): SNN/ANN {} compute-only (range {}), {} memory-inclusive (range {}).</p>",
            m.timesteps,
            100.0 * m.snn_accuracy,
            100.0 * m.ann_accuracy,
            m.energy.ratio_compute.map_or("-".into(), |x| format!("{x:.2}×")),
            esc(&span(g.ratio_compute, &times)),
            m.energy.ratio_memory_inclusive.map_or("-".into(), |x| format!("{x:.2}×")),
            esc(&span(g.ratio_memory_inclusive, &times))
        );
    }
    table(
        out,
        &[
            "T",
            "SNN compute per step",
            "SNN + memory per step",
            "SNN compute range",
            "SNN + memory range",
            "SNN/ANN compute range",
            "SNN/ANN + memory range",
        ],
        e.checkpoints.iter().map(|c| {
            let g = c.range.unwrap_or_default();
            vec![
                c.timesteps.to_string(),
                format_pj(c.marginal_per_step.compute_pj),
                format_pj(c.marginal_per_step.memory_inclusive_pj),
                span(g.snn_compute_pj, &format_pj),
                span(g.snn_memory_inclusive_pj, &format_pj),
                span(g.ratio_compute, &times),
                span(g.ratio_memory_inclusive, &times),
            ]
        }),
    );
    let _ = writeln!(
        out,
        "<p class=\"caption\">Per step: energy added per timestep since the previous checkpoint (for the first, since T = 0 after the part charged once per input, {}). Ranges: smallest and largest over all {} combinations of the conventions (encoder layer, shared products, addressing, ANN memory reuse, memory pricing by level or flat).</p>",
        format_pj(e.once_per_input.memory_inclusive_pj),
        crate::stats::energy::Conventions::all().len()
    );
    table(
        out,
        &["convention", "setting", "default", "alternative", "flag"],
        e.convention_table
            .iter()
            .map(|c| vec![c.name.clone(), c.setting.clone(), c.default.clone(), c.alternative.clone(), c.flag.clone()]),
    );
}

fn settings_table(out: &mut String, r: &ReportData) {
    let mut rows = Vec::new();
    if let Some(obj) = r.run.as_object() {
        for (k, v) in obj {
            // The checkpoint rows have their own table; the schema version is stated above.
            if k == "checkpoints" || k == "schema_version" {
                continue;
            }
            flatten(k, v, &mut rows);
        }
    }
    table(out, &["setting", "value"], rows.into_iter().map(|(k, v)| vec![k, v]));
}

fn flatten(prefix: &str, v: &serde_json::Value, rows: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}.{k}"), v, rows);
            }
        }
        serde_json::Value::String(s) => rows.push((prefix.into(), s.clone())),
        serde_json::Value::Null => {}
        other => rows.push((prefix.into(), other.to_string())),
    }
}

fn table(out: &mut String, header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    out.push_str("<div class=\"scroll\"><table><tr>");
    for (i, h) in header.iter().enumerate() {
        let _ = write!(out, "<th{}>{}</th>", if i == 0 { " class=\"l\"" } else { "" }, esc(h));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let left = i == 0 || cell.chars().any(|c| c.is_alphabetic() && !"kMGTpnµmJe×".contains(c));
            let class = match (left, cell.len() > 60) {
                (_, true) => " class=\"l wrap\"",
                (true, false) => " class=\"l\"",
                (false, false) => "",
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n");
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v))
}

fn spans_octaves(checkpoints: &[usize]) -> bool {
    match (checkpoints.first(), checkpoints.last()) {
        (Some(&a), Some(&b)) if a > 0 => b / a >= 8,
        _ => false,
    }
}

/// A unit for energies up to `max` pJ: (pJ per unit, unit name).
fn energy_unit(max: f64) -> (f64, &'static str) {
    [(1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")].into_iter().find(|(s, _)| max >= *s).unwrap_or((1.0, "pJ"))
}

/// Stacked compute + memory bars from `(label, compute pJ, memory pJ, is SNN)` rows, scaled to
/// one unit for all, with `note(compute, memory)` at the right of each bar.
fn energy_bars(rows: &[(String, f64, f64, bool)], note: impl Fn(f64, f64) -> String) -> (Vec<Bar>, &'static str) {
    let (scale, unit) = energy_unit(rows.iter().map(|r| r.1 + r.2).fold(0.0, f64::max));
    let bars = rows
        .iter()
        .map(|&(ref label, compute, memory, snn)| Bar {
            label: label.clone(),
            segments: vec![
                (compute / scale, if snn { COMPUTE } else { ANN_COMPUTE }.into()),
                (memory / scale, if snn { MEMORY } else { ANN_MEMORY }.into()),
            ],
            note: note(compute, memory),
        })
        .collect();
    (bars, unit)
}
