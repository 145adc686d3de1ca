//! `demand plot`: one store-item's history, the model's forecast and its P10-P90 band as an
//! SVG chart.
//!
//! The band covers the model's validation window (the days from its time split's cutoff,
//! which the booster did not see unless it was refitted) and the horizon after the last day
//! of the history, so a reader sees how the band held on known days before trusting it on
//! unknown ones.

use std::path::Path;

use anyhow::Context;
use chrono::{Days, NaiveDate};
use forecast::ForecastRequest;
use forecast::distribution::Predictive;
use plotters::prelude::*;

use crate::data::SalesRecord;

/// One day on the chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotDay {
    /// The day.
    pub date: NaiveDate,
    /// Units sold, when the history has the day.
    pub actual: Option<f64>,
    /// The model's point, on the days it forecasts.
    pub forecast: Option<f64>,
    /// P10 and P90 on the days it forecasts.
    pub band: Option<(f64, f64)>,
}

/// The days a chart spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlotSpan {
    /// First forecast day inside the history (the validation window's first day).
    pub from: NaiveDate,
    /// Days of history shown before `from`.
    pub history_days: u32,
    /// Days forecast after the last day of the history.
    pub horizon: u32,
}

/// The days of the chart of one store-item: `history_days` of history before `from`, every
/// day from `from` to the last day of the history, and `horizon` days after it. `predict`
/// maps requests to the model's mean predictions.
pub fn plot_days(
    records: &[SalesRecord],
    (store, item): (u32, u32),
    span: PlotSpan,
    distribution: Predictive,
    predict: impl Fn(&[ForecastRequest]) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<Vec<PlotDay>> {
    let PlotSpan {
        from,
        history_days,
        horizon,
    } = span;
    let series: Vec<&SalesRecord> = records
        .iter()
        .filter(|r| r.store.get() == store && r.item.get() == item)
        .collect();
    let template = series
        .first()
        .with_context(|| format!("the history has no rows for store {store}, item {item}"))?;
    let last = series.iter().map(|r| r.date).max().unwrap_or(template.date);
    let first = from
        .checked_sub_days(Days::new(u64::from(history_days)))
        .context("date out of range")?;
    let end = last
        .checked_add_days(Days::new(u64::from(horizon)))
        .context("date out of range")?;
    let days: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= end).collect();
    let forecast_days: Vec<ForecastRequest> = days
        .iter()
        .filter(|d| **d >= from)
        .map(|date| ForecastRequest {
            date: *date,
            store: template.store,
            item: template.item,
        })
        .collect();
    let means = predict(&forecast_days)?;
    let mut forecasts = forecast_days.iter().zip(means);
    let mut out = Vec::with_capacity(days.len());
    let mut next = forecasts.next();
    for date in days {
        let actual = series.iter().find(|r| r.date == date).map(|r| r.sales);
        let (forecast, band) = match next {
            Some((request, mean)) if request.date == date => {
                let q = distribution.at(mean).quantiles(&[0.1, 0.9]);
                next = forecasts.next();
                (Some(mean), Some((q[0], q[1])))
            }
            _ => (None, None),
        };
        out.push(PlotDay {
            date,
            actual,
            forecast,
            band,
        });
    }
    Ok(out)
}

/// Draws `days` into an SVG file at `path`.
pub fn write_svg(path: &Path, title: &str, days: &[PlotDay]) -> anyhow::Result<()> {
    let first = days.first().context("nothing to plot")?.date;
    let x = |date: NaiveDate| (date - first).num_days() as f64;
    let top = days
        .iter()
        .flat_map(|d| [d.actual, d.band.map(|b| b.1), d.forecast])
        .flatten()
        .fold(1.0_f64, f64::max)
        * 1.1;
    let width = days.len() as f64;
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    let draw = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..width, 0.0..top)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_labels(12)
        .x_label_formatter(&|v| {
            first
                .checked_add_days(Days::new(v.max(0.0) as u64))
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        })
        .y_desc("units sold")
        .draw()
        .map_err(draw)?;
    let band: Vec<(f64, f64, f64)> = days
        .iter()
        .filter_map(|d| d.band.map(|(lo, hi)| (x(d.date), lo, hi)))
        .collect();
    let outline: Vec<(f64, f64)> = band
        .iter()
        .map(|(at, _, hi)| (*at, *hi))
        .chain(band.iter().rev().map(|(at, lo, _)| (*at, *lo)))
        .collect();
    chart
        .draw_series(std::iter::once(Polygon::new(outline, BLUE.mix(0.18))))
        .map_err(draw)?
        .label("P10-P90")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], BLUE.mix(0.18).filled()));
    chart
        .draw_series(LineSeries::new(
            days.iter().filter_map(|d| d.actual.map(|a| (x(d.date), a))),
            BLACK.stroke_width(1),
        ))
        .map_err(draw)?
        .label("sales")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    chart
        .draw_series(LineSeries::new(
            days.iter()
                .filter_map(|d| d.forecast.map(|f| (x(d.date), f))),
            BLUE.stroke_width(2),
        ))
        .map_err(draw)?
        .label("forecast (mean)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use forecast::{ItemId, StoreId};

    fn records() -> Vec<SalesRecord> {
        let start = NaiveDate::from_ymd_opt(2017, 1, 1).unwrap();
        start
            .iter_days()
            .take(30)
            .enumerate()
            .flat_map(|(i, date)| {
                [1, 2].map(|store| SalesRecord {
                    date,
                    store: StoreId::new(store).unwrap(),
                    item: ItemId::new(1).unwrap(),
                    sales: (i as f64) + f64::from(store) * 100.0,
                })
            })
            .collect()
    }

    #[test]
    fn the_chart_has_history_a_validated_window_and_a_horizon() {
        let from = NaiveDate::from_ymd_opt(2017, 1, 21).unwrap();
        let span = PlotSpan {
            from,
            history_days: 10,
            horizon: 5,
        };
        let days = plot_days(&records(), (2, 1), span, Predictive::POISSON, |requests| {
            assert!(requests.iter().all(|r| r.store.get() == 2));
            Ok(requests.iter().map(|_| 50.0).collect())
        })
        .unwrap();
        // 10 days of history, 10 validated days (21st..30th), 5 days of horizon.
        assert_eq!(days.len(), 25);
        assert!(
            days[..10]
                .iter()
                .all(|d| d.actual.is_some() && d.forecast.is_none())
        );
        assert!(
            days[10..20]
                .iter()
                .all(|d| d.actual.is_some() && d.band.is_some())
        );
        assert!(
            days[20..]
                .iter()
                .all(|d| d.actual.is_none() && d.forecast == Some(50.0))
        );
        // Store 2's own sales, not store 1's.
        assert_eq!(days[0].actual, Some(210.0));
        // Poisson(50): P10 = 41, P90 = 59.
        assert_eq!(days[24].band, Some((41.0, 59.0)));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        write_svg(&path, "store 2, item 1", &days).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("P10-P90") && svg.contains("polygon"));
    }

    #[test]
    fn an_unknown_store_item_is_an_error() {
        let span = PlotSpan {
            from: NaiveDate::MIN,
            history_days: 1,
            horizon: 1,
        };
        let err = plot_days(&records(), (9, 1), span, Predictive::POISSON, |_| {
            Ok(vec![])
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("no rows for store 9, item 1"),
            "{err}"
        );
    }
}
