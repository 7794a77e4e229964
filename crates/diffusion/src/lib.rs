//! Diffusion and video models (Flux, SD 1.x/SDXL, SD3, AuraFlow, HiDream,
//! Cosmos, LTX-Video, HunyuanVideo, Wan, Lumina 2) in GGUF as
//! ComfyUI-GGUF's loader reads them: the rules of its `tools/convert.py`
//! (detection, prefix stripping, the F16/BF16/F32 choice, SD's reshape to
//! rows of 256), of its patched llama-quantize (`tools/lcpp.patch`: what is
//! quantized, to which type) and of `tools/fix_5d_tensors.py` (5-D
//! tensors as F32), each cited to its line at ComfyUI-GGUF 795e451. This
//! crate decides; the pipeline casts, quantizes and writes.

pub mod arch;

pub use arch::{Arch, ARCHES};
use modelconv_ggml::mix::FileType;
use modelconv_ir::{Array, DType, Error, Metadata, Model, Result, Value};

/// convert.py line 12: the longest tensor name it writes (ComfyUI's
/// loader, like its patched ggml with GGML_MAX_NAME 128, takes no longer).
pub const MAX_NAME: usize = 127;
/// convert.py line 10: tensors of at most this many elements stay F32.
const QUANTIZATION_THRESHOLD: u64 = 1024;
/// convert.py line 11: SD tensors are reshaped from this many elements.
const REARRANGE_THRESHOLD: u64 = 512;
/// The metadata key prefix that records a reshaped tensor's shape
/// (convert.py line 295; the loader's `get_orig_shape`).
pub const ORIG_SHAPE: &str = "comfy.gguf.orig_shape.";

/// convert.py's `strip_prefix` (lines 183–211): the first of
/// `model.diffusion_model.` and `model.` that some key starts with, else
/// `net.` when every key does; keys without it are dropped.
fn prefix_of(names: &[&str]) -> Option<&'static str> {
    ["model.diffusion_model.", "model."]
        .into_iter()
        .find(|p| names.iter().any(|n| n.starts_with(p)))
        .or_else(|| (!names.is_empty() && names.iter().all(|n| n.starts_with("net."))).then_some("net."))
}

/// A key with the prefix taken out as convert.py does it
/// (`k.replace(prefix, "")` on keys containing it: every occurrence).
fn stripped(name: &str, prefix: Option<&str>) -> Option<String> {
    match prefix {
        None => Some(name.to_string()),
        Some(p) if name.contains(p) => Some(name.replace(p, "")),
        Some(_) => None,
    }
}

/// convert.py's `detect_arch` (lines 151–170) on a model's tensor names,
/// after the prefix is stripped: the first architecture one of whose key
/// groups is all present; one whose diffusers-layout key is present is
/// refused as convert.py refuses it. None: not a model it converts.
pub fn detect(model: &Model) -> Result<Option<&'static Arch>> {
    let names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
    let prefix = prefix_of(&names);
    let keys: std::collections::HashSet<String> = names.iter().filter_map(|n| stripped(n, prefix)).collect();
    for a in ARCHES {
        let Some(group) = a.detect.iter().find(|g| g.iter().all(|k| keys.contains(*k))) else {
            continue;
        };
        if let Some(b) = a.banned.iter().find(|b| keys.contains(**b)) {
            return Err(Error::unsupported(format!(
                "{}: a {} model in the diffusers layout ('{b}'); ComfyUI-GGUF converts the reference layout \
                 (the single-file checkpoint ComfyUI loads), not diffusers' folders",
                model.path.display(),
                a.name
            )));
        }
        let _ = group;
        return Ok(Some(a));
    }
    Ok(None)
}

/// What kind of diffusion input a model is.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A checkpoint (safetensors, a PyTorch file) convert.py converts.
    Checkpoint(&'static Arch),
    /// A GGUF convert.py wrote (its `general.architecture`), which the
    /// patched llama-quantize quantizes.
    Gguf(&'static Arch),
}

impl Source {
    pub fn arch(&self) -> &'static Arch {
        match self {
            Source::Checkpoint(a) | Source::Gguf(a) => a,
        }
    }
}

/// A GGUF of one of these architectures by its `general.architecture`,
/// else a checkpoint [`detect`] recognizes; None for any other model.
pub fn recognize(model: &Model) -> Result<Option<Source>> {
    if let Some(name) = model.metadata.get("general.architecture").and_then(Value::as_str) {
        return Ok(Arch::named(name).map(Source::Gguf));
    }
    Ok(detect(model)?.map(Source::Checkpoint))
}

/// The model as convert.py would hold its state dict: the prefix
/// stripped, other keys and the architecture's ignored keys dropped,
/// names checked against [`MAX_NAME`], tensors in the state dict's order
/// (safetensors' `load_file` returns them sorted by name).
pub fn prepare(model: &mut Model, a: &Arch) -> Result<()> {
    let names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
    let prefix = prefix_of(&names);
    model.tensors.sort_by(|x, y| x.info.name.cmp(&y.info.name));
    let mut kept = Vec::with_capacity(model.tensors.len());
    for mut t in std::mem::take(&mut model.tensors) {
        let Some(name) = stripped(&t.info.name, prefix) else {
            continue;
        };
        if a.ignored(&name) {
            continue;
        }
        if name != t.info.name {
            t.info = modelconv_ir::TensorInfo::new(name, t.info.dtype, t.info.shape.clone())?;
        }
        kept.push(t);
    }
    let long: Vec<String> = kept
        .iter()
        .filter(|t| t.info.name.len() > MAX_NAME)
        .map(|t| format!("'{}' ({})", t.info.name, t.info.name.len()))
        .collect();
    if !long.is_empty() {
        return Err(Error::invalid(format!(
            "{}: tensor names longer than {MAX_NAME} bytes, which ComfyUI-GGUF's loader cannot take: {}",
            model.path.display(),
            long.join(", ")
        )));
    }
    model.tensors = kept;
    Ok(())
}

/// The type convert.py writes a tensor in (lines 246–285): BF16 sources
/// BF16 and every other F16 (FP8 through F16), except that from F32 or
/// BF16 sources 1-D tensors, tensors of at most 1024 elements and the
/// architecture's high-precision names stay F32; tensors of more than 4
/// dimensions F32 (fix_5d_tensors.py line 61) where the architecture
/// carries them, refused elsewhere (convert.py line 24).
pub fn base_type(a: &Arch, name: &str, from: DType, shape: &[u64]) -> Result<DType> {
    if !matches!(
        from,
        DType::F32 | DType::F16 | DType::BF16 | DType::F64 | DType::F8_E4M3 | DType::F8_E5M2
    ) {
        return Err(Error::unsupported(format!(
            "tensor '{name}' is {from}; a diffusion checkpoint's weights are floats"
        )));
    }
    if shape.len() > 4 {
        if !a.five_d {
            return Err(Error::unsupported(format!(
                "tensor '{name}' {shape:?} has {} dimensions; convert.py handles more than 4 only for HunyuanVideo and Wan, not {}",
                shape.len(),
                a.name
            )));
        }
        return Ok(DType::F32);
    }
    let hiprec_source = matches!(from, DType::F32 | DType::BF16);
    let n: u64 = shape.iter().product();
    if hiprec_source && (shape.len() == 1 || n <= QUANTIZATION_THRESHOLD || a.high_precision(name)) {
        return Ok(DType::F32);
    }
    Ok(if from == DType::BF16 { DType::BF16 } else { DType::F16 })
}

/// SD1/SDXL's reshape (convert.py lines 287–295): a tensor of 2 or more
/// dimensions, at least 512 elements, a multiple of 256 of them and a
/// last dimension that is not, becomes `(n / 256, 256)`; None otherwise.
pub fn reshaped(a: &Arch, shape: &[u64]) -> Option<Vec<u64>> {
    let n: u64 = shape.iter().product();
    let last = *shape.last()?;
    (a.shape_fix && shape.len() > 1 && n >= REARRANGE_THRESHOLD && n.is_multiple_of(256) && !last.is_multiple_of(256))
        .then(|| vec![n / 256, 256])
}

/// The metadata convert.py writes (lines 344–347, then 295 per reshaped
/// tensor): the architecture, the quantization version, and the file
/// type — BF16 when BF16 is the commonest source type, F16 otherwise.
pub fn base_metadata(a: &Arch, source_types: &[DType]) -> Metadata {
    let mut counts: Vec<(DType, usize)> = Vec::new();
    for &d in source_types {
        match counts.iter_mut().find(|(t, _)| *t == d) {
            Some((_, c)) => *c += 1,
            None => counts.push((d, 1)),
        }
    }
    let main = counts.iter().max_by_key(|(_, c)| *c).map(|(d, _)| *d);
    let mut md = Metadata::new();
    md.set("general.architecture", Value::String(a.name.into()));
    md.set("general.quantization_version", Value::U32(2));
    md.set(
        "general.file_type",
        Value::U32(if main == Some(DType::BF16) { 32 } else { 1 }),
    );
    md
}

/// The INT32 array convert.py records for a reshaped tensor.
pub fn orig_shape_value(shape: &[u64]) -> Result<Value> {
    let dims = shape
        .iter()
        .map(|&d| i32::try_from(d).map_err(|_| Error::invalid(format!("dimension {d} does not fit INT32"))))
        .collect::<Result<Vec<i32>>>()?;
    Ok(Value::Array(Array::I32(dims)))
}

/// The logical shape of every tensor a ComfyUI-GGUF file reshaped (its
/// `comfy.gguf.orig_shape.<name>` keys), by name.
pub fn logical_shapes(md: &Metadata) -> Vec<(String, Vec<u64>)> {
    md.iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(ORIG_SHAPE)?;
            let Value::Array(Array::I32(dims)) = v else {
                return None;
            };
            let shape = dims
                .iter()
                .map(|&d| u64::try_from(d).ok())
                .collect::<Option<Vec<_>>>()?;
            Some((name.to_string(), shape))
        })
        .collect()
}

/// The file types the patched llama-quantize makes of an image model: not
/// the i-quants (lcpp.patch lines 144–153 refuse them), nor the types
/// added to llama.cpp after the b3962 tag it patches.
pub fn check_file_type(ft: FileType) -> Result<()> {
    const MADE: &[&str] = &[
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L",
        "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
    ];
    if MADE.contains(&ft.name) {
        return Ok(());
    }
    Err(Error::unsupported(format!(
        "{}: not a type for an image model (ComfyUI-GGUF's patched llama-quantize makes {}; the i-quants it refuses)",
        ft.name,
        MADE.join(", ")
    )))
}

/// lcpp.patch's per-run counters (`qs.i_attention_wv`, `qs.i_ffn_down`).
#[derive(Default)]
pub struct Counters {
    attention_wv: u32,
    ffn_down: u32,
}

/// The type the patched llama-quantize gives a tensor of type `from`
/// (`ne`: ggml's dimensions, innermost first) for file type `ft`:
/// llama.cpp's eligibility (a 2-D or larger `…weight`, not a norm), the
/// architecture's never-quantize lists, 2-D only (lcpp.patch 426–429),
/// then `img_tensor_get_type` (lines 129–255): raised types for value,
/// fused QKV and FFN-down weights, and F16 where a K-quant row does not
/// fill 256. A tensor not quantized keeps `from`.
pub fn quant_type(a: &Arch, ft: FileType, name: &str, ne: &[u64], from: DType, c: &mut Counters) -> Result<DType> {
    // lcpp.patch 135–142: names only a non-stripped or diffusers file has.
    const NOT_UNET: &[&str] = &[
        "model.diffusion_model.",
        "first_stage_model.",
        "single_transformer_blocks.",
        "joint_transformer_blocks.",
    ];
    if NOT_UNET.iter().any(|f| name.contains(f)) {
        return Err(Error::invalid(format!(
            "tensor '{name}': not a supported UNET model (its patched llama-quantize refuses such names)"
        )));
    }
    let dims = ne.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1);
    let eligible =
        dims == 2 && modelconv_ggml::mix::allows_quantization(name, ne, false) && a.allows_quantization(name);
    if !eligible || ft.is_copy() {
        return Ok(from);
    }
    let mut to = raised_type(ft, name, c);
    if is_k_quant(to) && ne.first().is_some_and(|&n0| !n0.is_multiple_of(256)) {
        to = DType::F16;
    }
    if to.block_size() > 1 && ne.first().is_some_and(|&n0| !n0.is_multiple_of(to.block_size())) {
        return Err(Error::invalid(format!(
            "tensor '{name}' {ne:?} (ggml order): rows of {} do not fill {to}'s blocks of {}",
            ne[0],
            to.block_size()
        )));
    }
    Ok(to)
}

fn is_k_quant(d: DType) -> bool {
    matches!(d, DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K)
}

/// `img_tensor_get_type`'s three rules (lcpp.patch 155–225), in order.
fn raised_type(ft: FileType, name: &str, c: &mut Counters) -> DType {
    let has = |f: &str| name.contains(f);
    let default = ft.default;
    let value = [
        "attn_v.weight",
        ".to_v.weight",
        ".v.weight",
        ".attn.w1v.weight",
        ".attn.w2v.weight",
        "_attn.v_proj.weight",
    ];
    if value.iter().any(|f| has(f)) {
        let to = match ft.name {
            "Q2_K" => DType::Q3_K,
            "Q3_K_M" if c.attention_wv < 2 => DType::Q5_K,
            "Q3_K_M" => DType::Q4_K,
            "Q3_K_L" => DType::Q5_K,
            "Q4_K_M" | "Q5_K_M" => DType::Q6_K,
            "Q4_K_S" if c.attention_wv < 4 => DType::Q5_K,
            _ => default,
        };
        c.attention_wv += 1;
        return to;
    }
    if ["attn_qkv.weight", "attn.qkv.weight", "attention.qkv.weight"]
        .iter()
        .any(|f| has(f))
    {
        return match ft.name {
            "Q3_K_M" | "Q3_K_L" => DType::Q4_K,
            "Q4_K_M" => DType::Q5_K,
            "Q5_K_M" => DType::Q6_K,
            _ => default,
        };
    }
    let ffn_down = has("ffn_down")
        || (has("experts.") && has(".w2.weight"))
        || [
            ".ffn.2.weight",
            ".ff.net.2.weight",
            ".mlp.layer2.weight",
            ".adaln_modulation_mlp.2.weight",
            ".feed_forward.w2.weight",
        ]
        .iter()
        .any(|f| has(f));
    if ffn_down {
        c.ffn_down += 1;
        return match ft.name {
            "Q3_K_M" => DType::Q4_K,
            "Q3_K_L" | "Q4_K_S" => DType::Q5_K,
            "Q4_K_M" | "Q5_K_M" => DType::Q6_K,
            "Q4_0" => DType::Q4_1,
            "Q5_0" => DType::Q5_1,
            _ => default,
        };
    }
    default
}

/// The shape llama-quantize writes (`ggml_n_dims`: outer dimensions of 1
/// dropped), except lcpp.patch's 3-D fixes (lines 275–319), which keep
/// three dimensions when the third (ggml order) is 1.
pub fn written_shape(a: &Arch, name: &str, shape: &[u64]) -> Vec<u64> {
    let n = shape.len();
    if n >= 3 && shape[n - 3] == 1 && a.keeps_three_dims(name) {
        return shape[n - 3..].to_vec();
    }
    let first = shape.iter().position(|&d| d != 1).unwrap_or(n.saturating_sub(1));
    shape[first.min(n.saturating_sub(1))..].to_vec()
}

/// fix_5d_tensors.py's order (lines 68–77): every other tensor in turn,
/// each tensor of more than 4 dimensions right after the one whose name,
/// `.bias` replaced by `.weight`, is its name; the rest at the end.
pub fn five_d_order(names: &[String], five_d: &[bool]) -> Vec<usize> {
    let mut order = Vec::with_capacity(names.len());
    let mut placed = vec![false; names.len()];
    for (i, name) in names.iter().enumerate() {
        if five_d[i] {
            continue;
        }
        order.push(i);
        let key = name.replace(".bias", ".weight");
        if let Some(j) = names.iter().position(|n| *n == key).filter(|&j| five_d[j]) {
            order.push(j);
            placed[j] = true;
        }
    }
    order.extend((0..names.len()).filter(|&j| five_d[j] && !placed[j]));
    order
}

/// Which loader the GGUF is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// ComfyUI-GGUF: convert.py, lcpp.patch, fix_5d_tensors.py.
    #[default]
    ComfyUi,
    /// stable-diffusion.cpp's `sd-cli -M convert` (src/convert.cpp and
    /// ModelLoader::tensor_should_be_converted in src/model_loader.cpp, at
    /// stable-diffusion.cpp 97d2990): names as they are, no metadata.
    SdCpp,
}

/// The type stable-diffusion.cpp stores a tensor of the checkpoint in:
/// its loader's type first (FP8 as F16, F64 as F32:
/// src/model_io/safetensors_io.cpp 326–340), then `to` unless
/// `tensor_should_be_converted` (model_loader.cpp 1509–1545) keeps it: a
/// row that does not fill `to`'s blocks, biases and scales, Flux's, MMDiT's
/// and the UNet's embedders, and anything named `embedding`.
pub fn sd_cpp_type(name: &str, ne: &[u64], from: DType, to: DType) -> Result<DType> {
    let loaded = match from {
        DType::F8_E4M3 | DType::F8_E5M2 | DType::F16 => DType::F16,
        DType::F64 | DType::F32 => DType::F32,
        DType::BF16 => DType::BF16,
        other => {
            return Err(Error::unsupported(format!(
                "tensor '{name}' is {other}; a diffusion checkpoint's weights are floats"
            )))
        }
    };
    const KEPT_FRAGMENTS: &[&str] = &[
        // Flux
        "img_in.",
        "txt_in.",
        "time_in.",
        "vector_in.",
        "guidance_in.",
        "final_layer.",
        // MMDiT
        "x_embedder.",
        "t_embedder.",
        "y_embedder.",
        "pos_embed",
        "context_embedder.",
        // UNet
        "time_embed.",
        "label_emb.",
        "embedding",
    ];
    let short_row = to.block_size() > 1 && ne.first().is_some_and(|&n0| !n0.is_multiple_of(to.block_size()));
    let kept = short_row
        || [".bias", ".scale", ".weight_scale"].iter().any(|s| name.ends_with(s))
        || KEPT_FRAGMENTS.iter().any(|f| name.contains(f));
    Ok(if kept { loaded } else { to })
}

/// The shape stable-diffusion.cpp writes: a 5-D tensor's two outer
/// dimensions merged (safetensors_io.cpp 277–283), then outer dimensions of
/// 1 dropped as ggml_n_dims drops them.
pub fn sd_cpp_shape(shape: &[u64]) -> Vec<u64> {
    let merged: Vec<u64> = if shape.len() == 5 {
        std::iter::once(shape[0].saturating_mul(shape[1]))
            .chain(shape[2..].iter().copied())
            .collect()
    } else {
        shape.to_vec()
    };
    let n = merged.len();
    if n == 0 {
        return vec![1];
    }
    let first = merged.iter().position(|&d| d != 1).unwrap_or(n - 1);
    merged[first.min(n - 1)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ft(name: &str) -> FileType {
        modelconv_ggml::mix::file_type(name).unwrap()
    }

    #[test]
    fn convert_py_types() {
        let flux = Arch::named("flux").unwrap();
        let big = [3072, 3072];
        assert_eq!(base_type(flux, "a.weight", DType::BF16, &big).unwrap(), DType::BF16);
        assert_eq!(base_type(flux, "a.weight", DType::F32, &big).unwrap(), DType::F16);
        assert_eq!(base_type(flux, "a.bias", DType::F32, &[3072]).unwrap(), DType::F32);
        // An F16 source keeps even its 1-D tensors F16.
        assert_eq!(base_type(flux, "a.bias", DType::F16, &[3072]).unwrap(), DType::F16);
        assert_eq!(base_type(flux, "a.weight", DType::BF16, &[32, 32]).unwrap(), DType::F32);
        assert_eq!(
            base_type(flux, "a.weight", DType::BF16, &[33, 32]).unwrap(),
            DType::BF16
        );
        let wan = Arch::named("wan").unwrap();
        assert_eq!(
            base_type(wan, "blocks.0.modulation", DType::BF16, &[1, 6, 5120]).unwrap(),
            DType::F32
        );
        assert_eq!(
            base_type(wan, "p.weight", DType::BF16, &[5120, 16, 1, 2, 2]).unwrap(),
            DType::F32
        );
        assert!(base_type(flux, "p.weight", DType::BF16, &[5120, 16, 1, 2, 2]).is_err());
    }

    #[test]
    fn sd_reshape_only_where_rows_do_not_fill_256() {
        let sd1 = Arch::named("sd1").unwrap();
        assert_eq!(reshaped(sd1, &[320, 320]), Some(vec![400, 256]));
        assert_eq!(reshaped(sd1, &[320, 4, 3, 3]), Some(vec![45, 256]));
        assert_eq!(reshaped(sd1, &[320, 3, 3, 3]), None); // 8640 % 256 != 0
        assert_eq!(reshaped(sd1, &[1280, 256]), None);
        assert_eq!(reshaped(sd1, &[256]), None);
        assert_eq!(reshaped(Arch::named("flux").unwrap(), &[320, 320]), None);
    }

    #[test]
    fn lcpp_patch_types() {
        let flux = Arch::named("flux").unwrap();
        let mut c = Counters::default();
        let q = |name: &str, ne: &[u64], f: &str, c: &mut Counters| {
            quant_type(flux, ft(f), name, ne, DType::F16, c).unwrap()
        };
        assert_eq!(
            q("double_blocks.0.img_attn.qkv.weight", &[3072, 9216], "Q4_K_M", &mut c),
            DType::Q5_K
        );
        assert_eq!(
            q("double_blocks.0.img_mlp.2.weight", &[12288, 3072], "Q4_K_M", &mut c),
            DType::Q4_K
        );
        assert_eq!(q("img_in.weight", &[64, 3072], "Q4_K_M", &mut c), DType::F16);
        assert_eq!(
            q("double_blocks.0.img_attn.norm.key_norm.scale", &[128], "Q8_0", &mut c),
            DType::F16
        );
        // A K-quant row that does not fill 256: F16.
        assert_eq!(
            q("single_blocks.0.linear2.weight", &[320, 3072], "Q4_K_S", &mut c),
            DType::F16
        );
        let sd1 = Arch::named("sd1").unwrap();
        let v = |c: &mut Counters| {
            quant_type(sd1, ft("Q3_K_M"), "x.attn1.to_v.weight", &[256, 400], DType::F16, c).unwrap()
        };
        let mut c = Counters::default();
        assert_eq!(
            [v(&mut c), v(&mut c), v(&mut c)],
            [DType::Q5_K, DType::Q5_K, DType::Q4_K]
        );
        let down = quant_type(sd1, ft("Q4_0"), "x.ff.net.2.weight", &[256, 10], DType::F16, &mut c).unwrap();
        assert_eq!(down, DType::Q4_1);
        assert!(check_file_type(ft("IQ4_XS")).is_err());
    }

    #[test]
    fn sd_cpp_rules() {
        let q = |name: &str, ne: &[u64], from: DType| sd_cpp_type(name, ne, from, DType::Q4_0).unwrap();
        assert_eq!(
            q("double_blocks.0.img_attn.qkv.weight", &[3072, 9216], DType::BF16),
            DType::Q4_0
        );
        assert_eq!(
            q("double_blocks.0.img_attn.qkv.bias", &[9216], DType::BF16),
            DType::BF16
        );
        assert_eq!(q("img_in.weight", &[64, 3072], DType::F32), DType::F32);
        assert_eq!(q("x.norm.weight", &[320], DType::F8_E4M3), DType::Q4_0);
        assert_eq!(q("x.proj.weight", &[40, 3], DType::F64), DType::F32);
        assert_eq!(sd_cpp_shape(&[5120, 16, 1, 2, 2]), [81920, 1, 2, 2]);
        assert_eq!(sd_cpp_shape(&[1, 6, 5120]), [6, 5120]);
        assert_eq!(sd_cpp_shape(&[]), [1]);
    }

    #[test]
    fn three_d_fixes_and_five_d_order() {
        let sd3 = Arch::named("sd3").unwrap();
        assert_eq!(written_shape(sd3, "pos_embed", &[1, 9216, 1536]), [1, 9216, 1536]);
        assert_eq!(written_shape(sd3, "other", &[1, 9216, 1536]), [9216, 1536]);
        let names: Vec<String> = ["a.bias", "a.weight", "b.weight", "c.weight"]
            .map(String::from)
            .to_vec();
        assert_eq!(five_d_order(&names, &[false, true, false, true]), [0, 1, 2, 3]);
        assert_eq!(five_d_order(&names, &[false, false, true, false]), [0, 1, 3, 2]);
    }
}
