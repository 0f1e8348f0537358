//! A line chart as SVG text, written here rather than with a plotting library: panels stacked
//! over one time axis, one coloured line per series (broken where a series has no samples,
//! as a node being restarted), dashed vertical markers for events. Every y axis starts at
//! zero, so a flat line looks flat and a climb is not exaggerated by a cropped axis.

use std::fmt::Write;

/// One series: its label and its runs of points (time in seconds, value); a gap between runs
/// is drawn as a gap.
#[derive(Debug, Clone, Default)]
pub struct Line {
    /// Shown in the legend.
    pub label: String,
    /// Runs of points, each in time order.
    pub segments: Vec<Vec<(f64, f64)>>,
}

/// One panel: a y axis and its lines.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    /// Shown above the panel, with the unit.
    pub title: String,
    /// The lines, coloured in order.
    pub lines: Vec<Line>,
}

/// The whole figure.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Shown at the top.
    pub title: String,
    /// Stacked top to bottom over one time axis.
    pub panels: Vec<Panel>,
    /// Vertical markers across every panel: time in seconds and a label.
    pub markers: Vec<(f64, String)>,
}

const WIDTH: f64 = 1000.0;
const PANEL_HEIGHT: f64 = 200.0;
const PANEL_GAP: f64 = 60.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 50.0;
/// Colour-blind-safe (Okabe-Ito), in series order.
const COLOURS: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000",
];

/// The SVG document of `chart`.
pub fn render(chart: &Chart) -> String {
    let panels = chart.panels.len().max(1) as f64;
    let height = TOP + panels * PANEL_HEIGHT + (panels - 1.0) * PANEL_GAP + BOTTOM;
    // The time axis is labelled in minutes, so its ticks are chosen in minutes.
    let x_max_min = nice_max(
        chart
            .panels
            .iter()
            .flat_map(points)
            .map(|p| p.0)
            .chain(chart.markers.iter().map(|m| m.0))
            .fold(0.0, f64::max)
            / 60.0,
    );
    let x_max = x_max_min * 60.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + t / x_max * plot_w;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(&chart.title)
    );
    for (i, panel) in chart.panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_HEIGHT + PANEL_GAP);
        let bottom = top + PANEL_HEIGHT;
        let y_max = nice_max(points(panel).map(|p| p.1).fold(0.0, f64::max));
        let y = |v: f64| bottom - v / y_max * PANEL_HEIGHT;
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{}" font-size="13">{}</text>"#,
            top - 8.0,
            escape(&panel.title)
        );
        for v in ticks(y_max) {
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y(v) + 4.0,
                label(v),
                yy = y(v),
            );
        }
        for t in ticks(x_max_min).into_iter().map(|m| m * 60.0) {
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{bottom}" x2="{xx:.1}" y2="{:.1}" stroke="#999"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                bottom + 4.0,
                bottom + 16.0,
                label(t / 60.0),
                xx = x(t),
            );
        }
        for (t, text) in &chart.markers {
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{bottom}" stroke="#888" stroke-dasharray="4 3"><title>{}</title></line>"##,
                escape(text),
                xx = x(*t),
            );
        }
        for (j, line) in panel.lines.iter().enumerate() {
            let colour = COLOURS[j % COLOURS.len()];
            for seg in line.segments.iter().filter(|seg| !seg.is_empty()) {
                let pts = seg
                    .iter()
                    .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
                    .collect::<Vec<_>>()
                    .join(" ");
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>"#
                );
            }
            let ly = top + 14.0 + j as f64 * 16.0;
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="14" height="3" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                LEFT + plot_w + 12.0,
                ly - 4.0,
                LEFT + plot_w + 30.0,
                ly,
                escape(&line.label)
            );
        }
        let _ = writeln!(
            s,
            r#"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_HEIGHT}" fill="none" stroke="black"/>"#
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (minutes)</text>"#,
        LEFT + plot_w / 2.0,
        height - 12.0
    );
    s.push_str("</svg>\n");
    s
}

fn points(panel: &Panel) -> impl Iterator<Item = (f64, f64)> + '_ {
    panel
        .lines
        .iter()
        .flat_map(|l| l.segments.iter().flatten().copied())
        .filter(|p| p.0.is_finite() && p.1.is_finite())
}

/// The top of an axis for values up to `max`: the next tick at or above it, never zero, so an
/// empty or all-zero panel still has a scale.
fn nice_max(max: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let step = nice_step(max);
    (max / step).ceil() * step
}

/// A step of 1, 2 or 5 times a power of ten giving four to ten ticks up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    match raw / mag {
        r if r <= 1.0 => mag,
        r if r <= 2.0 => 2.0 * mag,
        r if r <= 5.0 => 5.0 * mag,
        _ => 10.0 * mag,
    }
}

fn ticks(max: f64) -> Vec<f64> {
    let step = nice_step(max);
    (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|v| *v <= max * (1.0 + 1e-9))
        .collect()
}

fn label(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart {
        let line = |label: &str, k: f64| Line {
            label: label.into(),
            segments: vec![
                (0..10)
                    .map(|i| (f64::from(i) * 10.0, k * f64::from(i)))
                    .collect(),
                (12..20).map(|i| (f64::from(i) * 10.0, k)).collect(),
            ],
        };
        Chart {
            title: "RSS <&> fds".into(),
            panels: vec![
                Panel {
                    title: "RSS (MiB)".into(),
                    lines: vec![line("node0", 3.0), line("node1", 5.0)],
                },
                Panel {
                    title: "fds".into(),
                    lines: vec![line("node0", 1.0)],
                },
            ],
            markers: vec![(100.0, "restart node1".into())],
        }
    }

    /// The numbers of every `points="..."` attribute.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.split("points=\"")
            .skip(1)
            .map(|rest| {
                rest.split('"')
                    .next()
                    .unwrap_or("")
                    .split(' ')
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').expect("x,y");
                        (x.parse().expect("x"), y.parse().expect("y"))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_segment_is_one_polyline_inside_the_plot_area() {
        let svg = render(&chart());
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        let lines = polylines(&svg);
        // Two segments for each of three lines; the gap between them is not drawn.
        assert_eq!(lines.len(), 6);
        let height = TOP + 2.0 * PANEL_HEIGHT + PANEL_GAP + BOTTOM;
        for (x, y) in lines.iter().flatten() {
            assert!((LEFT..=WIDTH - RIGHT).contains(x), "x {x}");
            assert!((TOP..=height - BOTTOM).contains(y), "y {y}");
        }
        assert_eq!(svg.matches("stroke-dasharray").count(), 2);
    }

    #[test]
    fn the_highest_value_stays_below_the_top_of_its_panel_and_zero_sits_on_the_axis() {
        let svg = render(&chart());
        let first = &polylines(&svg)[0];
        // node0 in the RSS panel: 0 at the bottom, 27 below the axis top of 30.
        assert_eq!(first[0].1, TOP + PANEL_HEIGHT);
        let top_y = first.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        assert!(top_y > TOP, "{top_y}");
    }

    #[test]
    fn text_is_escaped() {
        let svg = render(&chart());
        assert!(svg.contains("RSS &lt;&amp;&gt; fds"));
        assert!(!svg.contains("<&>"));
    }

    #[test]
    fn an_empty_chart_renders_without_nan() {
        let svg = render(&Chart::default());
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let flat_zero = Chart {
            panels: vec![Panel {
                title: "zero".into(),
                lines: vec![Line {
                    label: "x".into(),
                    segments: vec![vec![(0.0, 0.0), (0.0, 0.0)]],
                }],
            }],
            ..Chart::default()
        };
        let svg = render(&flat_zero);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn axis_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(100.0), 20.0);
        assert_eq!(nice_step(7.0), 2.0);
        assert_eq!(nice_step(1800.0), 500.0);
        assert_eq!(nice_max(87.0), 100.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(ticks(30.0), vec![0.0, 10.0, 20.0, 30.0]);
    }
}
