//! SmolVLM's (and Idefics3's) vision projector (SmolVLMModel,
//! conversion/smolvlm.py): a SigLIP-shaped tower and the connector's
//! pixel-shuffle projection, `projector_type idefics3`.

use super::{Architecture, Ctx, Held, Table, Vocab};
use crate::mmproj::{map_vision, patch_forced_type, projector_keys, shared_filter, vision, vision_parameters};
use modelconv_ir::{DType, Metadata, Result, Tensor, Value};
use serde_json::Value as Json;

pub struct SmolVlm;

/// The connector (tensor_mapping.py, MODEL_ARCH.MMPROJ).
const IDEFICS3_CONNECTOR: Table = &[("model.connector.modality_projection.proj", "mm.model.fc")];

impl Architecture for SmolVlm {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["SmolVLMForConditionalGeneration", "Idefics3ForConditionalGeneration"]
    }
    fn name(&self) -> &'static str {
        "clip"
    }
    fn tables(&self) -> &'static [Table] {
        &[IDEFICS3_CONNECTOR]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[]
    }
    /// Only the tower and the connector are kept.
    fn filter(&self, name: &str) -> Option<String> {
        let vision = ["vision_tower", "vision_model", "model.connector"];
        if !vision.iter().any(|p| name.contains(p)) {
            return None;
        }
        shared_filter(name)
    }
    /// The shared vision keys (SmolVLM2's vision config may leave out its
    /// width, heads and FFN: transformers' defaults), then SmolVLMModel's:
    /// projector type, epsilon (default 1e-5), the pixel-shuffle scale
    /// factor (default 2), GELU, and the longest image edge it resizes to.
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        let mut v = vision(cx.folder)?;
        if v.get("model_type").and_then(Json::as_str) == Some("smolvlm_vision") {
            for (key, default) in [
                ("hidden_size", 1152u64),
                ("num_attention_heads", 16),
                ("intermediate_size", 3072),
            ] {
                v.map.entry(key).or_insert(Json::from(default));
            }
        }
        let pre = crate::mmproj::preprocessor(&cx.folder.dir)?;
        vision_parameters(cx, &v, &pre, md, ft)?;
        projector_keys(&v, md, "idefics3", 1e-5)?;
        let scale = cx.folder.hparams.opt_uint(&["scale_factor"])?.unwrap_or(2);
        crate::arch::put_u32(md, "clip.vision", "projector.scale_factor", scale)?;
        md.set("clip.use_gelu", Value::Bool(true));
        let longest = pre
            .get("size")
            .and_then(|s| s.get("longest_edge"))
            .and_then(Json::as_u64);
        let size = match longest {
            Some(s) => s,
            None => v.uint(&["image_size"])?,
        };
        crate::arch::put_u32(md, "clip.vision", "preproc_image_size", size)?;
        Ok(())
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        Ok(vec![map_vision(cx, self, hf, t)?])
    }
    /// The embeddings F32, then MmprojModel's rule.
    fn forced_type(&self, hf: &str, gguf: &str, out: DType) -> Option<DType> {
        if hf.contains(".embeddings.") {
            Some(DType::F32)
        } else {
            patch_forced_type(gguf, out)
        }
    }
}
