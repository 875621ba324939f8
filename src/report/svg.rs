//! Hand-written SVG charts: lines, horizontal (stacked) bars and a spike raster. Plain markup,
//! no scripts, no external resources.

use std::fmt::Write as _;

/// Colours that stay distinguishable (Okabe–Ito plus a few).
pub const PALETTE: [&str; 12] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933", "#882255", "#44AA99",
    "#AA4499", "#666666",
];

/// Escapes text for XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One line of a line chart.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points (x, y); non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// Stroke colour.
    pub color: String,
    /// Dashed stroke.
    pub dashed: bool,
    /// Draw a marker at every point.
    pub markers: bool,
}

/// A horizontal reference line.
pub struct HLine {
    /// Legend text.
    pub name: String,
    /// Height.
    pub y: f64,
    /// Colour.
    pub color: String,
}

/// Axis ticks at "nice" steps covering `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / count.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let mut ticks = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-9 {
        ticks.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    ticks
}

/// Tick label text.
pub fn tick_text(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        let e = a.log10().floor();
        let m = v / 10f64.powf(e);
        if (m.round() - m).abs() < 1e-9 {
            format!("{}e{}", m.round(), e)
        } else {
            format!("{m:.1}e{e}")
        }
    } else if (v.round() - v).abs() < 1e-9 {
        format!("{}", v.round())
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Frame of a chart: where the plot area lies.
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    fn plot_w(&self) -> f64 {
        self.width - self.left - self.right
    }
    fn plot_h(&self) -> f64 {
        self.height - self.top - self.bottom
    }
}

fn open(out: &mut String, f: &Frame, title: &str, label: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}" font-family="sans-serif" font-size="12">"#,
        esc(label),
        f.width,
        f.height,
        f.width,
        f.height
    );
    let _ = write!(out, r##"<title>{}</title><rect width="100%" height="100%" fill="#fff"/>"##, esc(title));
    let _ = write!(out, r#"<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>"#, f.left, esc(title));
}

/// A line chart. `log_y` draws y on a log10 scale (non-positive values skipped); `log_x` x on a
/// log2 scale.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    hlines: &[HLine],
    log_x: bool,
    log_y: bool,
) -> String {
    let legend_rows = series.len() + hlines.len();
    let legend_cols = if legend_rows > 8 { 3 } else { 2 };
    let legend_h = legend_rows.div_ceil(legend_cols) as f64 * 16.0 + 8.0;
    let f =
        Frame { width: 1000.0, height: 360.0 + legend_h, left: 70.0, right: 20.0, top: 30.0, bottom: 45.0 + legend_h };
    let tx = |x: f64| if log_x { x.log2() } else { x };
    let ty = |y: f64| if log_y { y.log10() } else { y };
    let usable = |x: f64, y: f64| x.is_finite() && y.is_finite() && (!log_x || x > 0.0) && (!log_y || y > 0.0);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for s in series {
        for &(x, y) in &s.points {
            if usable(x, y) {
                xs.push(tx(x));
                ys.push(ty(y));
            }
        }
    }
    for h in hlines {
        if h.y.is_finite() && (!log_y || h.y > 0.0) {
            ys.push(ty(h.y));
        }
    }
    let (mut x0, mut x1) = min_max(&xs).unwrap_or((0.0, 1.0));
    let (mut y0, mut y1) = min_max(&ys).unwrap_or((0.0, 1.0));
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    if log_y {
        y0 = y0.floor();
        y1 = y1.ceil().max(y0 + 1.0);
    } else {
        let pad = if y1 > y0 { (y1 - y0) * 0.08 } else { 0.5 };
        y0 -= pad;
        y1 += pad;
    }
    let sx = |x: f64| f.left + (tx(x) - x0) / (x1 - x0) * f.plot_w();
    let sy = |y: f64| f.top + f.plot_h() - (ty(y) - y0) / (y1 - y0) * f.plot_h();
    let mut out = String::new();
    open(&mut out, &f, title, &format!("line chart: {title}"));
    // Grid and axes.
    let y_ticks: Vec<f64> =
        if log_y { (y0 as i64..=y1 as i64).map(|e| 10f64.powi(e as i32)).collect() } else { nice_ticks(y0, y1, 6) };
    for t in &y_ticks {
        let y = sy(*t);
        let _ = write!(
            out,
            r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            f.left,
            f.left + f.plot_w(),
            f.left - 6.0,
            y + 4.0,
            tick_text(*t)
        );
    }
    let x_ticks: Vec<f64> = if log_x {
        let mut t: Vec<f64> = (x0.floor() as i64..=x1.ceil() as i64).map(|e| 2f64.powi(e as i32)).collect();
        t.retain(|v| v.log2() >= x0 - 1e-9 && v.log2() <= x1 + 1e-9);
        t
    } else {
        nice_ticks(x0, x1, 8)
    };
    vertical_grid(&mut out, &f, &x_ticks, sx);
    let _ = write!(
        out,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        f.left,
        f.top,
        f.plot_w(),
        f.plot_h()
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        f.left + f.plot_w() / 2.0,
        f.top + f.plot_h() + 34.0,
        esc(x_label)
    );
    let _ = write!(
        out,
        r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        f.top + f.plot_h() / 2.0,
        esc(y_label)
    );
    for h in hlines {
        if h.y.is_finite() && (!log_y || h.y > 0.0) {
            let y = sy(h.y);
            let _ = write!(
                out,
                r#"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="{}" stroke-width="2" stroke-dasharray="8 4"/>"#,
                f.left,
                f.left + f.plot_w(),
                h.color
            );
        }
    }
    for s in series {
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| usable(*x, *y))
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let dash = if s.dashed { r#" stroke-dasharray="4 3""# } else { "" };
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}><title>{}</title></polyline>"#,
            pts.join(" "),
            s.color,
            esc(&s.name)
        );
        if s.markers {
            for p in &pts {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="3.5" fill="{}"/>"#, s.color);
            }
        }
    }
    // Legend.
    let col_w = (f.width - f.left - f.right) / legend_cols as f64;
    let entries = series
        .iter()
        .map(|s| (s.name.as_str(), s.color.as_str(), s.dashed))
        .chain(hlines.iter().map(|h| (h.name.as_str(), h.color.as_str(), true)));
    for (i, (name, color, dashed)) in entries.enumerate() {
        let x = f.left + (i % legend_cols) as f64 * col_w;
        let y = f.height - legend_h + (i / legend_cols) as f64 * 16.0 + 10.0;
        let dash = if dashed { r#" stroke-dasharray="6 3""# } else { "" };
        let _ = write!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="3"{dash}/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            x + 30.0,
            y + 4.0,
            esc(name)
        );
    }
    out += "</svg>";
    out
}

/// A vertical grid line and its label under the plot at each tick, placed by `sx`.
fn vertical_grid(out: &mut String, f: &Frame, ticks: &[f64], sx: impl Fn(f64) -> f64) {
    for &t in ticks {
        let x = sx(t);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#e5e5e5"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            f.top,
            f.top + f.plot_h(),
            f.top + f.plot_h() + 16.0,
            tick_text(t)
        );
    }
}

fn min_max(v: &[f64]) -> Option<(f64, f64)> {
    let mut it = v.iter().copied().filter(|x| x.is_finite());
    let first = it.next()?;
    Some(it.fold((first, first), |(a, b), x| (a.min(x), b.max(x))))
}

/// One bar of a horizontal bar chart: stacked segments (value, colour).
pub struct Bar {
    /// Label left of the bar.
    pub label: String,
    /// Segments from left to right.
    pub segments: Vec<(f64, String)>,
    /// Text right of the bar.
    pub note: String,
}

/// A horizontal bar chart with stacked segments; `legend` names the segment colours.
pub fn bar_chart(title: &str, x_label: &str, bars: &[Bar], legend: &[(&str, &str)]) -> String {
    let row = 20.0;
    let label_w = 280.0;
    let note_w = bars.iter().map(|b| b.note.chars().count()).max().unwrap_or(0) as f64 * 7.0 + 16.0;
    let legend_h = if legend.is_empty() { 0.0 } else { 22.0 };
    let f = Frame {
        width: 1000.0,
        height: 30.0 + legend_h + bars.len() as f64 * row + 50.0,
        left: label_w,
        right: note_w.max(60.0),
        top: 30.0 + legend_h,
        bottom: 50.0,
    };
    let max = bars.iter().map(|b| b.segments.iter().map(|s| s.0.max(0.0)).sum::<f64>()).fold(0.0, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let ticks = nice_ticks(0.0, max, 6);
    let top = ticks.last().copied().filter(|t| *t >= max).unwrap_or(max);
    let sx = |v: f64| f.left + v / top * f.plot_w();
    let mut out = String::new();
    open(&mut out, &f, title, &format!("bar chart: {title}"));
    for (i, (name, color)) in legend.iter().enumerate() {
        let x = f.left + i as f64 * 150.0;
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{}" width="14" height="12" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            30.0,
            x + 20.0,
            40.0,
            esc(name)
        );
    }
    vertical_grid(&mut out, &f, &ticks, sx);
    for (i, bar) in bars.iter().enumerate() {
        let y = f.top + i as f64 * row;
        let _ = write!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            f.left - 6.0,
            y + row * 0.7,
            esc(&truncate(&bar.label, 42))
        );
        let mut x = 0.0;
        for (value, color) in &bar.segments {
            let v = value.max(0.0);
            if v > 0.0 {
                let _ = write!(
                    out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.2}" height="{:.1}" fill="{color}"><title>{}: {}</title></rect>"#,
                    sx(x),
                    y + 3.0,
                    (sx(x + v) - sx(x)).max(0.5),
                    row - 6.0,
                    esc(&bar.label),
                    tick_text(v)
                );
            }
            x += v;
        }
        let _ = write!(out, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, sx(x) + 6.0, y + row * 0.7, esc(&bar.note));
    }
    let _ = write!(
        out,
        r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##,
        f.left,
        f.top,
        f.left,
        f.top + f.plot_h()
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        f.left + f.plot_w() / 2.0,
        f.top + f.plot_h() + 36.0,
        esc(x_label)
    );
    out += "</svg>";
    out
}

fn truncate(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= n {
        s.to_string()
    } else {
        let tail: String = chars[chars.len() - (n - 1)..].iter().collect();
        format!("…{tail}")
    }
}

/// A spike raster: one dot per spike, x = step, y = neuron.
pub fn raster(title: &str, steps: usize, neurons: usize, spikes: &[Vec<u32>]) -> String {
    let f = Frame { width: 1000.0, height: 420.0, left: 70.0, right: 20.0, top: 30.0, bottom: 45.0 };
    let steps = steps.max(1);
    let neurons = neurons.max(1);
    let cw = f.plot_w() / steps as f64;
    let ch = f.plot_h() / neurons as f64;
    let mut out = String::new();
    open(&mut out, &f, title, &format!("spike raster: {title}"));
    let _ = write!(
        out,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#fafafa" stroke="#333"/>"##,
        f.left,
        f.top,
        f.plot_w(),
        f.plot_h()
    );
    let mut path = String::new();
    let (w, h) = (cw.max(0.6), ch.max(0.6));
    for (s, fired) in spikes.iter().enumerate() {
        for &n in fired {
            let x = f.left + s as f64 * cw;
            let y = f.top + n as f64 * ch;
            let _ = write!(path, "M{x:.1} {y:.1}h{w:.2}v{h:.2}h-{w:.2}z");
        }
    }
    let _ = write!(out, r##"<path d="{path}" fill="#0b3d91"/>"##);
    for t in nice_ticks(1.0, steps as f64, 8) {
        let x = f.left + (t - 0.5) * cw;
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            f.top + f.plot_h() + 16.0,
            tick_text(t)
        );
    }
    for t in nice_ticks(0.0, (neurons - 1) as f64, 6) {
        let y = f.top + (t + 0.5) * ch;
        let _ =
            write!(out, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, f.left - 6.0, y + 4.0, tick_text(t));
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">timestep</text><text transform="translate(16,{}) rotate(-90)" text-anchor="middle">neuron</text>"#,
        f.left + f.plot_w() / 2.0,
        f.top + f.plot_h() + 34.0,
        f.top + f.plot_h() / 2.0
    );
    out += "</svg>";
    out
}
