//! Runs each hostile-input target: first the committed corpus
//! (`fuzz/corpus/<target>/`, seeds and every input that ever found a bug),
//! then bolero's generated inputs: a bounded number of random ones under
//! `cargo test` (`FERRY_FUZZ_ITERATIONS`, default 20,000), or
//! coverage-guided ones from libFuzzer under `cargo bolero test`
//! (`tests/fuzz/long`).
//!
//! Each test calls `bolero::check!()` itself: bolero names a target after
//! the function the macro is in.

use std::path::PathBuf;

fn iterations() -> usize {
    std::env::var("FERRY_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("a corpus entry").path();
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect();
    assert!(!inputs.is_empty(), "no seeds in {}", dir.display());
    inputs.sort();
    inputs
}

/// Replays a target's committed corpus.
fn replay(target: &str, f: fn(&[u8])) {
    for input in corpus(target) {
        f(&input);
    }
}

#[test]
fn frame_decoder() {
    replay("frame", ferry_fuzz::frame);
    bolero::check!()
        .with_iterations(iterations())
        .for_each(|input: &[u8]| ferry_fuzz::frame(input));
}

// The text parsers get arbitrary strings, which pass the UTF-8 check and
// reach the parser; the corpus holds the inputs that are not UTF-8.

#[test]
fn share_path_checker() {
    replay("share_path", ferry_fuzz::share_path);
    bolero::check!()
        .with_type::<String>()
        .with_iterations(iterations())
        .for_each(|input: &String| ferry_fuzz::share_path(input.as_bytes()));
}

#[test]
fn sequence_notation() {
    replay("sequence", ferry_fuzz::sequence);
    bolero::check!()
        .with_type::<String>()
        .with_iterations(iterations())
        .for_each(|input: &String| ferry_fuzz::sequence(input.as_bytes()));
}

#[test]
fn config_file() {
    replay("config", ferry_fuzz::config);
    bolero::check!()
        .with_type::<String>()
        .with_iterations(iterations())
        .for_each(|input: &String| ferry_fuzz::config(input.as_bytes()));
}

#[test]
fn portguard_requests() {
    replay("portguard", ferry_fuzz::portguard);
    bolero::check!()
        .with_iterations(iterations())
        .for_each(|input: &[u8]| ferry_fuzz::portguard(input));
}
