//! The planning step: a job becomes a list of work items, one per worker invocation.

use forecast::manifest::TrainingDomain;
use forecast::{ItemId, StoreId};

use crate::error::BatchError;
use crate::job::{CatalogueSpec, DEFAULT_ROWS_PER_PARTITION, S3Prefix, WorkItem};

/// Most partitions one job may have (a Distributed Map runs up to 10,000 children at a time
/// and reads millions of items, but one plan object should stay a few tens of MB).
pub const MAX_PARTITIONS: usize = 200_000;

/// One work item per `.csv` object among `keys` (the keys under `input`).
pub fn plan_objects(input: &S3Prefix, keys: &[String]) -> Result<Vec<WorkItem>, BatchError> {
    let items: Vec<WorkItem> = keys
        .iter()
        .filter(|key| key.ends_with(".csv"))
        .filter_map(|key| {
            let relative = key.strip_prefix(&input.prefix)?;
            let id = relative.strip_suffix(".csv")?;
            (!id.is_empty()).then(|| WorkItem::Object {
                id: id.to_owned(),
                bucket: input.bucket.clone(),
                key: key.clone(),
            })
        })
        .collect();
    if items.is_empty() {
        return Err(BatchError::InvalidJob(format!(
            "no .csv object under {}",
            String::from(input.clone())
        )));
    }
    check_count(items.len())?;
    Ok(items)
}

/// The catalogue cut into partitions of about `rows_per_partition` rows, whole store-item
/// series each, in store then item order.
pub fn plan_catalogue(
    spec: &CatalogueSpec,
    domain: &TrainingDomain,
) -> Result<Vec<WorkItem>, BatchError> {
    let stores = ids("store", spec.stores.as_deref(), &domain.stores, |n| {
        StoreId::new(n).is_some()
    })?;
    let items = ids("item", spec.items.as_deref(), &domain.items, |n| {
        ItemId::new(n).is_some()
    })?;
    let rows_per_partition = spec
        .rows_per_partition
        .unwrap_or(DEFAULT_ROWS_PER_PARTITION);
    let pairs_per_partition = (rows_per_partition / spec.days.max(1)).max(1) as usize;
    let pairs: Vec<[u32; 2]> = stores
        .iter()
        .flat_map(|&s| items.iter().map(move |&i| [s, i]))
        .collect();
    check_count(pairs.len().div_ceil(pairs_per_partition))?;
    Ok(pairs
        .chunks(pairs_per_partition)
        .enumerate()
        .map(|(n, chunk)| WorkItem::Catalogue {
            id: format!("catalogue-{n:06}"),
            start: spec.start,
            days: spec.days,
            pairs: chunk.to_vec(),
        })
        .collect())
}

fn check_count(partitions: usize) -> Result<(), BatchError> {
    if partitions > MAX_PARTITIONS {
        return Err(BatchError::InvalidJob(format!(
            "{partitions} partitions, more than {MAX_PARTITIONS}; use larger partitions"
        )));
    }
    Ok(())
}

/// The ids asked for (or the whole domain), checked against the domain, sorted, distinct.
fn ids(
    field: &str,
    asked: Option<&[u32]>,
    known: &[u32],
    valid: impl Fn(u32) -> bool,
) -> Result<Vec<u32>, BatchError> {
    let mut ids = asked.map_or_else(|| known.to_vec(), <[u32]>::to_vec);
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(BatchError::InvalidJob(format!(
            "no {field} ids: the job names none and the model's manifest lists none"
        )));
    }
    let outside: Vec<String> = ids
        .iter()
        .filter(|&&n| !valid(n) || (!known.is_empty() && known.binary_search(&n).is_err()))
        .take(10)
        .map(u32::to_string)
        .collect();
    if !outside.is_empty() {
        return Err(BatchError::InvalidJob(format!(
            "{field} ids outside the model's training domain: {}",
            outside.join(", ")
        )));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn domain() -> TrainingDomain {
        TrainingDomain {
            stores: (1..=10).collect(),
            items: (1..=50).collect(),
            date_min: "2013-01-01".into(),
            date_max: "2017-12-31".into(),
        }
    }

    fn spec(rows: Option<u32>) -> CatalogueSpec {
        CatalogueSpec {
            start: NaiveDate::from_ymd_opt(2018, 1, 1).unwrap(),
            days: 90,
            stores: None,
            items: None,
            rows_per_partition: rows,
        }
    }

    #[test]
    fn the_catalogue_covers_every_pair_once_in_partitions_of_the_asked_size() {
        let items = plan_catalogue(&spec(Some(4_500)), &domain()).unwrap();
        assert_eq!(items.len(), 10);
        let mut seen = Vec::new();
        for item in &items {
            let WorkItem::Catalogue { pairs, days, .. } = item else {
                panic!("expected catalogue items")
            };
            assert_eq!(*days, 90);
            assert_eq!(pairs.len(), 50);
            seen.extend(pairs.iter().copied());
        }
        let expected: Vec<[u32; 2]> = (1..=10)
            .flat_map(|s| (1..=50).map(move |i| [s, i]))
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(items[3].id(), "catalogue-000003");
        // The default partition holds every pair when the catalogue is small.
        assert_eq!(plan_catalogue(&spec(None), &domain()).unwrap().len(), 1);
    }

    #[test]
    fn a_subset_is_checked_against_the_training_domain() {
        let subset = CatalogueSpec {
            stores: Some(vec![2, 1, 2]),
            items: Some(vec![7]),
            ..spec(Some(1))
        };
        let items = plan_catalogue(&subset, &domain()).unwrap();
        let pairs: Vec<[u32; 2]> = items
            .iter()
            .flat_map(|i| match i {
                WorkItem::Catalogue { pairs, .. } => pairs.clone(),
                WorkItem::Object { .. } => Vec::new(),
            })
            .collect();
        assert_eq!(pairs, [[1, 7], [2, 7]]);
        let outside = CatalogueSpec {
            items: Some(vec![51]),
            ..spec(None)
        };
        let err = plan_catalogue(&outside, &domain()).unwrap_err();
        assert!(err.to_string().contains("item ids outside"), "{err}");
    }

    #[test]
    fn objects_become_items_named_after_their_relative_key() {
        let input = S3Prefix::parse("s3://b/in/").unwrap();
        let keys = [
            "in/a.csv".to_owned(),
            "in/day/2.csv".to_owned(),
            "in/readme.txt".to_owned(),
        ];
        let items = plan_objects(&input, &keys).unwrap();
        let ids: Vec<&str> = items.iter().map(WorkItem::id).collect();
        assert_eq!(ids, ["a", "day/2"]);
        assert!(plan_objects(&input, &keys[2..]).is_err());
    }
}
