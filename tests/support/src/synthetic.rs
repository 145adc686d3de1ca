//! A Kaggle-shaped synthetic sales history and query rows over the service's domain, generated
//! deterministically without files on disk.

use chrono::{Datelike, Days, NaiveDate};

/// The original model's features, in order.
pub const FEATURES: [&str; 5] = ["store", "item", "month", "day", "year"];

/// splitmix64: deterministic noise without a dependency.
fn noise(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Feature rows `store, item, month, day, year` (day of week, Monday = 0) and daily sales for
/// `stores` x `items` over `days` days from 2013-01-01.
pub fn sales_history(stores: u32, items: u32, days: u32) -> (Vec<f64>, Vec<f32>) {
    let start = NaiveDate::from_ymd_opt(2013, 1, 1).unwrap_or_default();
    let mut state = 2018;
    let mut x = Vec::with_capacity((stores * items * days) as usize * FEATURES.len());
    let mut y = Vec::with_capacity((stores * items * days) as usize);
    for offset in 0..days {
        let date = start + Days::new(u64::from(offset));
        let month = f64::from(date.month());
        let weekday = f64::from(date.weekday().num_days_from_monday());
        let year = f64::from(date.year());
        let season = 1.0 + 0.3 * ((month - 1.0) / 12.0 * std::f64::consts::TAU).sin();
        let week = 1.0 + 0.08 * weekday;
        let trend = 1.0 + 0.07 * (year - 2013.0);
        for store in 1..=stores {
            for item in 1..=items {
                let level =
                    (10.0 + 3.0 * f64::from(store % 7)) * (0.5 + f64::from(item % 11) / 5.0);
                let sales =
                    (level * season * week * trend * (0.8 + 0.4 * noise(&mut state))).round();
                x.extend([f64::from(store), f64::from(item), month, weekday, year]);
                y.push(sales as f32);
            }
        }
    }
    (x, y)
}

/// `n` query rows spread over 10 stores, 50 items and every month and weekday of 2018.
pub fn query_rows(n: usize) -> Vec<f64> {
    (0..n)
        .flat_map(|i| {
            let i = i as u32;
            [
                f64::from(i % 10 + 1),
                f64::from(i / 10 % 50 + 1),
                f64::from(i % 12 + 1),
                f64::from(i % 7),
                2018.0,
            ]
        })
        .collect()
}
