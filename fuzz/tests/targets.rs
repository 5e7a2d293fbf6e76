//! Runs each hostile-input target: first the committed corpus
//! (`fuzz/corpus/<target>/`, seeds and every input that ever found a bug),
//! then bolero's generated inputs — a bounded number here, as many as
//! `FERRY_FUZZ_ITERATIONS` says in `tests/fuzz/long`.

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

/// Replays the corpus, then arbitrary bytes.
fn run(target: &str, f: fn(&[u8])) {
    for input in corpus(target) {
        f(&input);
    }
    bolero::check!()
        .with_iterations(iterations())
        .for_each(|input: &[u8]| f(input));
}

/// For text parsers: the corpus, arbitrary bytes, then arbitrary strings
/// (which get past the UTF-8 check and into the parser).
fn run_text(target: &str, f: fn(&[u8])) {
    run(target, f);
    bolero::check!()
        .with_type::<String>()
        .with_iterations(iterations())
        .for_each(|input: &String| f(input.as_bytes()));
}

#[test]
fn frame_decoder() {
    run("frame", ferry_fuzz::frame);
}

#[test]
fn share_path_checker() {
    run_text("share_path", ferry_fuzz::share_path);
}

#[test]
fn sequence_notation() {
    run_text("sequence", ferry_fuzz::sequence);
}

#[test]
fn config_file() {
    run_text("config", ferry_fuzz::config);
}

#[test]
fn portguard_requests() {
    run("portguard", ferry_fuzz::portguard);
}
