//! Gemma 3's vision projector (Gemma3VisionModel, conversion/gemma.py):
//! a SigLIP tower and Gemma's projector (an input projection and a
//! soft-embedding RMS norm stored as `w - 1`), `projector_type gemma3`.

use super::{Architecture, Ctx, Held, Table, Vocab};
use crate::mmproj::{map_vision, patch_forced_type, projector_keys, shared_filter, vision, vision_parameters};
use modelconv_ir::{DType, Error, Metadata, Result, Tensor, Value};

pub struct Gemma3Vision;

/// Gemma's projector (tensor_mapping.py, MODEL_ARCH.MMPROJ), its weights
/// spelled `_weight` in the checkpoint (the filter makes them `.weight`).
const GEMMA3_PROJECTOR: Table = &[
    ("multi_modal_projector.mm_input_projection", "mm.input_projection"),
    ("multi_modal_projector.mm_soft_emb_norm", "mm.soft_emb_norm"),
];

/// The prefixes the converter keeps a tensor under; the rest is the text
/// model's.
const KEPT: &[&str] = &[
    "multi_modal_projector.",
    "vision_tower.",
    "multimodal_projector.",
    "vision_model.",
];

impl Architecture for Gemma3Vision {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["Gemma3ForConditionalGeneration"]
    }
    fn name(&self) -> &'static str {
        "clip"
    }
    fn tables(&self) -> &'static [Table] {
        &[GEMMA3_PROJECTOR]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[]
    }
    /// The SigLIP pooling head (tinygemma3's) and the text model dropped;
    /// `_weight` spelled `.weight`.
    fn filter(&self, name: &str) -> Option<String> {
        if name.contains("vision_model.head.") || !KEPT.iter().any(|p| name.starts_with(p)) {
            return None;
        }
        shared_filter(&name.replace("_weight", ".weight"))
    }
    /// The shared vision keys, then Gemma3VisionModel's: projector type,
    /// epsilon (default 1e-6), GELU, and the pooling scale factor where a
    /// test-sized model's differs from Gemma 3's 4.
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        let v = vision(cx.folder)?;
        let pre = crate::mmproj::preprocessor(&cx.folder.dir)?;
        vision_parameters(cx, &v, &pre, md, ft)?;
        projector_keys(&v, md, "gemma3", 1e-6)?;
        md.set("clip.use_gelu", Value::Bool(true));
        let pre_path = cx.folder.dir.join("preprocessor_config.json");
        let seq = match pre.get("image_seq_length") {
            None => Some(256),
            Some(j) => j.as_u64(),
        }
        .ok_or_else(|| Error::malformed(&pre_path, "image_seq_length: expected a token count"))?;
        // int(image_seq_length ** 0.5): the pooled tokens per side.
        let per_side = (seq as f64).sqrt() as u64;
        let (image, patch) = (v.uint(&["image_size"])?, v.uint(&["patch_size"])?);
        if per_side == 0 || patch == 0 {
            return Err(Error::malformed(
                &cx.folder.dir.join("config.json"),
                "a zero patch_size or image_seq_length (the projector's pooling is undefined)",
            ));
        }
        let scale = image / patch / per_side;
        if scale > 0 && scale != 4 {
            crate::arch::put_u32(md, "clip.vision", "projector.scale_factor", scale)?;
        }
        Ok(())
    }
    /// Mapped; the soft-embedding norm gains Gemma's `+ 1` (the tower's
    /// LayerNorms are stored as they are applied).
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        let mut t = map_vision(cx, self, hf, t)?;
        if hf.contains("soft_emb_norm.weight") {
            super::norm_plus_one(hf, &mut t)?;
        }
        Ok(vec![t])
    }
    /// The input projection F16 always (llama.cpp issue 13025), the
    /// embeddings F32, then MmprojModel's rule.
    fn forced_type(&self, hf: &str, gguf: &str, out: DType) -> Option<DType> {
        if hf.contains("input_projection") {
            Some(DType::F16)
        } else if hf.contains(".embeddings.") {
            Some(DType::F32)
        } else {
            patch_forced_type(gguf, out)
        }
    }
}
