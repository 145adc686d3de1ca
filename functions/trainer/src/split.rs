//! How rows are divided between fitting and validation.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;

use crate::data::SalesRecord;

/// A validation split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split {
    /// Hold out a seeded random `fraction` of the rows (the original notebook's method).
    Random {
        /// Fraction of rows held out, in `[0, 1)`.
        fraction: f64,
        /// Seed of the shuffle.
        seed: u64,
    },
    /// Fit on the days before `cutoff`, validate on `cutoff` and later: how forecasts are used.
    Time {
        /// First validation day.
        cutoff: NaiveDate,
    },
    /// No validation: fit on everything.
    None,
}

impl Default for Split {
    fn default() -> Self {
        Self::Random {
            fraction: 0.2,
            seed: 2018,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Random { fraction, seed } => write!(f, "random:{fraction}:{seed}"),
            Self::Time { cutoff } => write!(f, "time:{cutoff}"),
            Self::None => f.write_str("none"),
        }
    }
}

impl FromStr for Split {
    type Err = String;

    /// Parses `random:FRACTION[:SEED]`, `time:YYYY-MM-DD` or `none`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "expected random:FRACTION[:SEED], time:YYYY-MM-DD or none";
        let parts: Vec<&str> = s.trim().split(':').collect();
        match parts.as_slice() {
            ["none"] => Ok(Self::None),
            ["time", date] => NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map(|cutoff| Self::Time { cutoff })
                .map_err(|_| format!("bad cutoff date {date:?}; {usage}")),
            ["random", fraction, rest @ ..] if rest.len() <= 1 => {
                let fraction: f64 = fraction
                    .parse()
                    .map_err(|_| format!("bad fraction {fraction:?}; {usage}"))?;
                if !(0.0..1.0).contains(&fraction) || fraction == 0.0 {
                    return Err(format!("the fraction must be in (0, 1), got {fraction}"));
                }
                let seed = match rest.first() {
                    Some(seed) => seed
                        .parse()
                        .map_err(|_| format!("bad seed {seed:?}; {usage}"))?,
                    None => 2018,
                };
                Ok(Self::Random { fraction, seed })
            }
            _ => Err(format!("unknown split {s:?}; {usage}")),
        }
    }
}

impl Split {
    /// Divides `records` into `(fit, validation)`.
    pub fn apply(&self, records: &[SalesRecord]) -> (Vec<SalesRecord>, Vec<SalesRecord>) {
        match *self {
            Self::None => (records.to_vec(), Vec::new()),
            Self::Time { cutoff } => records.iter().partition(|r| r.date < cutoff),
            Self::Random { fraction, seed } => {
                let mut order: Vec<usize> = (0..records.len()).collect();
                order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
                let n_validation =
                    ((records.len() as f64 * fraction).round() as usize).min(records.len());
                let (validation, fit) = order.split_at(n_validation);
                let pick = |idx: &[usize]| idx.iter().map(|&i| records[i]).collect::<Vec<_>>();
                (pick(fit), pick(validation))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forecast::{ItemId, StoreId};

    fn records(days: u32) -> Vec<SalesRecord> {
        let start = NaiveDate::from_ymd_opt(2017, 9, 1).unwrap();
        start
            .iter_days()
            .take(days as usize)
            .map(|date| SalesRecord {
                date,
                store: StoreId::new(1).unwrap(),
                item: ItemId::new(1).unwrap(),
                sales: 1.0,
            })
            .collect()
    }

    #[test]
    fn parses_and_prints_every_form() {
        for text in ["random:0.2:2018", "time:2017-10-01", "none"] {
            assert_eq!(text.parse::<Split>().unwrap().to_string(), text);
        }
        assert_eq!(
            "random:0.25".parse::<Split>(),
            Ok(Split::Random {
                fraction: 0.25,
                seed: 2018
            })
        );
        for bad in [
            "random:1.5",
            "random:0",
            "time:2017-13-01",
            "weekly",
            "random:0.2:x:y",
        ] {
            assert!(bad.parse::<Split>().is_err(), "{bad}");
        }
    }

    #[test]
    fn time_split_puts_the_cutoff_day_in_validation() {
        let rows = records(60);
        let (fit, validation) = "time:2017-10-01".parse::<Split>().unwrap().apply(&rows);
        assert_eq!(fit.len(), 30);
        assert_eq!(validation.len(), 30);
        assert!(
            fit.iter()
                .all(|r| r.date < NaiveDate::from_ymd_opt(2017, 10, 1).unwrap())
        );
        assert_eq!(
            validation[0].date,
            NaiveDate::from_ymd_opt(2017, 10, 1).unwrap()
        );
    }

    #[test]
    fn random_split_is_deterministic_and_disjoint() {
        let rows = records(100);
        let split = Split::default();
        let (fit_a, valid_a) = split.apply(&rows);
        let (_, valid_b) = split.apply(&rows);
        let (_, valid_c) = Split::Random {
            fraction: 0.2,
            seed: 1,
        }
        .apply(&rows);
        assert_eq!(valid_a, valid_b);
        assert_ne!(valid_a, valid_c);
        assert_eq!((fit_a.len(), valid_a.len()), (80, 20));
        assert!(valid_a.iter().all(|v| !fit_a.contains(v)));
    }
}
