//! A multimodal model's vision projector as `convert_hf_to_gguf.py
//! --mmproj` writes it (its `MmprojModel`, conversion/base.py at the
//! reference commit): the vision tower and the projector into the text
//! model, `general.architecture = clip`, `general.type = mmproj`, the
//! `clip.*` keys read from the config's `vision_config` and the folder's
//! image-processor config, no vocabulary. The text model's tensors are
//! dropped. Each projector family is an [`Architecture`] in
//! [`arch::PROJECTORS`](crate::arch::PROJECTORS) (Gemma 3, SmolVLM), the
//! way each is a subclass of `MmprojModel` there.

use crate::arch::{default_filter, map_name, renamed, Architecture, Ctx, Held, Table};
use crate::config::{read_json, Hparams};
use crate::{
    file_type_id, general_of, into_type, is_buffer, meta, output_type, sort_as_converter, weight_like, Folder, OutType,
};
use modelconv_ir::{Array, DType, Error, Metadata, Model, Result, Tensor, Value};
use serde_json::{Map, Value as Json};
use std::path::Path;

/// MmprojModel.n_block_keys: where a vision config gives its layer count.
const N_BLOCK_KEYS: &[&str] = &[
    "n_layers",
    "num_hidden_layers",
    "n_layer",
    "num_layers",
    "depth",
    "layers",
    "encoder_layers",
    "vt_num_hidden_layers",
];

/// The prefixes gguf-py's tensor map knows a SigLIP tower under (Gemma 3's
/// hub checkpoints, SmolVLM's), each followed by [`SIGLIP_TOWER`]'s stems.
const TOWER_PREFIXES: &[&str] = &["vision_tower.vision_model.", "model.vision_model."];

/// A SigLIP vision tower's tensors (tensor_mapping.py, MODEL_ARCH.MMPROJ),
/// by their names after the tower prefix.
const SIGLIP_TOWER: Table = &[
    ("embeddings.patch_embedding", "v.patch_embd"),
    ("embeddings.position_embedding", "v.position_embd"),
    ("encoder.layers.{bid}.self_attn.q_proj", "v.blk.{bid}.attn_q"),
    ("encoder.layers.{bid}.self_attn.k_proj", "v.blk.{bid}.attn_k"),
    ("encoder.layers.{bid}.self_attn.v_proj", "v.blk.{bid}.attn_v"),
    ("encoder.layers.{bid}.self_attn.out_proj", "v.blk.{bid}.attn_out"),
    ("encoder.layers.{bid}.layer_norm1", "v.blk.{bid}.ln1"),
    ("encoder.layers.{bid}.layer_norm2", "v.blk.{bid}.ln2"),
    ("encoder.layers.{bid}.mlp.fc1", "v.blk.{bid}.ffn_up"),
    ("encoder.layers.{bid}.mlp.fc2", "v.blk.{bid}.ffn_down"),
    ("post_layernorm", "v.post_ln"),
];

/// MmprojModel.filter_tensors, after a projector's own: the text model's
/// tensors dropped, then ModelBase's renames.
pub(crate) fn shared_filter(name: &str) -> Option<String> {
    if name.contains("language_model.") {
        return None;
    }
    default_filter(name)
}

/// `t` renamed to its GGUF name: a tower tensor by [`SIGLIP_TOWER`], a
/// projector tensor by the family's tables; anything else is refused, as
/// the converter's `map_tensor_name` refuses it.
pub(crate) fn map_vision<A: Architecture + ?Sized>(cx: &Ctx, arch: &A, hf: &str, t: Tensor) -> Result<Tensor> {
    let tower = TOWER_PREFIXES.iter().find_map(|p| hf.strip_prefix(p));
    let name = tower
        .and_then(|stem| map_name(&[SIGLIP_TOWER], stem))
        .or_else(|| map_name(arch.tables(), hf));
    renamed(cx, arch, name, t)
}

/// MmprojModel.tensor_force_quant: the patch embedding (and a patch
/// merger) F16 in an F16 file, F32 otherwise.
pub(crate) fn patch_forced_type(gguf: &str, out: DType) -> Option<DType> {
    if gguf.contains(".patch_embd.weight") || gguf.contains(".patch_merger.weight") {
        return Some(if out == DType::F16 { DType::F16 } else { DType::F32 });
    }
    None
}

/// The type prepare_tensors gives a projector tensor: F32 for 1-D tensors
/// and norms whatever the family forces; else the family's forced type;
/// else F32 for the position embedding and non-weights; else `out`.
fn tensor_type(arch: &dyn Architecture, hf: &str, t: &Tensor, out: DType) -> DType {
    let name = t.info.name.as_str();
    if t.info.shape.len() <= 1 || name.ends_with("_norm.weight") {
        return DType::F32;
    }
    if let Some(d) = arch.forced_type(hf, name, out) {
        return d;
    }
    if name == "v.position_embd.weight" || !weight_like(name) {
        DType::F32
    } else {
        out
    }
}

/// The config's `vision_config`, which MmprojModel reads its vision
/// hyper-parameters from.
pub fn vision(f: &Folder) -> Result<Hparams> {
    match f.hparams.get("vision_config") {
        Some(Json::Object(m)) => Ok(Hparams { map: m.clone() }),
        _ => Err(Error::malformed(
            &f.dir.join("config.json"),
            "no vision_config object (a vision projector is converted from a multimodal model's folder)",
        )),
    }
}

/// The text model's width (`hidden_size`, else `n_embd`, of `text_config`
/// over the top level): the projector's output dimension.
fn text_width(f: &Folder) -> Result<u64> {
    let mut merged = f.hparams.map.clone();
    if let Some(Json::Object(text)) = f.hparams.get("text_config") {
        merged.extend(text.clone());
    }
    let width = ["hidden_size", "n_embd"]
        .iter()
        .find_map(|k| merged.get(*k))
        .and_then(Json::as_u64)
        .unwrap_or(0);
    if width == 0 {
        return Err(Error::malformed(
            &f.dir.join("config.json"),
            "no text_config hidden_size (the width the projector maps into)",
        ));
    }
    Ok(width)
}

/// The image-processor settings: preprocessor_config.json (its
/// `media_proc_cfg` lifted to the top), overlaid by processor_config.json
/// (its `image_processor` lifted), as MmprojModel merges them.
pub fn preprocessor(dir: &Path) -> Result<Map<String, Json>> {
    let mut merged = Map::new();
    for (file, nested) in [
        ("preprocessor_config.json", "media_proc_cfg"),
        ("processor_config.json", "image_processor"),
    ] {
        let path = dir.join(file);
        let Some(json) = read_json(&path)? else { continue };
        let Json::Object(mut cfg) = json else {
            return Err(Error::malformed(&path, "expected a JSON object"));
        };
        if let Some(Json::Object(inner)) = cfg.get(nested).cloned() {
            cfg.extend(inner);
        }
        merged.extend(cfg);
    }
    Ok(merged)
}

/// A JSON list as gguf-py's `add_array` writes it: all floats F32, all
/// integers I32; empty or mixed lists are refused, as it refuses them.
fn number_array(path: &Path, key: &str, v: Option<&Json>) -> Result<Value> {
    let bad = |why: &str| Error::malformed(path, format!("{key}: {why}"));
    let items = match v {
        Some(Json::Array(a)) if !a.is_empty() => a,
        Some(Json::Array(_)) => return Err(bad("an empty list")),
        Some(_) => return Err(bad("expected a list of numbers")),
        None => return Err(bad("missing (the image normalisation the projector needs)")),
    };
    let is_int = |x: &Json| x.is_i64() || x.is_u64();
    if items.iter().all(is_int) {
        let ints = items.iter().map(|x| x.as_i64().and_then(|i| i32::try_from(i).ok()));
        return ints
            .collect::<Option<Vec<i32>>>()
            .map(|v| Value::Array(Array::I32(v)))
            .ok_or_else(|| bad("an integer past i32"));
    }
    if items.iter().any(is_int) {
        return Err(bad("integers and floats mixed (gguf-py writes one type per list)"));
    }
    let floats = items
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect::<Option<Vec<f32>>>();
    floats
        .map(|v| Value::Array(Array::F32(v)))
        .ok_or_else(|| bad("expected a list of numbers"))
}

/// MmprojModel.set_gguf_parameters for a vision encoder, reading the
/// vision config `v` and the image-processor settings `pre`
/// ([`preprocessor`]): the file type, then the `clip.vision.*` shape keys
/// and the image normalisation, in the converter's order.
pub fn vision_parameters(
    cx: &Ctx,
    v: &Hparams,
    pre: &Map<String, Json>,
    md: &mut Metadata,
    file_type: u32,
) -> Result<()> {
    let f = cx.folder;
    md.set("general.file_type", Value::U32(file_type));
    md.set("clip.has_vision_encoder", Value::Bool(true));
    let u = |md: &mut Metadata, key: &str, x: u64| crate::arch::put_u32(md, "clip.vision", key, x);
    u(md, "projection_dim", text_width(f)?)?;
    u(md, "image_size", v.uint(&["image_size"])?)?;
    u(md, "patch_size", v.uint(&["patch_size"])?)?;
    u(
        md,
        "embedding_length",
        v.uint(&["hidden_size", "width", "vt_hidden_size"])?,
    )?;
    u(
        md,
        "feed_forward_length",
        v.uint(&["intermediate_size", "vt_intermediate_size"])?,
    )?;
    u(md, "block_count", v.uint(N_BLOCK_KEYS)?)?;
    u(
        md,
        "attention.head_count",
        v.uint(&["num_attention_heads", "num_heads", "heads", "vt_num_attention_heads"])?,
    )?;
    let pre_path = f.dir.join("preprocessor_config.json");
    md.set(
        "clip.vision.image_mean",
        number_array(&pre_path, "image_mean", pre.get("image_mean"))?,
    );
    md.set(
        "clip.vision.image_std",
        number_array(&pre_path, "image_std", pre.get("image_std"))?,
    );
    Ok(())
}

/// The projector type and the vision layer-norm epsilon (`layer_norm_eps`,
/// else the family's default), which every family writes next.
pub fn projector_keys(v: &Hparams, md: &mut Metadata, projector: &str, default_eps: f64) -> Result<()> {
    md.set("clip.projector_type", Value::String(projector.into()));
    let eps = v.opt_f64(&["layer_norm_eps"])?.unwrap_or(default_eps);
    md.set("clip.vision.attention.layer_norm_epsilon", Value::F32(eps as f32));
    Ok(())
}

/// Rewrites `model` (the multimodal folder's weights) into its vision
/// projector.
pub(crate) fn apply(model: &mut Model, f: &Folder, out: OutType) -> Result<()> {
    let block_count = vision(f)?.uint(N_BLOCK_KEYS)?;
    sort_as_converter(model);
    let out_type = output_type(model, out)?;
    let cx = Ctx { folder: f, block_count };
    let mut held = Held::default();
    let mut tensors = Vec::new();
    for t in std::mem::take(&mut model.tensors) {
        let Some(hf) = f.arch.filter(&t.info.name) else {
            continue;
        };
        if is_buffer(&hf) {
            continue;
        }
        for t in f.arch.modify_tensors(&cx, &hf, t, &mut held)? {
            let to = tensor_type(f.arch, &hf, &t, out_type);
            tensors.push(into_type(t, to)?);
        }
    }
    held.check_empty()?;
    if tensors.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no vision tower or projector tensors for {}",
            f.dir.display(),
            f.hf_arch
        )));
    }
    model.tensors = tensors;
    model.check_unique_names()?;
    let mut md = Metadata::new();
    md.set("general.architecture", Value::String(f.arch.name().into()));
    let general = general_of(f, &model.tensors);
    meta::write_general_as(
        &mut md,
        &f.dir,
        &general,
        [("general.type", Value::String("mmproj".into()))],
    )?;
    f.arch.set_gguf_parameters(&cx, &mut md, file_type_id(out_type))?;
    md.set("general.quantization_version", Value::U32(2));
    model.metadata = md;
    model.notes = vec![format!(
        "Hugging Face {} → llama.cpp vision projector ('{}', for mtmd): {} tensors",
        f.hf_arch,
        f.arch.name(),
        model.tensors.len()
    )];
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_lists_take_gguf_py_types() {
        let p = Path::new("p.json");
        let f = |s: &str| number_array(p, "k", Some(&serde_json::from_str(s).unwrap()));
        assert_eq!(f("[0.5, 0.25]").unwrap(), Value::Array(Array::F32(vec![0.5, 0.25])));
        assert_eq!(f("[1, 2]").unwrap(), Value::Array(Array::I32(vec![1, 2])));
        assert!(f("[1, 0.5]").is_err());
        assert!(f("[]").is_err());
        assert!(f("\"x\"").is_err());
        assert!(number_array(p, "k", None).unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn only_the_known_tower_prefixes_map() {
        let get = |n: &str| {
            let stem = TOWER_PREFIXES.iter().find_map(|p| n.strip_prefix(p));
            stem.and_then(|s| map_name(&[SIGLIP_TOWER], s))
        };
        assert_eq!(
            get("vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight").as_deref(),
            Some("v.blk.3.ffn_up.weight")
        );
        assert_eq!(
            get("model.vision_model.post_layernorm.bias").as_deref(),
            Some("v.post_ln.bias")
        );
        // transformers 5's save of Gemma 3 (no vision_model.): the converter cannot map it either.
        assert_eq!(get("vision_tower.encoder.layers.0.mlp.fc1.weight"), None);
    }
}
