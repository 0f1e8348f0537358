//! The fuzz targets' committed corpora and regression inputs, run through the same checks as
//! `cargo fuzz` runs (`fuzz/src`), on the stable toolchain: every input a long run kept and
//! every input that once made a target fail is replayed on each CI run. docs/reliability.md
//! describes the targets and the long runs.

#[path = "../../../fuzz/src/lib.rs"]
mod fuzz_checks;

use std::collections::BTreeSet;
use std::panic::catch_unwind;
use std::path::{Path, PathBuf};

use fuzz_checks::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files in `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Names of the directories (or, with `ext`, of the files with that extension) in `dir`.
fn names(dir: &Path, ext: Option<&str>) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| match ext {
            Some(ext) => p.extension().is_some_and(|x| x == ext),
            None => p.is_dir(),
        })
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect()
}

#[test]
fn every_corpus_and_regression_input_passes_its_targets_checks() {
    let mut failed = Vec::new();
    let mut total = 0;
    for &(name, check) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(!corpus.is_empty(), "target {name} has no committed corpus");
        let regressions = files(&fuzz_dir().join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            total += 1;
            if catch_unwind(|| check(&data)).is_err() {
                failed.push(file.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} inputs failed: {failed:#?}",
        failed.len()
    );
}

#[test]
fn the_target_table_matches_the_fuzz_targets_and_their_directories() {
    let table: BTreeSet<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names(&fuzz_dir().join("fuzz_targets"), Some("rs")), table);
    assert_eq!(names(&fuzz_dir().join("corpus"), None), table);
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap_or_default();
    let manifest: toml::Table = toml::from_str(&manifest).unwrap_or_default();
    let bins: BTreeSet<String> = manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("name")?.as_str().map(str::to_owned))
        .collect();
    assert_eq!(bins, table, "fuzz/Cargo.toml's [[bin]] entries");
    let regressions = fuzz_dir().join("regressions");
    if regressions.is_dir() {
        let stale: Vec<String> = names(&regressions, None)
            .difference(&table)
            .cloned()
            .collect();
        assert!(stale.is_empty(), "regressions for no target: {stale:?}");
    }
}
