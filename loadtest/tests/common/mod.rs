//! What the lab's integration tests share. A folder of its own, so cargo does not take it
//! for a test.

use std::path::PathBuf;

/// A binary of the workspace, built by `cargo test --workspace` beside `loadtest`
/// (`target/<profile>/NAME`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let loadtest = PathBuf::from(env!("CARGO_BIN_EXE_loadtest"));
    let path = loadtest
        .parent()
        .expect("target/<profile> directory")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing; run the tests with `cargo test --workspace` from the repository root",
        path.display()
    );
    path
}
