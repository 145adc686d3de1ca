//! Synthetic sales histories shaped like the Kaggle "Store Item Demand Forecasting Challenge".
//!
//! Sales are Poisson around `52.25 x store x item x weekday x month x year`, the structure
//! measured on the real file (no holidays, no promotions, variance equal to the mean). The
//! output is deterministic for a given seed and configuration.

use std::io::Write;
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, Poisson};

/// Store factors for stores 1..=10.
const STORE_FACTORS: [f64; 10] = [
    0.905, 1.283, 1.139, 1.051, 0.761, 0.760, 0.696, 1.228, 1.054, 1.124,
];
/// Day-of-week factors, Monday..Sunday.
const WEEKDAY_FACTORS: [f64; 7] = [0.793, 0.923, 0.926, 0.990, 1.056, 1.123, 1.189];
/// Month factors, January..December.
const MONTH_FACTORS: [f64; 12] = [
    0.680, 0.754, 0.905, 1.056, 1.132, 1.206, 1.282, 1.131, 1.054, 0.980, 1.057, 0.753,
];
/// Year factors from 2013; later years keep the last one.
const YEAR_FACTORS: [f64; 5] = [0.833, 0.958, 1.000, 1.083, 1.126];

/// Items whose mean daily sales per store fall into the groups seen in the real data.
const ITEM_GROUPS: [(f64, &[u32]); 6] = [
    (22.0, &[1, 4, 27, 41, 47]),
    (29.3, &[23, 37, 40, 44, 49]),
    (58.6, &[2, 6, 7, 14, 31, 46]),
    (69.6, &[11, 12, 29, 33]),
    (80.6, &[22, 25, 38, 45]),
    (88.0, &[15, 28]),
];
const LOWEST_ITEM_MEAN: f64 = 18.4;
const HIGHEST_ITEM_MEAN: f64 = 88.0;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateConfig {
    /// Seed of the random generator.
    pub seed: u64,
    /// Number of stores (ids `1..=stores`).
    pub stores: u32,
    /// Number of items (ids `1..=items`).
    pub items: u32,
    /// First day of `train.csv`.
    pub train_start: NaiveDate,
    /// Last day of `train.csv`.
    pub train_end: NaiveDate,
    /// Number of days in `test.csv`, starting the day after `train_end`.
    pub test_days: u32,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            seed: 2018,
            stores: 10,
            items: 50,
            train_start: NaiveDate::from_ymd_opt(2013, 1, 1).unwrap_or_default(),
            train_end: NaiveDate::from_ymd_opt(2017, 12, 31).unwrap_or_default(),
            test_days: 90,
        }
    }
}

/// Factor of store `store` (stores beyond the ten measured cycle through them).
fn store_factor(store: u32) -> f64 {
    STORE_FACTORS[(store as usize - 1) % STORE_FACTORS.len()]
}

/// Mean daily sales of an item in an average store, over the whole history.
const OVERALL_MEAN: f64 = 52.25;
const MEASURED_ITEMS: u32 = 50;

/// Mean daily sales per store of item `item` (items beyond 50 cycle through the 50).
fn item_mean(item: u32) -> f64 {
    let item = (item - 1) % MEASURED_ITEMS + 1;
    if let Some((mean, _)) = ITEM_GROUPS.iter().find(|(_, ids)| ids.contains(&item)) {
        return *mean;
    }
    if item == 5 {
        return LOWEST_ITEM_MEAN;
    }
    // The remaining items spread evenly between the lowest and highest means, in an order
    // that does not follow the id, shifted so that the 50 items average the overall mean.
    let grouped: Vec<u32> = ITEM_GROUPS
        .iter()
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect();
    let rest: Vec<u32> = (1..=MEASURED_ITEMS)
        .filter(|i| *i != 5 && !grouped.contains(i))
        .collect();
    let n = rest.len() as f64;
    let spread = |slot: usize| {
        LOWEST_ITEM_MEAN + (HIGHEST_ITEM_MEAN - LOWEST_ITEM_MEAN) * (slot as f64 + 1.0) / (n + 1.0)
    };
    let fixed: f64 = ITEM_GROUPS
        .iter()
        .map(|(mean, ids)| mean * ids.len() as f64)
        .sum::<f64>()
        + LOWEST_ITEM_MEAN;
    let spread_mean = (0..rest.len()).map(spread).sum::<f64>() / n;
    let shift = (OVERALL_MEAN * f64::from(MEASURED_ITEMS) - fixed) / n - spread_mean;
    let rank = rest.iter().position(|i| *i == item).unwrap_or(0);
    spread((rank * 7) % rest.len()) + shift
}

/// Expected sales of one store-item on one day.
pub fn expected_sales(date: NaiveDate, store: u32, item: u32) -> f64 {
    let weekday = WEEKDAY_FACTORS[date.weekday().num_days_from_monday() as usize];
    let month = MONTH_FACTORS[date.month0() as usize];
    let year_index = usize::try_from(date.year() - 2013)
        .unwrap_or(0)
        .min(YEAR_FACTORS.len() - 1);
    let year = YEAR_FACTORS[year_index];
    // The item mean already is the overall level (52.25) times the item factor.
    item_mean(item) * store_factor(store) * weekday * month * year
}

/// Writes `train.csv` (`date,store,item,sales`) and `test.csv` (`id,date,store,item`) into
/// `dir`, ordered like the Kaggle files (item, then store, then date). Returns the row counts.
pub fn generate(config: &GenerateConfig, dir: &Path) -> anyhow::Result<(u64, u64)> {
    anyhow::ensure!(
        config.stores >= 1 && config.items >= 1,
        "need at least one store and item"
    );
    anyhow::ensure!(
        config.train_start <= config.train_end,
        "train_start is after train_end"
    );
    std::fs::create_dir_all(dir)?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
    let train_days: Vec<NaiveDate> = config
        .train_start
        .iter_days()
        .take_while(|d| *d <= config.train_end)
        .collect();
    let test_days: Vec<NaiveDate> = config
        .train_end
        .iter_days()
        .skip(1)
        .take(config.test_days as usize)
        .collect();

    let mut train =
        Vec::with_capacity(train_days.len() * (config.stores * config.items) as usize * 20);
    writeln!(train, "date,store,item,sales")?;
    let mut train_rows = 0u64;
    for item in 1..=config.items {
        for store in 1..=config.stores {
            for date in &train_days {
                let lambda = expected_sales(*date, store, item);
                let sales: f64 = Poisson::new(lambda)?.sample(&mut rng);
                writeln!(
                    train,
                    "{},{store},{item},{}",
                    date.format("%Y-%m-%d"),
                    sales as u64
                )?;
                train_rows += 1;
            }
        }
    }
    let mut test = Vec::new();
    writeln!(test, "id,date,store,item")?;
    let mut test_rows = 0u64;
    for item in 1..=config.items {
        for store in 1..=config.stores {
            for date in &test_days {
                writeln!(
                    test,
                    "{test_rows},{},{store},{item}",
                    date.format("%Y-%m-%d")
                )?;
                test_rows += 1;
            }
        }
    }
    crate::train::write_atomically(&dir.join("train.csv"), &train)?;
    crate::train::write_atomically(&dir.join("test.csv"), &test)?;
    Ok((train_rows, test_rows))
}

/// A generated history of `stores` x `items` from 2013-01-01 to `train_end` in a fresh
/// directory (with its `test.csv` of `test_days` days), for the crate's tests.
#[cfg(test)]
pub(crate) fn generated_history(
    stores: u32,
    items: u32,
    train_end: NaiveDate,
    test_days: u32,
) -> (tempfile::TempDir, crate::data::SalesHistory) {
    let dir = tempfile::tempdir().unwrap();
    let config = GenerateConfig {
        stores,
        items,
        train_end,
        test_days,
        ..GenerateConfig::default()
    };
    generate(&config, dir.path()).unwrap();
    let history = crate::data::read_sales_csv(&dir.path().join("train.csv")).unwrap();
    (dir, history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GenerateConfig {
        GenerateConfig {
            stores: 2,
            items: 3,
            train_end: NaiveDate::from_ymd_opt(2013, 3, 31).unwrap(),
            test_days: 5,
            ..GenerateConfig::default()
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        generate(&small(), a.path()).unwrap();
        generate(&small(), b.path()).unwrap();
        generate(&GenerateConfig { seed: 7, ..small() }, c.path()).unwrap();
        let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("train.csv")).unwrap();
        assert_eq!(read(&a), read(&b));
        assert_ne!(read(&a), read(&c));
    }

    #[test]
    fn files_have_the_kaggle_schemas_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let (train_rows, test_rows) = generate(&small(), dir.path()).unwrap();
        assert_eq!(train_rows, 2 * 3 * 90);
        assert_eq!(test_rows, 2 * 3 * 5);
        let history = crate::data::read_sales_csv(&dir.path().join("train.csv")).unwrap();
        assert_eq!(history.records.len() as u64, train_rows);
        let test = std::fs::read_to_string(dir.path().join("test.csv")).unwrap();
        let mut lines = test.lines();
        assert_eq!(lines.next(), Some("id,date,store,item"));
        assert_eq!(lines.next(), Some("0,2013-04-01,1,1"));
    }

    #[test]
    fn expected_sales_follow_the_measured_factors() {
        let monday = NaiveDate::from_ymd_opt(2015, 6, 1).unwrap();
        let sunday = NaiveDate::from_ymd_opt(2015, 6, 7).unwrap();
        let ratio = expected_sales(sunday, 1, 1) / expected_sales(monday, 1, 1);
        assert!((ratio - 1.189 / 0.793).abs() < 1e-12);
        assert!(
            (expected_sales(monday, 2, 15) / expected_sales(monday, 1, 15) - 1.283 / 0.905).abs()
                < 1e-12
        );
        assert!((item_mean(5) - 18.4).abs() < 1e-12);
        assert!((1..=50).all(|i| (18.4..=88.0).contains(&item_mean(i))));
        let average = (1..=50).map(item_mean).sum::<f64>() / 50.0;
        assert!((average - 52.25).abs() < 1e-9, "{average}");
    }

    /// Mean of `sales` grouped by `key`, divided by the overall mean.
    fn factors<K: Ord + Copy>(
        rows: &[crate::data::SalesRecord],
        key: impl Fn(&crate::data::SalesRecord) -> K,
    ) -> Vec<f64> {
        let overall = rows.iter().map(|r| r.sales).sum::<f64>() / rows.len() as f64;
        let mut groups = std::collections::BTreeMap::<K, (f64, f64)>::new();
        for row in rows {
            let entry = groups.entry(key(row)).or_default();
            entry.0 += row.sales;
            entry.1 += 1.0;
        }
        groups.values().map(|(sum, n)| sum / n / overall).collect()
    }

    fn assert_close(name: &str, measured: &[f64], expected: &[f64], tolerance: f64) {
        assert_eq!(measured.len(), expected.len(), "{name}");
        for (i, (m, e)) in measured.iter().zip(expected).enumerate() {
            assert!(
                (m / e - 1.0).abs() < tolerance,
                "{name}[{i}]: measured {m:.4}, expected {e:.4}"
            );
        }
    }

    /// The full default history reproduces the structure measured on the real Kaggle file.
    #[test]
    fn the_full_history_has_the_measured_kaggle_structure() {
        let dir = tempfile::tempdir().unwrap();
        let (rows, test_rows) = generate(&GenerateConfig::default(), dir.path()).unwrap();
        assert_eq!((rows, test_rows), (913_000, 45_000));
        let history = crate::data::read_sales_csv(&dir.path().join("train.csv")).unwrap();
        let rows = &history.records;

        let mean = rows.iter().map(|r| r.sales).sum::<f64>() / rows.len() as f64;
        assert!((mean / 52.25 - 1.0).abs() < 0.01, "mean {mean}");
        assert!(
            rows.iter()
                .all(|r| r.sales.fract() == 0.0 && r.sales >= 0.0)
        );

        assert_close("store", &factors(rows, |r| r.store), &STORE_FACTORS, 0.01);
        assert_close(
            "weekday",
            &factors(rows, |r| r.date.weekday().num_days_from_monday()),
            &WEEKDAY_FACTORS,
            0.01,
        );
        // Month means also carry the weekday mix of each month: allow 2%.
        assert_close(
            "month",
            &factors(rows, |r| r.date.month()),
            &MONTH_FACTORS,
            0.02,
        );
        assert_close(
            "year",
            &factors(rows, |r| r.date.year()),
            &YEAR_FACTORS,
            0.01,
        );
        for (mean, ids) in ITEM_GROUPS {
            for id in ids {
                let sales: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.item.get() == *id)
                    .map(|r| r.sales)
                    .collect();
                let item_mean = sales.iter().sum::<f64>() / sales.len() as f64;
                assert!(
                    (item_mean / mean - 1.0).abs() < 0.02,
                    "item {id}: {item_mean} vs {mean}"
                );
            }
        }

        // Poisson: the variance equals the mean, i.e. (sales - expected)^2 / expected averages 1.
        let dispersion = rows
            .iter()
            .map(|r| {
                let expected = expected_sales(r.date, r.store.get(), r.item.get());
                (r.sales - expected).powi(2) / expected
            })
            .sum::<f64>()
            / rows.len() as f64;
        assert!(
            (dispersion - 1.0).abs() < 0.02,
            "variance/mean {dispersion}"
        );
    }
}
