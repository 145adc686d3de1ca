//! The model host's payload decoder on any text: it decodes or reports a typed error, never
//! panics, and the streaming decoder agrees with the tree decoder on every valid JSON (up to
//! column order: a JSON tree sorts object keys, the stream keeps them as written, and the
//! host matches columns by name; and except for repeated keys, which only the stream sees).
#![no_main]

use model::decode::{self, ModelInvocation, ScoringInput};
use libfuzzer_sys::fuzz_target;

/// Columns sorted by name, each with its values; positional rows as they are.
fn canonical(input: &ScoringInput) -> Vec<(Option<String>, Vec<u64>)> {
    let width = input.width.max(1);
    let mut columns: Vec<(Option<String>, Vec<u64>)> = (0..input.width)
        .map(|c| {
            let name = input.columns.as_ref().map(|names| names[c].clone());
            let values = input
                .values
                .iter()
                .skip(c)
                .step_by(width)
                .map(|v| v.to_bits())
                .collect();
            (name, values)
        })
        .collect();
    if input.columns.is_some() {
        columns.sort();
    }
    columns
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let streamed = decode::decode_str(text, 1_000);
    let Ok(tree) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    match (streamed, decode::decode_value(&tree, 1_000)) {
        (Ok(ModelInvocation::Predict(a)), Ok(ModelInvocation::Predict(b))) => {
            assert_eq!(a.rows, b.rows);
            assert_eq!(canonical(&a), canonical(&b));
        }
        (Ok(ModelInvocation::Ping), Ok(ModelInvocation::Ping)) | (Err(_), Err(_)) => {}
        // A JSON tree keeps the last of repeated keys; the stream (what the host runs) sees
        // and refuses them.
        (Err(err), Ok(_)) if err.message.contains("twice") => {}
        (a, b) => panic!("the decoders disagree: {a:?} vs {b:?}"),
    }
});
