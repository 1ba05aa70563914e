//! SVG figures written next to a benchmark's JSON report: latency CDFs, a failover
//! timeline, and a curve of one quantity against another (throughput against batch size).
//!
//! Text is laid out without font files (plotters' built-in estimate of glyph widths), so
//! the figures render the same on any machine; a viewer picks the font.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Colours of the series, in order.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The colour of series `index`.
pub fn colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

const SIZE: (u32, u32) = (960, 600);

/// Where a figure goes: next to the JSON report (`x.json` → `x<suffix>.svg`).
pub fn beside(json: &Path, suffix: &str) -> PathBuf {
    let stem = json.file_stem().map_or_else(|| "report".into(), |stem| stem.to_string_lossy().into_owned());
    json.with_file_name(format!("{stem}{suffix}.svg"))
}

/// One distribution of a CDF figure.
#[derive(Debug)]
pub struct CdfSeries<'a> {
    /// Its legend.
    pub label: String,
    /// Nanosecond samples.
    pub histogram: &'a Histogram<u64>,
    /// Its colour's index.
    pub colour: usize,
    /// Drawn thin (a baseline) or thick.
    pub thin: bool,
}

/// The points of a distribution's CDF: (microseconds, fraction of samples at or below).
pub fn cdf_points(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = histogram.len().max(1) as f64;
    let mut seen = 0u64;
    histogram
        .iter_recorded()
        .map(|value| {
            seen += value.count_at_value();
            (histogram.highest_equivalent(value.value_iterated_to()) as f64 / 1_000.0, seen as f64 / total)
        })
        .collect()
}

/// Writes latency CDFs, latency on a logarithmic axis, to `path`.
pub fn write_cdf(path: &Path, title: &str, series: &[CdfSeries<'_>]) -> Result<()> {
    let curves: Vec<Vec<(f64, f64)>> = series.iter().map(|series| cdf_points(series.histogram)).collect();
    let xs = || curves.iter().flatten().map(|&(x, _)| x);
    ensure!(xs().next().is_some(), "no samples to plot");
    let low = xs().fold(f64::INFINITY, f64::min).max(0.001) / 1.2;
    let high = xs().fold(0.0, f64::max) * 1.2;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((low..high).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency (µs, log scale)")
        .y_desc("fraction of samples at or below")
        .draw()?;
    for (series, curve) in series.iter().zip(curves) {
        let colour = colour(series.colour);
        let style = colour.stroke_width(if series.thin { 1 } else { 2 });
        chart
            .draw_series(LineSeries::new(curve, style))?
            .label(series.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One row of a timeline: consecutive phases from the origin.
#[derive(Clone, Debug)]
pub struct TimelineRow {
    /// Shown left of the row.
    pub label: String,
    /// `(start µs, end µs, phase index)`.
    pub segments: Vec<(f64, f64, usize)>,
    /// Instants marked with a tick over the row: `(µs, what)` (the legend names them).
    pub ticks: Vec<f64>,
}

/// One panel of a timeline figure.
#[derive(Clone, Debug)]
pub struct TimelinePanel {
    /// Its caption.
    pub title: String,
    /// Its rows, top to bottom.
    pub rows: Vec<TimelineRow>,
}

/// Writes stacked phase bars, a panel per scenario, to `path`; `phases` names the phase
/// indices, `tick` what the ticks mark.
pub fn write_timeline(path: &Path, phases: &[&str], tick: &str, panels: &[TimelinePanel]) -> Result<()> {
    ensure!(!panels.is_empty(), "no panel to draw");
    let height = SIZE.1.max(260 * panels.len() as u32);
    let root = SVGBackend::new(path, (SIZE.0, height)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
        let end = panel
            .rows
            .iter()
            .flat_map(|row| row.segments.iter().map(|&(_, end, _)| end).chain(row.ticks.iter().copied()))
            .fold(1.0, f64::max)
            * 1.05;
        let rows = panel.rows.len().max(1) as f64;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end, 0.0..rows)?;
        chart
            .configure_mesh()
            .x_desc("µs after the signal")
            .y_desc("trial")
            .disable_y_mesh()
            .y_labels(panel.rows.len().min(20))
            .y_label_formatter(&|y| {
                let index = *y as usize;
                panel.rows.get(index).map_or_else(String::new, |row| row.label.clone())
            })
            .draw()?;
        for (index, name) in phases.iter().enumerate() {
            let colour = colour(index);
            chart
                .draw_series(panel.rows.iter().enumerate().flat_map(|(row_index, row)| {
                    let y = row_index as f64;
                    row.segments.iter().filter(move |segment| segment.2 == index).map(
                        move |&(start, end, _)| {
                            Rectangle::new([(start, y + 0.15), (end, y + 0.85)], colour.filled())
                        },
                    )
                }))?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], colour.filled()));
        }
        chart
            .draw_series(panel.rows.iter().enumerate().flat_map(|(row_index, row)| {
                let y = row_index as f64;
                row.ticks.iter().map(move |&at| PathElement::new(vec![(at, y + 0.05), (at, y + 0.95)], BLACK))
            }))?
            .label(tick)
            .legend(|(x, y)| PathElement::new(vec![(x + 7, y - 6), (x + 7, y + 6)], BLACK));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// One curve of a line figure.
#[derive(Clone, Debug)]
pub struct Curve {
    /// Its legend.
    pub label: String,
    /// Its points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// Writes curves of `y` against `x` (x on a base-2 logarithmic axis) to `path`.
pub fn write_curves(path: &Path, title: &str, x_desc: &str, y_desc: &str, curves: &[Curve]) -> Result<()> {
    let points = || curves.iter().flat_map(|curve| curve.points.iter().copied());
    ensure!(points().next().is_some(), "no point to plot");
    let x_low = points().map(|(x, _)| x).fold(f64::INFINITY, f64::min).max(0.5);
    let x_high = points().map(|(x, _)| x).fold(1.0, f64::max);
    let y_high = points().map(|(_, y)| y).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((x_low / 1.2..x_high * 1.2).log_scale().base(2.0), 0.0..y_high)?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw()?;
    for (index, curve) in curves.iter().enumerate() {
        let colour = colour(index);
        chart
            .draw_series(LineSeries::new(curve.points.clone(), colour.stroke_width(2)))?
            .label(curve.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(curve.points.iter().map(|&point| Circle::new(point, 3, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_svg_documents() {
        let dir = std::env::temp_dir().join(format!("usec-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        for value in [900, 1_000, 1_100, 5_000] {
            histogram.record(value).unwrap();
        }
        let points = cdf_points(&histogram);
        assert_eq!(points.last().unwrap().1, 1.0);
        assert!(points.windows(2).all(|pair| pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1));

        let cdf = dir.join("cdf.svg");
        let series = [CdfSeries { label: "mu".into(), histogram: &histogram, colour: 0, thin: false }];
        write_cdf(&cdf, "latency", &series).unwrap();
        let timeline = dir.join("timeline.svg");
        let row = TimelineRow {
            label: "1".into(),
            segments: vec![(0.0, 40.0, 0), (40.0, 55.0, 1)],
            ticks: vec![42.0],
        };
        let panel = TimelinePanel { title: "SIGKILL".into(), rows: vec![row] };
        write_timeline(&timeline, &["detection", "switch"], "grant", &[panel]).unwrap();
        let curves = dir.join("curves.svg");
        let curve = Curve { label: "pipeline 8".into(), points: vec![(1.0, 10.0), (2.0, 19.0), (4.0, 30.0)] };
        write_curves(&curves, "throughput", "batch", "commands/s", &[curve]).unwrap();
        for path in [&cdf, &timeline, &curves] {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{}", path.display());
        }
        assert!(std::fs::read_to_string(&timeline).unwrap().contains("detection"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            beside(Path::new("/tmp/out/mu-latency.json"), "-cdf"),
            Path::new("/tmp/out/mu-latency-cdf.svg")
        );
    }
}
