//! Figures with plotters: the ablation curves and per-layer bars, as SVG and PNG.

use crate::commands::report::LayerStat;
use crate::output::ValueRow;
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One curve of the ablation figure.
pub struct Curve<'a> {
    pub label: &'a str,
    pub color: RGBColor,
    pub values: &'a [f64],
    /// Optional band (low, high) drawn around the curve.
    pub band: Option<(&'a [f64], &'a [f64])>,
}

fn draw_ablation<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    metric: &str,
    curves: &[Curve<'_>],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    ablation_panel(&root, metric, curves)?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The ablation chart drawn into `root` (no fill, no present: it may be one panel of several).
fn ablation_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    metric: &str,
    curves: &[Curve<'_>],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let k_max = curves
        .iter()
        .map(|c| c.values.len())
        .max()
        .unwrap_or(1)
        .saturating_sub(1)
        .max(1);
    let all = curves.iter().flat_map(|c| {
        c.values.iter().chain(
            c.band
                .into_iter()
                .flat_map(|(l, h)| l.iter().chain(h.iter())),
        )
    });
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
        (a.min(v), b.max(v))
    });
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("{metric} after removing k players"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..k_max as f64, (lo - pad)..(hi + pad))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("players removed (k)")
        .y_desc(metric)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for c in curves {
        if let Some((low, high)) = c.band {
            let poly: Vec<(f64, f64)> = low
                .iter()
                .enumerate()
                .map(|(k, &v)| (k as f64, v))
                .chain(high.iter().enumerate().rev().map(|(k, &v)| (k as f64, v)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(poly, c.color.mix(0.2))))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let color = c.color;
        chart
            .draw_series(LineSeries::new(
                c.values.iter().enumerate().map(|(k, &v)| (k as f64, v)),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(c.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Write `path` (.svg) and the same figure as .png.
pub fn ablation(path: &Path, metric: &str, curves: &[Curve<'_>]) -> Result<()> {
    draw_ablation(
        SVGBackend::new(path, (900, 560)).into_drawing_area(),
        metric,
        curves,
    )
    .with_context(|| format!("drawing {}", path.display()))?;
    let png = path.with_extension("png");
    draw_ablation(
        BitMapBackend::new(&png, (900, 560)).into_drawing_area(),
        metric,
        curves,
    )
    .with_context(|| format!("drawing {}", png.display()))
}

fn draw_layers<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rows: &[ValueRow],
    layers: &[LayerStat],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let areas = root.split_evenly((layers.len().max(1), 1));
    for (layer, area) in layers.iter().map(|l| l.node.as_str()).zip(areas) {
        let mut vals: Vec<&ValueRow> = rows.iter().filter(|r| r.node == layer).collect();
        vals.sort_by_key(|r| r.index);
        let n = vals.len();
        let lo = vals
            .iter()
            .map(|r| r.ci_low.min(r.value))
            .fold(0.0, f64::min);
        let hi = vals
            .iter()
            .map(|r| r.ci_high.max(r.value))
            .fold(0.0, f64::max);
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!("Shapley value per channel of {layer}"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (lo - pad)..(hi + pad))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("channel")
            .y_desc("Shapley value")
            .disable_x_mesh()
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(vals.iter().enumerate().map(|(i, r)| {
                let x = i as f64;
                let color = if r.value >= 0.0 {
                    BLUE.mix(0.7)
                } else {
                    RED.mix(0.7)
                };
                Rectangle::new([(x - 0.4, 0.0), (x + 0.4, r.value)], color.filled())
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(vals.iter().enumerate().map(|(i, r)| {
                PathElement::new(
                    vec![(i as f64, r.ci_low), (i as f64, r.ci_high)],
                    BLACK.stroke_width(1),
                )
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Layer name for an axis: at most `max` characters, the end kept (it says which block).
fn axis_name(name: &str, max: usize) -> String {
    let n = name.chars().count();
    if n <= max {
        name.to_owned()
    } else {
        let tail: String = name.chars().skip(n - (max - 1)).collect();
        format!("…{tail}")
    }
}

/// Many layers on one figure: the total Shapley value of each layer (bars, top) and every
/// channel's value (dots, bottom), layers in player order along x.
fn draw_layer_summary<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rows: &[ValueRow],
    layers: &[LayerStat],
    label_area: u32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let l = layers.len();
    let index: std::collections::HashMap<&str, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, s)| (s.node.as_str(), i))
        .collect();
    let font = if l > 120 {
        8
    } else if l > 60 {
        10
    } else {
        12
    };
    let step = l.div_ceil(200).max(1);
    let names: Vec<String> = layers.iter().map(|s| axis_name(&s.node, 40)).collect();
    let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 * 2 / 5);
    let totals: Vec<f64> = layers.iter().map(|s| s.total).collect();
    let (lo, hi) = totals
        .iter()
        .fold((0.0f64, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "Total Shapley value per layer ({l} layers, {} players)",
                rows.len()
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(10)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..l as f64 - 0.5, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("sum over the layer")
        .y_label_formatter(&|v| tick(*v))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(totals.iter().enumerate().map(|(i, &v)| {
            let x = i as f64;
            let color = if v >= 0.0 {
                BLUE.mix(0.7)
            } else {
                RED.mix(0.7)
            };
            Rectangle::new([(x - 0.4, 0.0), (x + 0.4, v)], color.filled())
        }))
        .map_err(err)?;
    let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    let mut chart = ChartBuilder::on(&bottom)
        .caption("Shapley value of every channel", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(label_area)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..l as f64 - 0.5, range(&values))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("Shapley value")
        .y_label_formatter(&|v| tick(*v))
        .draw()
        .map_err(err)?;
    // Deterministic jitter within each layer's column, so dense layers read as a strip.
    chart
        .draw_series(rows.iter().filter(|r| r.value.is_finite()).map(|r| {
            let i = index.get(r.node.as_str()).copied().unwrap_or(0);
            let jitter = ((r.index.wrapping_mul(2654435761) % 1000) as f64 / 1000.0 - 0.5) * 0.6;
            Circle::new(
                (i as f64 + jitter, r.value),
                2,
                RGBColor(30, 90, 200).mix(0.35).filled(),
            )
        }))
        .map_err(err)?;
    // Layer names, rotated, below the axis (drawn here: plotters' rotated tick labels overlap
    // their tick marks).
    let style = TextStyle::from(
        ("sans-serif", font)
            .into_font()
            .transform(FontTransform::Rotate90),
    )
    .pos(Pos::new(HPos::Left, VPos::Center));
    let y_axis = chart.y_range().start;
    for i in (0..l).step_by(step) {
        let (px, py) = chart.backend_coord(&(i as f64, y_axis));
        root.draw(&Text::new(names[i].clone(), (px, py + 6), style.clone()))
            .map_err(err)?;
        root.draw(&PathElement::new(vec![(px, py), (px, py + 4)], BLACK))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Up to this many layers get one panel each; more get the one-figure summary.
const PANELS_UP_TO: usize = 8;

/// Per-layer figure (.svg and .png): a bar panel per layer for a few layers; for many, one
/// figure of per-layer totals and every channel's value.
pub fn layer_bars(rows: &[ValueRow], layers: &[LayerStat], path: &Path) -> Result<()> {
    let png = path.with_extension("png");
    if layers.len() <= PANELS_UP_TO {
        let size = (900, 300 * layers.len().max(1) as u32);
        draw_layers(
            SVGBackend::new(path, size).into_drawing_area(),
            rows,
            layers,
        )
        .with_context(|| format!("drawing {}", path.display()))?;
        return draw_layers(
            BitMapBackend::new(&png, size).into_drawing_area(),
            rows,
            layers,
        )
        .with_context(|| format!("drawing {}", png.display()));
    }
    let longest = layers
        .iter()
        .map(|s| s.node.chars().count().min(40))
        .max()
        .unwrap_or(8) as u32;
    let label_area = 30 + 5 * longest;
    let width = (160 + 14 * layers.len() as u32).clamp(1000, 3200);
    let size = (width, 700 + label_area);
    draw_layer_summary(
        SVGBackend::new(path, size).into_drawing_area(),
        rows,
        layers,
        label_area,
    )
    .with_context(|| format!("drawing {}", path.display()))?;
    draw_layer_summary(
        BitMapBackend::new(&png, size).into_drawing_area(),
        rows,
        layers,
        label_area,
    )
    .with_context(|| format!("drawing {}", png.display()))
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Blue (negative) - white (0) - red (positive), `t` in [-1, 1].
fn diverging(t: f64) -> RGBColor {
    let t = t.clamp(-1.0, 1.0);
    let mix = |a: u8, b: u8, w: f64| (a as f64 + (b as f64 - a as f64) * w).round() as u8;
    if t >= 0.0 {
        RGBColor(mix(255, 180, t), mix(255, 20, t), mix(255, 30, t))
    } else {
        RGBColor(mix(255, 30, -t), mix(255, 80, -t), mix(255, 190, -t))
    }
}

fn draw_heatmap<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    matrix: &[Vec<f64>],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let (main, bar) = root.split_horizontally(root.dim_in_pixel().0 - 115);
    let m = labels.len();
    let scale = matrix
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, v| a.max(v.abs()))
        .max(1e-12);
    let font = if m > 32 {
        9
    } else if m > 16 {
        11
    } else {
        13
    };
    // Rows carry full `node:channel` labels; columns a short one (the channel when every player
    // is in one node, else the row number) so they fit unrotated.
    let node_of = |l: &String| l.rsplit_once(':').map(|(n, _)| n.to_owned());
    let one_node = labels.iter().all(|l| node_of(l) == node_of(&labels[0]));
    let short: Vec<String> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| match (one_node, l.rsplit_once(':')) {
            (true, Some((_, c))) => c.to_owned(),
            _ => i.to_string(),
        })
        .collect();
    let x_desc = match (one_node, labels.first().and_then(node_of)) {
        (true, Some(node)) => format!("{node} channel"),
        _ => "row number".to_owned(),
    };
    let at = |names: &[String], x: f64| -> String {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < m {
            names[i as usize].clone()
        } else {
            String::new()
        }
    };
    let mut chart = ChartBuilder::on(&main)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(50)
        .y_label_area_size(100)
        .build_cartesian_2d(-0.5f64..m as f64 - 0.5, m as f64 - 0.5..-0.5f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(m)
        .y_labels(m)
        .x_label_formatter(&|x| at(&short, *x))
        .y_label_formatter(&|y| at(labels, *y))
        .x_label_style(("sans-serif", font))
        .y_label_style(("sans-serif", font))
        .x_desc(x_desc)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            (0..m)
                .flat_map(|i| (0..m).map(move |j| (i, j)))
                .map(|(i, j)| {
                    let v = matrix[i][j];
                    let color = if v.is_finite() {
                        diverging(v / scale)
                    } else {
                        RGBColor(225, 225, 225)
                    };
                    Rectangle::new(
                        [
                            (j as f64 - 0.5, i as f64 - 0.5),
                            (j as f64 + 0.5, i as f64 + 0.5),
                        ],
                        color.filled(),
                    )
                }),
        )
        .map_err(err)?;
    // colour bar: -scale .. +scale
    let mut cbar = ChartBuilder::on(&bar)
        .margin_top(60)
        .margin_bottom(100)
        .margin_right(10)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, -scale..scale)
        .map_err(err)?;
    cbar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(7)
        .y_label_style(("sans-serif", 13))
        .y_label_formatter(&|v| format!("{v:.3}"))
        .draw()
        .map_err(err)?;
    let steps = 100;
    cbar.draw_series((0..steps).map(|s| {
        let lo = -scale + 2.0 * scale * s as f64 / steps as f64;
        let hi = -scale + 2.0 * scale * (s + 1) as f64 / steps as f64;
        Rectangle::new(
            [(0.0, lo), (1.0, hi)],
            diverging((lo + hi) / 2.0 / scale).filled(),
        )
    }))
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Heatmap of a symmetric pairwise matrix (NaN = not computed, drawn grey), .svg and .png.
pub fn heatmap(path: &Path, title: &str, labels: &[String], matrix: &[Vec<f64>]) -> Result<()> {
    let side = (420 + 18 * labels.len() as u32).clamp(600, 1400);
    let size = (side + 115, side);
    draw_heatmap(
        SVGBackend::new(path, size).into_drawing_area(),
        title,
        labels,
        matrix,
    )
    .with_context(|| format!("drawing {}", path.display()))?;
    let png = path.with_extension("png");
    draw_heatmap(
        BitMapBackend::new(&png, size).into_drawing_area(),
        title,
        labels,
        matrix,
    )
    .with_context(|| format!("drawing {}", png.display()))
}

/// One scatter panel of the comparison figure: a measure (x) against Shapley value (y).
pub struct Scatter<'a> {
    pub x_label: &'a str,
    pub x: &'a [f64],
    pub y: &'a [f64],
    /// Spearman correlation shown in the caption.
    pub rho: Option<f64>,
}

/// Axis tick text: plain decimals for ordinary magnitudes, scientific for tiny or huge ones.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        return "0".to_owned();
    }
    if (1e-2..1e4).contains(&a) {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        format!("{v:.1e}")
    }
}

fn range(values: &[f64]) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return -1.0..1.0;
    }
    let pad = ((hi - lo) * 0.06).max(1e-9);
    (lo - pad)..(hi + pad)
}

fn scatter_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, s: &Scatter<'_>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let rho = s
        .rho
        .map_or_else(|| "undefined".into(), |r| format!("{r:.2}"));
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Shapley vs {} (Spearman {rho})", s.x_label),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(range(s.x), range(s.y))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(s.x_label)
        .y_desc("Shapley value")
        .x_labels(5)
        .y_labels(6)
        .x_label_formatter(&|v| tick(*v))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            s.x.iter()
                .zip(s.y)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(&x, &y)| Circle::new((x, y), 3, RGBColor(30, 90, 200).mix(0.7).filled())),
        )
        .map_err(err)?;
    Ok(())
}

fn draw_compare<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    metric: &str,
    scatters: &[Scatter<'_>],
    curves: &[Curve<'_>],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(430);
    for (area, s) in top
        .split_evenly((1, scatters.len().max(1)))
        .iter()
        .zip(scatters)
    {
        scatter_panel(area, s)?;
    }
    ablation_panel(&bottom, metric, curves)?;
    root.present().map_err(err)?;
    Ok(())
}

/// The comparison figure: one scatter per measure above the ablation curves (.svg and .png).
pub fn compare(
    path: &Path,
    metric: &str,
    scatters: &[Scatter<'_>],
    curves: &[Curve<'_>],
) -> Result<()> {
    let size = (1600, 1000);
    draw_compare(
        SVGBackend::new(path, size).into_drawing_area(),
        metric,
        scatters,
        curves,
    )
    .with_context(|| format!("drawing {}", path.display()))?;
    let png = path.with_extension("png");
    draw_compare(
        BitMapBackend::new(&png, size).into_drawing_area(),
        metric,
        scatters,
        curves,
    )
    .with_context(|| format!("drawing {}", png.display()))
}
