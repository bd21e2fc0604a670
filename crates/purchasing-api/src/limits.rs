//! The limits the process runs under and the admission limit `--max-in-flight auto`
//! derives from them. One definition, in the `capacity` crate, shared with the queue
//! worker's prefetch; re-exported here so the API's modules name it in one place.

pub use capacity::*;
