//! The evaluator against hand-written model texts; its agreement with LightGBM itself on
//! trained models is checked by the trainer's `native_evaluator` suite, which has LightGBM.

use proptest::prelude::*;

use super::*;

/// Two features, two trees: the first splits `a <= 4.5` (missing None, default left) then
/// `b <= 9.5` (missing NaN, default left); the second is a single leaf.
pub(crate) const TWO_TREES: &str = "tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=regression
feature_names=a b
feature_infos=[0:19] [0:19]

Tree=0
num_leaves=3
num_cat=0
split_feature=0 1
split_gain=1 1
threshold=4.5 9.5
decision_type=2 10
left_child=1 -1
right_child=-2 -3
leaf_value=1 2 3
leaf_count=1 1 1
is_linear=0
shrinkage=1


Tree=1
num_leaves=1
num_cat=0
split_feature=
split_gain=
threshold=
decision_type=
left_child=
right_child=
leaf_value=0.25
leaf_weight=
leaf_count=
internal_value=
internal_weight=
internal_count=
is_linear=0
shrinkage=1


end of trees

feature_importances:
a=1
b=1

parameters:
[boosting: gbdt]
end of parameters

pandas_categorical:null
";

fn two_trees() -> Booster {
    Booster::from_model_text(TWO_TREES).unwrap()
}

/// A straightforward node-by-node reading of the parsed text, independent of the compiled
/// layout: what the layout must agree with.
fn interpret(model: &TextModel, row: &[f64]) -> f64 {
    let mut sum = 0.0;
    for tree in &model.trees {
        let mut node = 0i32;
        if !tree.nodes.is_empty() {
            while node >= 0 {
                let n = tree.nodes[node as usize];
                let x = input_value(row[n.feature]);
                let left = if n.is_categorical() {
                    let index = text::categorical_index(n.threshold).unwrap();
                    let words = &tree.cat_threshold
                        [tree.cat_boundaries[index]..tree.cat_boundaries[index + 1]];
                    categorical_goes_left(x, words)
                } else {
                    numerical_goes_left(x, n.threshold, n.missing_type().unwrap(), n.default_left())
                };
                node = if left { n.left } else { n.right };
            }
        } else {
            node = -1;
        }
        sum += tree.leaf_value[(!node) as usize];
    }
    sum
}

#[test]
fn walks_both_trees_with_their_missing_value_rules() {
    let booster = two_trees();
    assert_eq!(booster.num_features(), 2);
    assert_eq!(booster.num_trees(), 2);
    assert_eq!(booster.feature_names(), ["a", "b"]);
    for (row, expected) in [
        ([3.0, 5.0], 1.25),
        ([3.0, 12.0], 3.25),
        ([7.0, 5.0], 2.25),
        ([4.5, 9.5], 1.25),
        ([4.5f64.next_up(), 0.0], 2.25),
        // Missing type None: NaN reads as 0.0 (left). Missing type NaN, default left.
        ([f64::NAN, f64::NAN], 1.25),
        ([f64::NEG_INFINITY, f64::INFINITY], 3.25),
    ] {
        assert_eq!(booster.predict_row(&row).unwrap(), expected, "{row:?}");
    }
}

#[test]
fn rows_of_the_wrong_width_are_refused() {
    let booster = two_trees();
    assert_eq!(booster.predict(&[]).unwrap(), Vec::<f64>::new());
    assert!(booster.predict(&[1.0]).is_err());
    assert!(booster.predict(&[1.0, 2.0, 3.0]).is_err());
    assert!(booster.predict_row(&[1.0, 2.0, 3.0]).is_err());
}

#[test]
fn a_text_cut_anywhere_is_an_error_or_still_whole_never_a_panic() {
    let end = TWO_TREES.find("end of trees").unwrap();
    for cut in 0..TWO_TREES.len() {
        match Booster::from_model_text(&TWO_TREES[..cut]) {
            Ok(_) => assert!(
                cut >= end + "end of trees".len(),
                "loaded a text cut at {cut}"
            ),
            Err(ModelTextError::Corrupt(_)) => {}
            Err(other) => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn edited_structures_are_corrupt_with_the_reason() {
    for (from, to, reason) in [
        ("left_child=1 -1", "left_child=1 -4", "outside the tree"),
        ("left_child=1 -1", "left_child=0 -1", "reached twice"),
        ("left_child=1 -1", "left_child=7 -1", "outside the tree"),
        ("split_feature=0 1", "split_feature=0 2", "feature 2 of 2"),
        ("leaf_value=1 2 3", "leaf_value=1 2", "expected 3"),
        ("leaf_value=1 2 3", "leaf_value=1 x 3", "non-number"),
        ("threshold=4.5 9.5", "threshold=4.5", "expected 2"),
        ("num_leaves=3", "num_leaves=0", "out of range"),
        ("decision_type=2 10", "decision_type=2 14", "missing type 3"),
        ("Tree=1", "Tree=5", "labelled"),
        ("feature_names=a b", "feature_names=a", "1 names for 2"),
        ("version=v4\n", "", "no `version=`"),
    ] {
        let text = TWO_TREES.replacen(from, to, 1);
        match Booster::from_model_text(&text) {
            Err(ModelTextError::Corrupt(message)) => {
                assert!(message.contains(reason), "{to}: {message}");
            }
            other => panic!("{to}: {other:?}"),
        }
    }
}

#[test]
fn models_it_cannot_reproduce_are_refused_naming_why() {
    for (from, to, reason) in [
        ("num_class=1", "num_class=3", "3 classes"),
        ("is_linear=0", "is_linear=1", "linear trees"),
        ("version=v4", "version=v3", "v4"),
        ("objective=regression", "objective=lambdarank", "lambdarank"),
    ] {
        let text = TWO_TREES.replacen(from, to, 1);
        match Booster::from_model_text(&text) {
            Err(ModelTextError::Unsupported(message)) => {
                assert!(message.contains(reason), "{to}: {message}");
            }
            other => panic!("{to}: {other:?}"),
        }
    }
}

/// [`TWO_TREES`] with the `tree_sizes` header line LightGBM writes, and the two sizes.
pub(crate) fn two_trees_with_sizes() -> (String, usize, usize) {
    let first = TWO_TREES.find("Tree=0").unwrap();
    let second = TWO_TREES.find("Tree=1").unwrap();
    let end = TWO_TREES.find("end of trees").unwrap();
    let (a, b) = (second - first, end - second);
    let sizes = format!("tree_sizes={a} {b}\n\n");
    (
        TWO_TREES.replacen("\nTree=0", &format!("{sizes}Tree=0"), 1),
        a,
        b,
    )
}

#[test]
fn tree_sizes_that_do_not_add_up_are_refused() {
    let (with_sizes, a, b) = two_trees_with_sizes();
    // The header grew, so the offsets of the trees moved by the same amount: still whole.
    assert!(Booster::from_model_text(&with_sizes).is_ok());
    for edit in [
        format!("tree_sizes=1{a} {b}"),
        format!("tree_sizes={} {}", a - 1, b + 1),
        format!("tree_sizes={} {}", a + 1, b - 1),
        format!("tree_sizes={a} {}", b - 1),
        format!("tree_sizes={a} {}", b + 1),
        format!("tree_sizes={}", a + b),
        format!("tree_sizes={a} {b} 0"),
    ] {
        let edited = with_sizes.replacen(&format!("tree_sizes={a} {b}"), &edit, 1);
        assert!(
            matches!(
                Booster::from_model_text(&edited),
                Err(ModelTextError::Corrupt(message)) if message.contains("tree_sizes")
            ),
            "{edit}"
        );
    }
    // Cut anywhere, the trees sliced at these offsets are an error, never a panic.
    let trees_end = with_sizes.find("end of trees").unwrap() + "end of trees".len();
    for cut in 0..with_sizes.len() {
        match Booster::from_model_text(&with_sizes[..cut]) {
            Ok(_) => assert!(cut >= trees_end, "loaded a text cut at {cut}"),
            Err(ModelTextError::Corrupt(_)) => {}
            Err(other) => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn sliced_and_split_trees_read_the_same_model() {
    let (with_sizes, _, _) = two_trees_with_sizes();
    assert_eq!(
        text::parse(&with_sizes).unwrap(),
        text::parse(TWO_TREES).unwrap()
    );
}

/// `text` pushed into a [`text::TextStream`] `size` bytes at a time; also answers the most
/// bytes the stream held after any push.
fn parse_in_chunks(text: &str, size: usize) -> (Result<text::TextModel, ModelTextError>, usize) {
    let mut stream = text::TextStream::default();
    let mut held = 0;
    for chunk in text.as_bytes().chunks(size) {
        stream.push(chunk);
        held = held.max(stream.held_bytes());
    }
    (stream.finish(), held)
}

#[test]
fn how_the_text_is_chunked_changes_no_model_and_no_error() {
    let (with_sizes, a, b) = two_trees_with_sizes();
    let mut texts = vec![TWO_TREES.to_owned(), with_sizes.clone()];
    for (from, to) in [
        ("left_child=1 -1", "left_child=1 -4"),
        ("leaf_value=1 2 3", "leaf_value=1 x 3"),
        ("Tree=1", "Tree=5"),
        ("is_linear=0", "is_linear=1"),
        ("version=v4", "version=v3"),
        (
            &format!("tree_sizes={a} {b}"),
            &format!("tree_sizes={} {}", a + 1, b - 1),
        ),
        (
            &format!("tree_sizes={a} {b}"),
            &format!("tree_sizes={a} {b} 0"),
        ),
        ("end of trees", "end of tree"),
        ("pandas_categorical:null", "pandas_categorical:\u{e9}"),
    ] {
        texts.push(with_sizes.replacen(from, to, 1));
        texts.push(TWO_TREES.replacen(from, to, 1));
    }
    texts.extend((0..with_sizes.len()).map(|cut| with_sizes[..cut].to_owned()));
    texts.extend(
        (0..TWO_TREES.len())
            .step_by(7)
            .map(|cut| TWO_TREES[..cut].to_owned()),
    );
    for text in &texts {
        let whole = text::parse(text);
        for size in [1, 2, 3, 7, 64, 1000] {
            assert_eq!(
                parse_in_chunks(text, size).0,
                whole,
                "chunks of {size}: {text:?}"
            );
        }
    }
}

/// A sized model of `n` copies of [`TWO_TREES`]'s first tree (a 3-leaf tree of ~330 bytes).
fn many_trees(n: usize) -> String {
    let first = TWO_TREES.find("Tree=0").unwrap();
    let second = TWO_TREES.find("Tree=1").unwrap();
    let end = TWO_TREES.find("end of trees").unwrap();
    let body = &TWO_TREES[first + "Tree=0".len()..second];
    let trees: Vec<String> = (0..n).map(|i| format!("Tree={i}{body}")).collect();
    let sizes: Vec<String> = trees.iter().map(|t| t.len().to_string()).collect();
    format!(
        "{}tree_sizes={}\n\n{}{}",
        &TWO_TREES[..first],
        sizes.join(" "),
        trees.concat(),
        &TWO_TREES[end..]
    )
}

#[test]
fn a_sized_text_read_in_chunks_is_never_held_whole() {
    let text = many_trees(25_000);
    assert!(text.len() > 4 * text::BATCH_BYTES, "{}", text.len());
    let (model, held) = parse_in_chunks(&text, 8192);
    assert_eq!(model.unwrap().trees.len(), 25_000);
    // One batch of cut trees plus their `Tree=` lines (12 of each of these 200-byte trees),
    // one chunk and one partial tree.
    let most = text::BATCH_BYTES * 9 / 8 + 8192;
    assert!(held <= most, "held {held} of {} bytes", text.len());
    // Whole in one push it is read the same (what `Booster::from_model_text` does).
    assert_eq!(parse_in_chunks(&text, text.len()).0, text::parse(&text));
}

#[test]
fn the_first_bad_tree_in_file_order_is_named_however_the_text_arrives() {
    let text = many_trees(10_000);
    // Trees 1200 and 9000 (in different batches) lose a leaf value each.
    let mut edited = String::new();
    for (i, part) in text.split("Tree=").enumerate() {
        if i > 0 {
            edited.push_str("Tree=");
        }
        if i == 1201 || i == 9001 {
            edited.push_str(&part.replacen("leaf_value=1 2 3", "leaf_value=1 2 x", 1));
        } else {
            edited.push_str(part);
        }
    }
    for size in [4096, 100_000, edited.len()] {
        match parse_in_chunks(&edited, size).0 {
            Err(ModelTextError::Corrupt(m)) => assert!(m.starts_with("tree 1200:"), "{m}"),
            other => panic!("{size}: {other:?}"),
        }
    }
}

#[test]
fn average_output_divides_by_the_number_of_trees() {
    let text = TWO_TREES.replacen(
        "objective=regression\n",
        "objective=regression\naverage_output\n",
        1,
    );
    let booster = Booster::from_model_text(&text).unwrap();
    assert_eq!(booster.predict_row(&[3.0, 5.0]).unwrap(), 1.25 / 2.0);
}

#[test]
fn zero_threshold_inputs_read_as_zero() {
    assert_eq!(input_value(1e-36).to_bits(), 0.0f64.to_bits());
    assert_eq!(input_value(-1e-36).to_bits(), 0.0f64.to_bits());
    assert_eq!(input_value(-0.0).to_bits(), 0.0f64.to_bits());
    assert_eq!(input_value(ZERO_THRESHOLD).to_bits(), 0.0f64.to_bits());
    let above = ZERO_THRESHOLD.next_up();
    assert_eq!(input_value(above), above);
    assert!(input_value(f64::NAN).is_nan());
    // Missing type Zero sends (read-as-)zero and NaN the default way.
    assert!(numerical_goes_left(0.0, -5.0, MissingType::Zero, true));
    assert!(numerical_goes_left(f64::NAN, -5.0, MissingType::Zero, true));
    assert!(!numerical_goes_left(1.0, -5.0, MissingType::Zero, true));
}

#[test]
fn categories_follow_lightgbm_casts() {
    let bits = [0b1010u32, 1];
    assert!(categorical_goes_left(1.0, &bits));
    assert!(!categorical_goes_left(0.0, &bits));
    assert!(categorical_goes_left(1.9, &bits));
    assert!(categorical_goes_left(32.0, &bits));
    assert!(!categorical_goes_left(64.0, &bits));
    assert!(!categorical_goes_left(-1.0, &bits));
    assert!(!categorical_goes_left(f64::NAN, &bits));
    assert!(!categorical_goes_left(f64::INFINITY, &bits));
    assert!(!categorical_goes_left(3e9, &bits));
    let zero = [1u32];
    assert!(categorical_goes_left(-0.5, &zero));
    assert!(categorical_goes_left(-0.0, &zero));
}

#[test]
fn exact_f64_round_trips_through_json_bit_for_bit() {
    let values = [
        0.0,
        -0.0,
        1e-36,
        f64::MIN_POSITIVE / 4.0,
        0.1 + 0.2,
        f64::MAX,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let row = CheckRow {
        features: values.iter().map(|v| ExactF64(*v)).collect(),
        prediction: ExactF64(12.345_678_901_234_567),
    };
    let json = serde_json::to_string(&row).unwrap();
    assert!(
        json.contains("\"NaN\"") && json.contains("\"-inf\""),
        "{json}"
    );
    let back: CheckRow = serde_json::from_str(&json).unwrap();
    assert_eq!(back, row);
    assert!(serde_json::from_str::<ExactF64>("\"nope\"").is_err());
}

#[test]
fn verify_accepts_its_own_answers_and_names_the_first_difference() {
    let booster = two_trees();
    let rows = booster.probe_rows(&[3.0, 5.0]);
    let mut checks: Vec<CheckRow> = rows
        .iter()
        .map(|row| CheckRow {
            features: row.iter().map(|v| ExactF64(*v)).collect(),
            prediction: ExactF64(booster.predict_row(row).unwrap()),
        })
        .collect();
    assert_eq!(booster.verify(&checks, None), Ok(checks.len()));
    // Rows are checked in parallel; the first wrong one in manifest order is named.
    let last = checks.len() - 1;
    for wrong in [last, 3] {
        checks[wrong].prediction = ExactF64(checks[wrong].prediction.0.next_up());
    }
    let err = booster.verify(&checks, None).unwrap_err();
    assert!(err.starts_with("check row 3"), "{err}");
    assert!(
        booster
            .verify(&[], None)
            .unwrap_err()
            .contains("no check rows")
    );
}

#[test]
fn with_a_baseline_the_check_rows_carry_it_so_a_reader_without_it_refuses_them() {
    // GIVEN a baseline on the first feature and check rows scored with it
    let booster = two_trees();
    let baseline = crate::baseline::Baseline {
        level: ExactF64(2.0),
        factors: vec![
            crate::baseline::Factors {
                values: vec![ExactF64(1.0), ExactF64(4.0)],
                factors: vec![ExactF64(0.5), ExactF64(3.0)],
            },
            crate::baseline::Factors {
                values: vec![ExactF64(0.0)],
                factors: vec![ExactF64(1.0)],
            },
        ],
    };
    let rows = booster.probe_rows(&[3.0, 5.0]);
    let checks: Vec<CheckRow> = rows
        .iter()
        .map(|row| CheckRow {
            features: row.iter().map(|v| ExactF64(*v)).collect(),
            prediction: ExactF64(booster.predict_row(row).unwrap() * baseline.of(row)),
        })
        .collect();
    // THEN they verify with the baseline, and a reader that ignores it fails on them
    assert_eq!(booster.verify(&checks, Some(&baseline)), Ok(checks.len()));
    assert!(booster.verify(&checks, None).is_err());
}

#[test]
fn probe_rows_cover_each_threshold_its_neighbours_and_the_special_values() {
    let booster = two_trees();
    let rows = booster.probe_rows(&[3.0, 5.0]);
    let column = |f: usize| -> Vec<u64> { rows.iter().map(|r| r[f].to_bits()).collect() };
    for (feature, threshold) in [(0, 4.5f64), (1, 9.5)] {
        let seen = column(feature);
        for value in [
            threshold.next_down(),
            threshold,
            threshold.next_up(),
            0.0,
            -0.0,
            1e-36,
            ZERO_THRESHOLD,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert!(
                seen.contains(&value.to_bits()),
                "feature {feature} lacks {value:?}"
            );
        }
        assert!(rows.iter().any(|r| r[feature].is_nan()));
    }
}

#[test]
fn chunk_sizes_do_not_change_any_answer() {
    let booster = two_trees();
    let rows: Vec<f64> = (0..3000).map(|i| f64::from(i % 23) - 1.5).collect();
    let whole = booster.predict_chunked(&rows, usize::MAX).unwrap();
    for chunk in [1, 7, 64, 1000] {
        let chunked = booster.predict_chunked(&rows, chunk).unwrap();
        assert_eq!(
            chunked.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            whole.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-30i32..30).prop_map(|v| f64::from(v) / 2.0),
        any::<f64>(),
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(1e-36),
    ]
}

/// The same model in the general layout.
fn two_trees_general() -> Booster {
    let model = text::parse(TWO_TREES).unwrap();
    let transform = OutputTransform::from_objective(model.objective.as_deref()).unwrap();
    compile(model, transform, false)
}

#[test]
fn small_models_compile_compact_unless_told_not_to() {
    assert!(two_trees().is_compact());
    assert!(!two_trees_general().is_compact());
}

proptest! {
    #[test]
    fn both_layouts_agree_with_a_plain_walk(
        a in any_value(), b in any_value(),
    ) {
        let model = text::parse(TWO_TREES).unwrap();
        let expected = interpret(&model, &[a, b]).to_bits();
        prop_assert_eq!(two_trees().predict_row(&[a, b]).unwrap().to_bits(), expected);
        prop_assert_eq!(two_trees_general().predict_row(&[a, b]).unwrap().to_bits(), expected);
    }
}
