//! PaddlePaddle's `paddle.save` files (`.pdparams`, `.pdopt`): a pickled
//! dict of numpy arrays, read by the same restricted VM as checkpoints
//! (numpy's `_reconstruct`, protocol 2's `_codecs.encode` bytes). Paddle's
//! own conventions:
//! - `StructuredToParameterName@@`: the structured name → parameter name
//!   map, kept as metadata; `--names param` names tensors by it.
//! - Values saved as `(parameter name, array)` tuples (nested state dicts).
//! - Arrays over 2^30 bytes split into `NAME@@.0`, `NAME@@.1`, … with
//!   `UnpackBigParamInfor@@` giving the original shape: joined again by a
//!   concat view.
//!
//! Paddle has no uint16 type: it saves bfloat16 tensors as uint16 numpy
//! arrays, so those read as BF16 (the same bytes).

use modelconv_ir::view::Concat;
use modelconv_ir::{
    DType, Error, Format, FormatOption, Metadata, Model, OpenOptions, OptionValue, Probe, Result, Stage, Tensor,
    TensorInfo, Value as Meta,
};
use modelconv_npy::pickled::{array_of, ArrayTensors, NdArray, NUMPY};
use modelconv_pickle::{Chain, Value, PYTHON};
use std::path::Path;
use std::sync::Arc;

pub const NAME: &str = "paddle";
/// The open option choosing the names: `structured` (default) or `param`.
pub const NAMES_OPTION: &str = "names";

const STRUCTURED_KEY: &str = "StructuredToParameterName@@";
const UNPACK_KEY: &str = "UnpackBigParamInfor@@";

pub struct Paddle;
pub static FORMAT: Paddle = Paddle;

const OPTIONS: &[FormatOption] = &[FormatOption {
    name: NAMES_OPTION,
    stages: &[Stage::Open],
    value: OptionValue::Value("structured|param"),
    help: "name tensors by their structured names (the default) or their parameter names (param)",
}];

impl Format for Paddle {
    fn name(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "PaddlePaddle paddle.save (.pdparams, .pdopt): pickled numpy arrays, read without running code"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["pdparams", "pdopt"]
    }
    fn score(&self, probe: &Probe) -> u8 {
        let pickle = probe.head.first() == Some(&0x80) && probe.head.get(1).is_some_and(|&p| (2..=5).contains(&p));
        let ext = probe
            .path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| self.extensions().contains(&e));
        if pickle && ext {
            60
        } else {
            0
        }
    }
    fn open(&self, path: &Path, opts: &OpenOptions) -> Result<Model> {
        let param = match opts.options.get(NAMES_OPTION) {
            None | Some("structured") => false,
            Some("param") => true,
            Some(other) => {
                return Err(Error::invalid(format!("--names {other}: use structured or param")));
            }
        };
        open(path, param)
    }
    fn options(&self) -> &'static [FormatOption] {
        OPTIONS
    }
}

/// What a `paddle.save` pickle may build: Python's containers and numpy's
/// arrays (protocol 2 spells bytes with `_codecs.encode`).
static PADDLE: Chain = Chain(&[&PYTHON, &NUMPY]);

/// `prefix.key`, or `key` at the top.
fn dotted(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// What a walk found: tensors by structured name, the parameter name
/// where a tuple gave one, and other leaves as metadata.
#[derive(Default)]
struct Walked {
    tensors: Vec<(String, Option<String>, NdArray)>,
    metadata: Vec<(String, Meta)>,
}

fn walk(v: &Value, prefix: &str, out: &mut Walked, depth: usize) -> Result<()> {
    if depth > 64 {
        return Err(Error::invalid("nested deeper than 64 dicts"));
    }
    let Value::Dict(d) = v else { return Ok(()) };
    for (k, x) in d.borrow().iter() {
        let key = match k {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            other => format!("({})", other.kind()),
        };
        let name = dotted(prefix, &key);
        if let Some(a) = array_of(x) {
            if let Some(a) = a.as_ref() {
                out.tensors.push((name, None, a.clone()));
            }
            continue;
        }
        match x {
            Value::Tuple(items) => match items.as_slice() {
                [Value::Str(p), a] if array_of(a).is_some() => {
                    if let Some(a) = array_of(a).as_ref().and_then(|a| a.as_ref()) {
                        out.tensors.push((name, Some(p.to_string()), a.clone()));
                    }
                }
                _ => out
                    .metadata
                    .push((name, Meta::String(format!("a tuple of {}", items.len())))),
            },
            Value::Dict(_) => walk(x, &name, out, depth + 1)?,
            Value::Int(i) => out.metadata.push((name, Meta::I64(*i))),
            Value::Float(f) => out.metadata.push((name, Meta::F64(*f))),
            Value::Bool(b) => out.metadata.push((name, Meta::Bool(*b))),
            Value::Str(s) => out.metadata.push((name, Meta::String(s.to_string()))),
            other => out.metadata.push((name, Meta::String(other.kind().to_string()))),
        }
    }
    Ok(())
}

/// A split parameter: its name, original shape and slice names.
type Split = (String, Vec<u64>, Vec<String>);

/// `{"name": {"OriginShape": [...], "slices": ["name@@.0", …]}}`.
fn unpack_info(v: &Value) -> Result<Vec<Split>> {
    let Value::Dict(d) = v else {
        return Err(Error::invalid(format!("{UNPACK_KEY} is a {}, not a dict", v.kind())));
    };
    let mut out = Vec::new();
    for (k, info) in d.borrow().iter() {
        let name = k.as_str().unwrap_or_default().to_string();
        let Value::Dict(fields) = info else {
            return Err(Error::invalid(format!("{UNPACK_KEY}['{name}'] is not a dict")));
        };
        let fields = fields.borrow();
        let get = |f: &str| {
            fields
                .iter()
                .find(|(k, _)| k.as_str() == Some(f))
                .map(|(_, v)| v.clone())
        };
        let shape = get("OriginShape")
            .and_then(|s| s.items())
            .ok_or_else(|| Error::invalid(format!("{UNPACK_KEY}['{name}'] has no OriginShape")))?
            .iter()
            .map(|d| match d {
                Value::Int(i) => u64::try_from(*i).map_err(|_| Error::invalid(format!("dimension {i}"))),
                other => Err(Error::invalid(format!("dimension {}", other.kind()))),
            })
            .collect::<Result<Vec<u64>>>()?;
        let slices = get("slices")
            .and_then(|s| s.items())
            .ok_or_else(|| Error::invalid(format!("{UNPACK_KEY}['{name}'] has no slices")))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::invalid("a slice name that is not a str"))
            })
            .collect::<Result<Vec<String>>>()?;
        out.push((name, shape, slices));
    }
    Ok(out)
}

/// Opens a `paddle.save` file; `param` names tensors by parameter name.
pub fn open(path: &Path, param: bool) -> Result<Model> {
    let file = modelconv_ir::SharedFile::open(path)?;
    let root = modelconv_pickle::load_whole(path, "pickle", file.mapped()?, None, &PADDLE)?;
    let arrays = ArrayTensors::default();
    let in_file = |e: Error| e.in_file(path);
    let Value::Dict(top) = &*root else {
        return Err(Error::malformed(
            path,
            format!("holds a {}, not a dict of arrays", root.kind()),
        ));
    };
    let mut structured: Vec<(String, String)> = Vec::new();
    let mut unpack = Vec::new();
    let rest = Value::Dict(std::rc::Rc::new(std::cell::RefCell::new(Vec::new())));
    if let Value::Dict(r) = &rest {
        for (k, v) in top.borrow().iter() {
            match k.as_str() {
                Some(STRUCTURED_KEY) => {
                    if let Value::Dict(m) = v {
                        structured = m
                            .borrow()
                            .iter()
                            .filter_map(|(a, b)| Some((a.as_str()?.to_string(), b.as_str()?.to_string())))
                            .collect();
                    }
                }
                Some(UNPACK_KEY) => unpack = unpack_info(v).map_err(in_file)?,
                _ => r.borrow_mut().push((k.clone(), v.clone())),
            }
        }
    }
    let mut found = Walked::default();
    walk(&rest, "", &mut found, 0).map_err(in_file)?;
    let mut tensors: Vec<(String, Option<String>, Tensor)> = Vec::new();
    for (name, p, f) in &found.tensors {
        let mut t = arrays.tensor(path, name, f)?;
        if t.info.dtype == DType::U16 {
            t.info = TensorInfo::new(name.clone(), DType::BF16, t.info.shape.clone()).map_err(in_file)?;
        }
        tensors.push((name.clone(), p.clone(), t));
    }
    // Split parameters, joined again in their place (where slice 0 was).
    for (name, shape, slices) in unpack {
        let mut parts = Vec::new();
        let mut first = None;
        for s in &slices {
            let i = tensors
                .iter()
                .position(|(n, _, _)| n == s)
                .ok_or_else(|| Error::malformed(path, format!("'{name}': its slice '{s}' is missing")))?;
            first.get_or_insert(i);
            let (_, _, t) = tensors.remove(i);
            parts.push(t);
        }
        let Some(dtype) = parts.first().map(|t| t.info.dtype) else {
            continue;
        };
        if parts.iter().any(|t| t.info.dtype != dtype) {
            return Err(Error::malformed(path, format!("'{name}': slices of different dtypes")));
        }
        let sources = parts.iter().map(|t| (t.data.clone(), vec![t.info.numel()])).collect();
        let (joined, _) = Concat::new(sources, dtype.type_size(), 0).map_err(in_file)?;
        let info = TensorInfo::new(name.clone(), dtype, shape).map_err(in_file)?;
        if info.byte_len != modelconv_ir::DataSource::len(&joined) {
            return Err(Error::malformed(
                path,
                format!("'{name}': OriginShape {:?} does not match its slices", info.shape),
            ));
        }
        let t = Tensor::new(info, Arc::new(joined)).map_err(in_file)?;
        let at = first.unwrap_or(tensors.len()).min(tensors.len());
        tensors.insert(at, (name, None, t));
    }
    let mut metadata = Metadata::new();
    for (k, v) in found.metadata {
        metadata.set(k, v);
    }
    if !structured.is_empty() {
        let names: modelconv_ir::Strings = structured.iter().flat_map(|(a, b)| [a.as_str(), b.as_str()]).collect();
        metadata.set(
            "paddle.structured_to_parameter_name",
            Meta::Array(modelconv_ir::Array::String(names)),
        );
    }
    let mut model = Model {
        format: NAME,
        path: path.to_path_buf(),
        metadata,
        declared_order: true,
        ..Default::default()
    };
    for (name, p, mut t) in tensors {
        if param {
            let mapped = p.or_else(|| structured.iter().find(|(s, _)| *s == name).map(|(_, q)| q.clone()));
            if let Some(q) = mapped {
                t.info = TensorInfo::new(q, t.info.dtype, t.info.shape.clone()).map_err(in_file)?;
            }
        }
        model.tensors.push(t);
    }
    model.notes.push(format!(
        "Paddle: tensors named by their {} names",
        if param { "parameter" } else { "structured" }
    ));
    model.check_unique_names().map_err(in_file)?;
    Ok(model)
}
