//! The feature vocabulary: every feature a model may be trained on, each defined once.
//!
//! A model's manifest lists the names of its features in training order; serving builds
//! exactly that row from `(date, store, item)` with [`build_row`]. The original model uses
//! `store, item, month, day, year`, where `day` is the day of the week with Monday = 0
//! (pandas' `dt.dayofweek`), not the day of the month.

use chrono::{Datelike, NaiveDate};

use crate::request::{ForecastRequest, ItemId, StoreId};

/// One named feature computed from `(date, store, item)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Store id.
    Store,
    /// Item id.
    Item,
    /// Month of the year, 1..=12.
    Month,
    /// Day of the week, Monday = 0 .. Sunday = 6 (pandas `dt.dayofweek`).
    Day,
    /// Calendar year.
    Year,
    /// Day of the year, 1..=366 (pandas `dt.dayofyear`).
    DayOfYear,
    /// ISO 8601 week of the year, 1..=53 (pandas `dt.isocalendar().week`).
    WeekOfYear,
    /// Day of the month, 1..=31 (pandas `dt.day`).
    DayOfMonth,
    /// Quarter of the year, 1..=4 (pandas `dt.quarter`).
    Quarter,
    /// 1 on Saturdays and Sundays, else 0.
    IsWeekend,
}

/// The features of the original model, in its training order.
pub const ORIGINAL_FEATURES: [Feature; 5] = [
    Feature::Store,
    Feature::Item,
    Feature::Month,
    Feature::Day,
    Feature::Year,
];

/// The original features plus every calendar feature.
pub const CALENDAR_FEATURES: [Feature; 10] = [
    Feature::Store,
    Feature::Item,
    Feature::Month,
    Feature::Day,
    Feature::Year,
    Feature::DayOfYear,
    Feature::WeekOfYear,
    Feature::DayOfMonth,
    Feature::Quarter,
    Feature::IsWeekend,
];

/// Every feature the vocabulary knows, for error messages and documentation.
pub const ALL_FEATURES: [Feature; 10] = CALENDAR_FEATURES;

/// A name that is not in the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown feature {name:?}; known features: {known}")]
pub struct FeatureError {
    /// The unknown name.
    pub name: String,
    /// The known names, comma-separated.
    pub known: String,
}

/// A model input row: one value per feature, in the model's feature order.
pub type FeatureRow = Vec<f64>;

impl Feature {
    /// The feature's name as written in manifests and payload columns.
    pub fn name(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Item => "item",
            Self::Month => "month",
            Self::Day => "day",
            Self::Year => "year",
            Self::DayOfYear => "dayofyear",
            Self::WeekOfYear => "weekofyear",
            Self::DayOfMonth => "dayofmonth",
            Self::Quarter => "quarter",
            Self::IsWeekend => "is_weekend",
        }
    }

    /// Looks a feature up by name.
    pub fn from_name(name: &str) -> Result<Self, FeatureError> {
        ALL_FEATURES
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| FeatureError {
                name: name.chars().take(64).collect(),
                known: ALL_FEATURES.map(Feature::name).join(", "),
            })
    }

    /// Resolves a manifest's feature names, in order.
    pub fn resolve_all<S: AsRef<str>>(names: &[S]) -> Result<Vec<Self>, FeatureError> {
        names.iter().map(|n| Self::from_name(n.as_ref())).collect()
    }

    /// The feature's value for one `(date, store, item)`.
    pub fn value(self, date: NaiveDate, store: StoreId, item: ItemId) -> f64 {
        match self {
            Self::Store => f64::from(store.get()),
            Self::Item => f64::from(item.get()),
            Self::Month => f64::from(date.month()),
            Self::Day => f64::from(date.weekday().num_days_from_monday()),
            Self::Year => f64::from(date.year()),
            Self::DayOfYear => f64::from(date.ordinal()),
            Self::WeekOfYear => f64::from(date.iso_week().week()),
            Self::DayOfMonth => f64::from(date.day()),
            Self::Quarter => f64::from(date.month0() / 3 + 1),
            Self::IsWeekend => f64::from(u8::from(date.weekday().num_days_from_monday() >= 5)),
        }
    }
}

/// Builds the model input row for one request, in the order of `features`.
pub fn build_row(features: &[Feature], request: &ForecastRequest) -> FeatureRow {
    features
        .iter()
        .map(|f| f.value(request.date, request.store, request.item))
        .collect()
}

/// Resolves a feature-set argument: `original`, `calendar`, or a comma-separated list of names.
pub fn parse_feature_set(spec: &str) -> Result<Vec<Feature>, FeatureError> {
    match spec.trim() {
        "original" => Ok(ORIGINAL_FEATURES.to_vec()),
        "calendar" => Ok(CALENDAR_FEATURES.to_vec()),
        list => {
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            let features = Feature::resolve_all(&names)?;
            if let Some(duplicate) = features
                .iter()
                .enumerate()
                .find(|(i, f)| features[..*i].contains(f))
            {
                return Err(FeatureError {
                    name: format!("{} (listed twice)", duplicate.1.name()),
                    known: ALL_FEATURES.map(Feature::name).join(", "),
                });
            }
            Ok(features)
        }
    }
}

/// The names of `features`, in order.
pub fn names(features: &[Feature]) -> Vec<String> {
    features.iter().map(|f| f.name().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(date: &str, store: u32, item: u32) -> ForecastRequest {
        ForecastRequest {
            date: crate::parse_date(date).unwrap(),
            store: StoreId::new(store).unwrap(),
            item: ItemId::new(item).unwrap(),
        }
    }

    /// Golden rows: the values pandas gives for `store, item, month, dayofweek, year`.
    #[test]
    fn original_features_match_pandas_for_known_rows() {
        let golden = [
            ("2013-01-01", 1, 1, [1.0, 1.0, 1.0, 1.0, 2013.0]),
            ("2017-12-31", 10, 50, [10.0, 50.0, 12.0, 6.0, 2017.0]),
            ("2018-01-01", 1, 1, [1.0, 1.0, 1.0, 0.0, 2018.0]),
            ("2016-02-29", 3, 27, [3.0, 27.0, 2.0, 0.0, 2016.0]),
            (
                "2018-03-31T12:00:00+02:00",
                7,
                15,
                [7.0, 15.0, 3.0, 5.0, 2018.0],
            ),
        ];
        for (date, store, item, expected) in golden {
            assert_eq!(
                build_row(&ORIGINAL_FEATURES, &request(date, store, item)),
                expected,
                "{date}"
            );
        }
    }

    /// Golden rows for the calendar features, as pandas computes them.
    #[test]
    fn calendar_features_match_pandas_for_known_rows() {
        let golden = [
            // date, dayofyear, iso week, day of month, quarter, weekend
            ("2013-01-01", [1.0, 1.0, 1.0, 1.0, 0.0]),
            ("2016-12-31", [366.0, 52.0, 31.0, 4.0, 1.0]),
            ("2017-01-01", [1.0, 52.0, 1.0, 1.0, 1.0]),
            ("2015-12-31", [365.0, 53.0, 31.0, 4.0, 0.0]),
            ("2017-07-01", [182.0, 26.0, 1.0, 3.0, 1.0]),
            ("2018-04-02", [92.0, 14.0, 2.0, 2.0, 0.0]),
        ];
        let order = &CALENDAR_FEATURES[5..];
        for (date, expected) in golden {
            assert_eq!(build_row(order, &request(date, 1, 1)), expected, "{date}");
        }
    }

    #[test]
    fn feature_sets_parse_presets_and_lists() {
        assert_eq!(parse_feature_set("original").unwrap(), ORIGINAL_FEATURES);
        assert_eq!(parse_feature_set("calendar").unwrap(), CALENDAR_FEATURES);
        assert_eq!(
            parse_feature_set("item, store,quarter").unwrap(),
            [Feature::Item, Feature::Store, Feature::Quarter]
        );
        assert!(
            parse_feature_set("store,store")
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
        assert!(parse_feature_set("store,colour").is_err());
    }

    #[test]
    fn row_follows_the_requested_order() {
        let order = [Feature::Year, Feature::Day, Feature::Store];
        assert_eq!(
            build_row(&order, &request("2018-01-07", 4, 9)),
            [2018.0, 6.0, 4.0]
        );
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_rejected() {
        let names = names(&ORIGINAL_FEATURES);
        assert_eq!(names, ["store", "item", "month", "day", "year"]);
        assert_eq!(Feature::resolve_all(&names).unwrap(), ORIGINAL_FEATURES);
        let err = Feature::from_name("weekday").unwrap_err();
        assert!(
            err.to_string()
                .contains("known features: store, item, month, day, year")
        );
    }

    mod properties {
        use chrono::{Datelike, Days, NaiveDate};
        use proptest::prelude::*;

        use super::*;
        use crate::request::{ItemId, MAX_ID, StoreId};

        fn any_request() -> impl Strategy<Value = ForecastRequest> {
            (0u64..3_652_059, 1..=MAX_ID, 1..=MAX_ID).prop_map(|(offset, store, item)| {
                ForecastRequest {
                    date: NaiveDate::from_ymd_opt(1, 1, 1).unwrap() + Days::new(offset),
                    store: StoreId::new(store).unwrap(),
                    item: ItemId::new(item).unwrap(),
                }
            })
        }

        /// Feature-set arguments as people write them: the two set names, or lists of known
        /// names (some repeated), misspellings and arbitrary text, padded with whitespace.
        fn feature_set_text() -> impl Strategy<Value = String> {
            let token = prop_oneof![
                4 => prop::sample::select(ALL_FEATURES.map(Feature::name).to_vec())
                    .prop_map(str::to_owned),
                1 => Just("Store".to_owned()),
                1 => Just(String::new()),
                1 => any::<String>(),
            ];
            let padded = (" {0,2}", token, "[ \t]{0,2}").prop_map(|(a, t, b)| format!("{a}{t}{b}"));
            prop_oneof![
                1 => prop::sample::select(vec![" original", "calendar ", "original,store"])
                    .prop_map(str::to_owned),
                6 => prop::collection::vec(padded, 1..8).prop_map(|tokens| tokens.join(",")),
                1 => any::<String>(),
            ]
        }

        /// What `spec` must resolve to, written out independently: a set name, or each
        /// trimmed comma-separated name known and listed once; otherwise the first unknown
        /// name (cut to 64 characters), or else the first name listed twice.
        fn expected_feature_set(spec: &str) -> Result<Vec<Feature>, String> {
            match spec.trim() {
                "original" => return Ok(ORIGINAL_FEATURES.to_vec()),
                "calendar" => return Ok(CALENDAR_FEATURES.to_vec()),
                _ => {}
            }
            let tokens: Vec<&str> = spec.trim().split(',').map(str::trim).collect();
            let mut features = Vec::new();
            for token in &tokens {
                match ALL_FEATURES.iter().find(|f| f.name() == *token) {
                    Some(feature) => features.push(*feature),
                    None => return Err(token.chars().take(64).collect()),
                }
            }
            for (i, feature) in features.iter().enumerate() {
                if features[..i].contains(feature) {
                    return Err(format!("{} (listed twice)", feature.name()));
                }
            }
            Ok(features)
        }

        proptest! {
            #[test]
            fn every_feature_row_is_finite_and_in_its_range(
                request in any_request(),
                features in prop::sample::subsequence(ALL_FEATURES.to_vec(), 0..=ALL_FEATURES.len())
                    .prop_shuffle(),
            ) {
                let row = build_row(&features, &request);
                prop_assert_eq!(row.len(), features.len());
                for (feature, value) in features.iter().zip(&row) {
                    prop_assert!(value.is_finite() && value.fract() == 0.0);
                    let (lo, hi) = match feature {
                        Feature::Store | Feature::Item => (1.0, f64::from(MAX_ID)),
                        Feature::Month => (1.0, 12.0),
                        Feature::Day => (0.0, 6.0),
                        Feature::Year => (1.0, 9999.0),
                        Feature::DayOfYear => (1.0, 366.0),
                        Feature::WeekOfYear => (1.0, 53.0),
                        Feature::DayOfMonth => (1.0, 31.0),
                        Feature::Quarter => (1.0, 4.0),
                        Feature::IsWeekend => (0.0, 1.0),
                    };
                    prop_assert!((lo..=hi).contains(value), "{} = {}", feature.name(), value);
                }
            }

            #[test]
            fn consecutive_days_step_the_weekday(request in any_request()) {
                let Some(next) = request.date.succ_opt() else { return Ok(()) };
                let today = Feature::Day.value(request.date, request.store, request.item);
                let tomorrow = Feature::Day.value(next, request.store, request.item);
                prop_assert_eq!((today + 1.0) % 7.0, tomorrow);
                prop_assert_eq!(
                    Feature::IsWeekend.value(request.date, request.store, request.item),
                    f64::from(u8::from(today >= 5.0))
                );
                prop_assert_eq!(
                    Feature::Year.value(request.date, request.store, request.item),
                    f64::from(request.date.year())
                );
            }

            #[test]
            fn feature_names_round_trip(features in prop::sample::subsequence(ALL_FEATURES.to_vec(), 1..=ALL_FEATURES.len())) {
                let names = names(&features);
                prop_assert_eq!(Feature::resolve_all(&names), Ok(features.clone()));
                prop_assert_eq!(parse_feature_set(&names.join(",")), Ok(features));
            }

            #[test]
            fn any_feature_set_text_resolves_or_is_rejected(spec in feature_set_text()) {
                let expected = expected_feature_set(&spec);
                match parse_feature_set(&spec) {
                    Ok(features) => prop_assert_eq!(Ok(features), expected),
                    Err(err) => {
                        prop_assert_eq!(Err(err.name.clone()), expected);
                        prop_assert_eq!(err.known, ALL_FEATURES.map(Feature::name).join(", "));
                    }
                }
            }
        }
    }
}
