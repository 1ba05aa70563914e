//! The fuzz target `resp_parse`'s body (`usec_replication::apps::fuzz::check`) on every
//! input of its checked-in corpus, `fuzz/seeds/resp_parse/` — seeds, and each input the
//! fuzzer once failed on — so the normal test suite exercises it on stable, without
//! nightly or libFuzzer.

use std::path::Path;

#[test]
fn every_seed_passes_the_fuzz_target() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/resp_parse");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus in {} has only {} inputs", dir.display(), files.len());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| usec_replication::apps::fuzz::check(&data));
        assert!(outcome.is_ok(), "{} fails the fuzz target's checks", file.display());
    }
}
