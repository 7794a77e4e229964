//! A model: ordered metadata and an ordered list of lazy tensors.

use crate::{Error, Metadata, Result, Tensor};
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Name of the format it was read from.
    pub format: &'static str,
    /// The file or folder it was read from.
    pub path: PathBuf,
    pub metadata: Metadata,
    pub tensors: Vec<Tensor>,
    /// What the reader wants the user to know (which state dict it took,
    /// what it left out); printed on stderr unless quiet.
    pub notes: Vec<String>,
    /// The reader's own parse of the input, for its [`crate::Format::details`]
    /// and rewrites (so the file is decoded once).
    pub source: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
    /// The tensor order is one the file declares (a pickled state dict's
    /// insertion order, a GGUF or ONNX list), not an accident of layout (a
    /// safetensors header is a JSON map). Conversions that order tensors as
    /// a reference tool does (HF → GGUF sorts safetensors names) keep it.
    pub declared_order: bool,
    /// How many tensors each file held, in order, when the model was read
    /// from several files (a split GGUF); empty for one file.
    pub input_shards: Vec<usize>,
    /// The files the output must be written as, by tensor count in tensor
    /// order (`quantize --keep-split`), when a stage asks for it.
    pub output_shards: Option<Vec<usize>>,
}

impl Model {
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.info.name == name)
    }

    /// Total number of elements.
    pub fn parameters(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| t.info.numel())
            .fold(0u64, u64::saturating_add)
    }

    /// Total bytes of tensor data.
    pub fn data_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| t.info.byte_len)
            .fold(0u64, u64::saturating_add)
    }

    /// One error naming every tensor a format cannot hold, grouped by
    /// dtype ("GGUF has no U64 type (tensor 'a'), no BOOL type (tensors
    /// 'b', 'c'); FIX"), so a user fixes them all in one go. `fix` gets the
    /// dtypes refused.
    pub fn refuse_types(
        &self,
        format: &str,
        holds: impl Fn(crate::DType) -> bool,
        fix: impl Fn(&[crate::DType]) -> String,
    ) -> Result<()> {
        let mut bad: Vec<(crate::DType, Vec<&str>)> = Vec::new();
        for t in &self.tensors {
            if holds(t.info.dtype) {
                continue;
            }
            match bad.iter_mut().find(|(d, _)| *d == t.info.dtype) {
                Some((_, names)) => names.push(&t.info.name),
                None => bad.push((t.info.dtype, vec![&t.info.name])),
            }
        }
        if bad.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = bad
            .iter()
            .map(|(d, names)| {
                let shown: Vec<String> = names.iter().take(3).map(|n| format!("'{n}'")).collect();
                let more = if names.len() > 3 {
                    format!(" and {} more", names.len() - 3)
                } else {
                    String::new()
                };
                let noun = if names.len() == 1 { "tensor" } else { "tensors" };
                format!("no {d} type ({noun} {}{more})", shown.join(", "))
            })
            .collect();
        let dtypes: Vec<crate::DType> = bad.iter().map(|(d, _)| *d).collect();
        Err(Error::unsupported(format!(
            "{format} has {}; {}",
            parts.join(", "),
            fix(&dtypes)
        )))
    }

    /// Refuses two tensors with one name (writers and `diff` key by name).
    pub fn check_unique_names(&self) -> Result<()> {
        let mut seen = HashSet::new();
        for t in &self.tensors {
            if !seen.insert(t.info.name.as_str()) {
                return Err(Error::invalid(format!("tensor name '{}' appears twice", t.info.name)));
            }
        }
        Ok(())
    }
}
