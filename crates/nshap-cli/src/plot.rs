//! Figures with plotters: the ablation curves and per-layer bars, as SVG and PNG.

use crate::output::ValueRow;
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
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
    let mut chart = ChartBuilder::on(&root)
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
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
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

fn draw_layers<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, rows: &[ValueRow]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut layers: Vec<&str> = Vec::new();
    for r in rows {
        if !layers.contains(&r.node.as_str()) {
            layers.push(&r.node);
        }
    }
    let areas = root.split_evenly((layers.len().max(1), 1));
    for (layer, area) in layers.iter().zip(areas) {
        let mut vals: Vec<&ValueRow> = rows.iter().filter(|r| r.node == *layer).collect();
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

/// Per-layer bar figure (.svg and .png).
pub fn layer_bars(rows: &[ValueRow], path: &Path) -> Result<()> {
    let layers = rows
        .iter()
        .map(|r| &r.node)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1);
    let size = (900, 300 * layers as u32);
    draw_layers(SVGBackend::new(path, size).into_drawing_area(), rows)
        .with_context(|| format!("drawing {}", path.display()))?;
    let png = path.with_extension("png");
    draw_layers(BitMapBackend::new(&png, size).into_drawing_area(), rows)
        .with_context(|| format!("drawing {}", png.display()))
}
