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
