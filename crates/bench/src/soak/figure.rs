//! The soak's figure, drawn from its samples with [`super::svg`].

use super::record::{NodeSample, Tick};
use super::svg::{self, Chart, Line, Panel};

/// The figure of `ticks`: RSS and descriptors per node, the message rate, and queue depths;
/// `restarts` (time, node) are marked on every panel.
pub fn render(ticks: &[Tick], restarts: &[(f64, usize)]) -> String {
    let n = ticks.iter().map(|t| t.nodes.len()).max().unwrap_or(0);
    let per_node = |f: &dyn Fn(&NodeSample) -> Option<f64>| -> Vec<Line> {
        (0..n)
            .map(|k| Line {
                label: format!("node{k}"),
                segments: segments(ticks.iter().map(|t| (t.t_s, t.nodes.get(k).and_then(f)))),
            })
            .collect()
    };
    // The closing sample is taken after the load stopped: a rate ending there would show a
    // drop that is not the network's.
    let running = &ticks[..ticks.len().saturating_sub(1)];
    let rate = |f: &dyn Fn(&Tick) -> u64| -> Vec<(f64, f64)> {
        running
            .windows(2)
            .filter(|w| w[1].t_s > w[0].t_s)
            .map(|w| {
                let d = f(&w[1]).saturating_sub(f(&w[0]));
                (w[1].t_s, d as f64 / (w[1].t_s - w[0].t_s))
            })
            .collect()
    };
    let queue = |label: &str, f: &dyn Fn(&Tick) -> u64| Line {
        label: label.into(),
        segments: vec![ticks.iter().map(|t| (t.t_s, f(t) as f64)).collect()],
    };
    let chart = Chart {
        title: format!("chainmesh soak: {n} nodes"),
        panels: vec![
            Panel {
                title: "RSS (MiB) per node".into(),
                lines: per_node(&|s| s.proc_.map(|p| p.rss_kb as f64 / 1024.0)),
            },
            Panel {
                title: "open file descriptors per node".into(),
                lines: per_node(&|s| s.proc_.map(|p| p.fds as f64)),
            },
            Panel {
                title: "messages per second, all nodes".into(),
                lines: vec![
                    Line {
                        label: "sent, all kinds".into(),
                        segments: vec![rate(&Tick::messages_sent)],
                    },
                    Line {
                        label: "load generator".into(),
                        segments: vec![rate(&|t| t.total_counts().0.sent())],
                    },
                    Line {
                        label: "AMOP".into(),
                        segments: vec![rate(&|t| {
                            let a = t.total_counts().1;
                            a.sent.saturating_add(a.mc_published)
                        })],
                    },
                ],
            },
            Panel {
                title: "queues, all nodes: in flight (messages), AMOP queued (KiB)".into(),
                lines: vec![
                    queue("requests in flight", &|t| t.total_counts().0.req_in_flight),
                    queue("AMOP in flight", &|t| t.total_counts().1.in_flight()),
                    queue("AMOP queued KiB", &|t| {
                        t.nodes
                            .iter()
                            .filter_map(|n| n.admin)
                            .map(|a| a.amop_queued_bytes / 1024)
                            .sum()
                    }),
                ],
            },
        ],
        markers: restarts
            .iter()
            .map(|(t, k)| (*t, format!("node{k} restarted")))
            .collect(),
    };
    svg::render(&chart)
}

/// Runs of consecutive present values.
fn segments(values: impl Iterator<Item = (f64, Option<f64>)>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (t, v) in values {
        match (v, out.last_mut()) {
            (Some(v), Some(run)) => run.push((t, v)),
            (None, Some(run)) if !run.is_empty() => out.push(Vec::new()),
            _ => {}
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainmesh_testkit::procs::procfs::ProcSample;

    #[test]
    fn a_node_without_a_reading_breaks_its_line() {
        let runs = segments(
            [
                (0.0, Some(1.0)),
                (1.0, Some(2.0)),
                (2.0, None),
                (3.0, Some(4.0)),
                (4.0, None),
            ]
            .into_iter(),
        );
        assert_eq!(runs, vec![vec![(0.0, 1.0), (1.0, 2.0)], vec![(3.0, 4.0)]]);
        assert!(segments(std::iter::empty()).is_empty());
    }

    #[test]
    fn the_figure_has_four_panels_a_line_per_node_and_the_restarts_marked() {
        let ticks: Vec<Tick> = (0..10u32)
            .map(|i| Tick {
                t_s: f64::from(i) * 5.0,
                nodes: (0..3)
                    .map(|k| NodeSample {
                        node: k,
                        proc_: Some(ProcSample {
                            rss_kb: 10_240,
                            fds: 20,
                        }),
                        ..NodeSample::default()
                    })
                    .collect(),
            })
            .collect();
        let svg = render(&ticks, &[(20.0, 2)]);
        for title in [
            "RSS (MiB) per node",
            "open file descriptors per node",
            "messages per second",
        ] {
            assert!(svg.contains(title), "{title}");
        }
        assert!(svg.contains(">node2<"));
        // One dashed marker per panel.
        assert_eq!(svg.matches("node2 restarted").count(), 4);
    }
}
