//! modelconv's library face: the format registry, which the command line
//! (`src/main.rs`) and the fuzz targets (`crates/fuzzing`) both ask, so the
//! list of formats and the order `scan` asks them in are written once.

pub mod registry;
