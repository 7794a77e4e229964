//! # modelconv-pickle
//!
//! The pickle engine: a restricted VM ([`vm`]) that interprets a pickle
//! stream as data and never runs code. Globals resolve to names only;
//! calling one builds data only when the reading format plugged in a
//! constructor for it ([`constructors`]); this crate knows Python's own
//! containers and no library's names. [`scan`] reads streams the way
//! `scan` needs them: every global named, with a verdict.

pub mod constructors;
pub mod joblib;
pub mod scan;
pub mod text;
pub mod value;
mod verdicts;
pub mod vm;
mod walk;
pub mod zipscan;

pub use constructors::{Chain, Constructors, PYTHON};
pub use value::{Object, Value};
/// What `scan` says of a Python global `module.name` that something other
/// than a pickle makes its loader import (a Keras config's `module`).
pub use verdicts::classify;

/// Reads the whole of `bytes` (part `part` of the file at `path`) as one
/// pickle that builds what `constructors` allow. Bytes after its STOP are
/// never read by Python's unpickler; a file that has them may hide a
/// second pickle, so they are refused.
pub fn load_whole(
    path: &std::path::Path,
    part: &str,
    bytes: &[u8],
    persistent: Option<&mut dyn vm::PersistentLoad>,
    constructors: &'static dyn Constructors,
) -> modelconv_ir::Result<value::Root> {
    let mut vm = vm::Vm::new(bytes, persistent, constructors);
    let root = value::Root(vm.run().map_err(|e| e.into_error(path, part))?);
    let end = vm.position();
    if end < bytes.len() {
        return Err(modelconv_ir::Error::malformed(
            path,
            format!(
                "{part}: {} bytes after the pickle's STOP at byte {end} (a hidden payload?)",
                bytes.len() - end
            ),
        ));
    }
    Ok(root)
}
