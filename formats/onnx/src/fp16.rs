//! float32 → float16 rewrite of a whole model, as users know it from
//! onnxconverter-common's `convert_float_to_float16`:
//!
//! - FLOAT initializers, Constant values and value types become FLOAT16;
//!   values are clamped into float16's range (|x| > 65504 → ±65504, and
//!   0 < |x| < 2⁻²⁴ → ±2⁻²⁴), and the clamps are counted.
//! - With `keep_io_types`, FLOAT graph inputs and outputs stay FLOAT and
//!   Cast nodes convert at the edges.
//! - Ops that must stay in float32 (Resize, TopK, Range, CumSum, …) are
//!   wrapped: their float inputs are cast to FLOAT and their float outputs
//!   back to FLOAT16.
//! - Cast(to=FLOAT), ConstantOfShape, EyeLike and friends are retargeted.

use crate::graph::{self, attr_int, attr_tensor, node, op, Names};
use crate::proto::{GraphProto, ModelProto, NodeProto, TensorProto};
use crate::read::OnnxFile;
use crate::tensor::dt;
use crate::write::{OnnxOut, OutInit};
use bytes::Bytes;
use half::f16;
use modelconv_ir::{DataSource, Error, Result};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Ops kept in float32 (onnxconverter-common's default block list, plus the
/// random generators whose dtype attribute defaults to float).
pub const DEFAULT_BLOCKED: &[&str] = &[
    "ArrayFeatureExtractor",
    "Binarizer",
    "CastMap",
    "CategoryMapper",
    "DictVectorizer",
    "FeatureVectorizer",
    "Imputer",
    "LabelEncoder",
    "LinearClassifier",
    "LinearRegressor",
    "Normalizer",
    "OneHotEncoder",
    "RandomUniformLike",
    "SVMClassifier",
    "SVMRegressor",
    "Scaler",
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "ZipMap",
    "NonMaxSuppression",
    "TopK",
    "RoiAlign",
    "Resize",
    "Range",
    "CumSum",
    "Min",
    "Max",
    "Upsample",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
];

const MAX_F16: f32 = 65504.0;
const MIN_POSITIVE_F16: f32 = 5.96e-08;

#[derive(Debug, Clone)]
pub struct Fp16Options {
    pub keep_io_types: bool,
    /// Op types kept in float32.
    pub blocked: Vec<String>,
}

impl Default for Fp16Options {
    fn default() -> Self {
        Fp16Options {
            keep_io_types: true,
            blocked: DEFAULT_BLOCKED.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Values changed to fit float16, counted as they are converted (lazily
/// converted initializers are counted when they are written).
#[derive(Debug, Default)]
pub struct Clamps {
    /// |x| > 65504, set to ±65504.
    pub overflow: AtomicU64,
    /// 0 < |x| < 2⁻²⁴, set to ±2⁻²⁴.
    pub underflow: AtomicU64,
}

impl Clamps {
    pub fn total(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed) + self.underflow.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Fp16Report {
    pub converted_initializers: usize,
    pub converted_constants: usize,
    pub blocked_nodes: usize,
    pub casts_added: usize,
    pub clamps: Arc<Clamps>,
}

fn to_f16(x: f32, c: &Clamps) -> u16 {
    let y = if x > MAX_F16 && x < f32::INFINITY {
        c.overflow.fetch_add(1, Ordering::Relaxed);
        MAX_F16
    } else if x < -MAX_F16 && x > f32::NEG_INFINITY {
        c.overflow.fetch_add(1, Ordering::Relaxed);
        -MAX_F16
    } else if x > 0.0 && x < MIN_POSITIVE_F16 {
        c.underflow.fetch_add(1, Ordering::Relaxed);
        MIN_POSITIVE_F16
    } else if x < 0.0 && x > -MIN_POSITIVE_F16 {
        c.underflow.fetch_add(1, Ordering::Relaxed);
        -MIN_POSITIVE_F16
    } else {
        x
    };
    f16::from_f32(y).to_bits()
}

/// F32 bytes → clamped F16 bytes, converted as they are read.
struct Fp16Source {
    inner: Arc<dyn DataSource>,
    clamps: Arc<Clamps>,
}

impl DataSource for Fp16Source {
    fn len(&self) -> u64 {
        self.inner.len() / 2
    }
    fn granule(&self) -> u64 {
        2
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if !offset.is_multiple_of(2) || !buf.len().is_multiple_of(2) {
            return Err(Error::internal("unaligned read of a float16 tensor"));
        }
        let mut src = vec![0u8; buf.len() * 2];
        self.inner.read_at(offset * 2, &mut src)?;
        for (o, i) in buf.chunks_exact_mut(2).zip(src.chunks_exact(4)) {
            let x = f32::from_le_bytes([i[0], i[1], i[2], i[3]]);
            o.copy_from_slice(&to_f16(x, &self.clamps).to_le_bytes());
        }
        Ok(())
    }
}

struct Ctx<'a> {
    file: &'a OnnxFile,
    blocked: HashSet<&'a str>,
    names: Names,
    report: Fp16Report,
}

impl Ctx<'_> {
    /// A FLOAT TensorProto converted in memory (Constant values, subgraph
    /// initializers).
    fn tensor(&mut self, t: &TensorProto) -> Result<TensorProto> {
        if t.data_type != Some(dt::FLOAT) {
            return Ok(t.clone());
        }
        let name = t.name.clone().unwrap_or_default();
        let init = self
            .file
            .tensor(t, &name)?
            .ok_or_else(|| Error::invalid(format!("tensor '{name}' has no data")))?;
        let bytes = init.tensor.read_all()?;
        let mut out = Vec::with_capacity(bytes.len() / 2);
        for c in bytes.chunks_exact(4) {
            out.extend_from_slice(
                &to_f16(f32::from_le_bytes([c[0], c[1], c[2], c[3]]), &self.report.clamps).to_le_bytes(),
            );
        }
        self.report.converted_constants += 1;
        Ok(TensorProto {
            dims: t.dims.clone(),
            data_type: Some(dt::FLOAT16),
            name: t.name.clone(),
            doc_string: t.doc_string.clone(),
            raw_data: Some(Bytes::from(out)),
            metadata_props: t.metadata_props.clone(),
            ..Default::default()
        })
    }

    fn cast(&mut self, from: &str, to: &str, to_type: i32) -> NodeProto {
        self.report.casts_added += 1;
        let name = self.names.fresh(&format!("{to}_cast"));
        let mut n = node("Cast", "", name, vec![from.into()], vec![to.into()]);
        n.attribute.push(attr_int("to", to_type as i64));
        n
    }

    /// Retargets the attributes of a node that runs in float16.
    fn retarget(&mut self, n: &mut NodeProto, types: &HashMap<String, i32>) -> Result<()> {
        let default = graph::is_default_domain(n);
        let op_type = op(n).to_string();
        for a in &mut n.attribute {
            let name = a.name.as_deref().unwrap_or("");
            match (default, op_type.as_str(), name) {
                (true, "Cast", "to") | (true, "EyeLike" | "RandomNormalLike" | "RandomUniformLike", "dtype")
                    if a.i == Some(dt::FLOAT as i64) =>
                {
                    a.i = Some(dt::FLOAT16 as i64)
                }
                _ => {}
            }
            if let Some(t) = &a.t {
                a.t = Some(self.tensor(t)?);
            }
            for t in &mut a.tensors {
                *t = self.tensor(t)?;
            }
            for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                self.graph(g, types, false, false)?;
            }
        }
        if default && op_type == "Constant" {
            // value_float(s) become a FLOAT16 `value` tensor.
            if let Some(i) = n
                .attribute
                .iter()
                .position(|a| matches!(a.name.as_deref(), Some("value_float" | "value_floats")))
            {
                let a = n.attribute.remove(i);
                let vals: Vec<f32> = a.f.map(|f| vec![f]).unwrap_or(a.floats);
                let dims = if a.name.as_deref() == Some("value_float") {
                    vec![]
                } else {
                    vec![vals.len() as i64]
                };
                let t = TensorProto {
                    dims,
                    data_type: Some(dt::FLOAT),
                    raw_data: Some(Bytes::from(
                        vals.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
                    )),
                    ..Default::default()
                };
                let t = self.tensor(&t)?;
                n.attribute.insert(i, attr_tensor("value", t));
            }
        }
        if default && op_type == "ConstantOfShape" && graph::attr(n, "value").is_none() {
            n.attribute.push(attr_tensor(
                "value",
                TensorProto {
                    dims: vec![1],
                    data_type: Some(dt::FLOAT16),
                    raw_data: Some(Bytes::from_static(&[0, 0])),
                    ..Default::default()
                },
            ));
        }
        Ok(())
    }

    /// Rewrites one graph. `top` is the model's main graph, whose FLOAT
    /// initializers are converted lazily by the caller and whose inputs
    /// and outputs keep FLOAT with `keep_io`.
    fn graph(&mut self, g: &mut GraphProto, outer: &HashMap<String, i32>, top: bool, keep_io: bool) -> Result<()> {
        let types = graph::value_types(g, outer);
        let is_float = |name: &str| types.get(name) == Some(&dt::FLOAT);
        let inits: HashSet<String> = g.initializer.iter().filter_map(|t| t.name.clone()).collect();
        let mut rename: HashMap<String, String> = HashMap::new();
        let (mut pre, mut post) = (Vec::new(), Vec::new());
        if top && keep_io {
            for v in &mut g.input {
                let x = v.name.clone().unwrap_or_default();
                if inits.contains(&x) || outer.contains_key(&x) {
                    // An initializer listed as input (IR < 4): it is converted.
                    if let Some(t) = &mut v.r#type {
                        graph::retype(t, dt::FLOAT, dt::FLOAT16);
                    }
                } else if graph::elem_type(v) == Some(dt::FLOAT) {
                    let c = self.names.fresh(&format!("{x}_fp16"));
                    pre.push(self.cast(&x, &c, dt::FLOAT16));
                    rename.insert(x, c);
                }
            }
            let produced: HashSet<&String> = g.node.iter().flat_map(|n| &n.output).collect();
            for v in &g.output {
                let y = v.name.clone().unwrap_or_default();
                if graph::elem_type(v) == Some(dt::FLOAT) && produced.contains(&y) {
                    let c = self.names.fresh(&format!("{y}_fp16"));
                    post.push(self.cast(&c, &y, dt::FLOAT));
                    rename.insert(y, c);
                }
            }
        } else {
            for v in g.input.iter_mut().chain(g.output.iter_mut()) {
                if let Some(t) = &mut v.r#type {
                    graph::retype(t, dt::FLOAT, dt::FLOAT16);
                }
            }
        }
        for v in &mut g.value_info {
            if let Some(t) = &mut v.r#type {
                graph::retype(t, dt::FLOAT, dt::FLOAT16);
            }
        }
        if !top {
            // A subgraph's initializers are converted here, in memory (the
            // main graph's are streamed by the caller).
            for t in &mut g.initializer {
                *t = self.tensor(t)?;
            }
        }
        let mut nodes = pre;
        let mut to_fp32: HashMap<String, String> = HashMap::new();
        for mut n in std::mem::take(&mut g.node) {
            rename_inputs(&mut n, &rename);
            let ml = n.domain.as_deref() == Some("ai.onnx.ml");
            let blocked = (graph::is_default_domain(&n) || ml) && self.blocked.contains(op(&n));
            if blocked {
                self.report.blocked_nodes += 1;
                let originals: Vec<String> = n.input.clone();
                for (i, input) in originals.iter().enumerate() {
                    let orig = original_name(input, &rename);
                    if input.is_empty() || !is_float(orig) {
                        continue;
                    }
                    let c = match to_fp32.get(input) {
                        Some(c) => c.clone(),
                        None => {
                            let c = self.names.fresh(&format!("{input}_fp32"));
                            nodes.push(self.cast(input, &c, dt::FLOAT));
                            to_fp32.insert(input.clone(), c.clone());
                            c
                        }
                    };
                    n.input[i] = c;
                }
                let mut after = Vec::new();
                for o in n.output.iter_mut() {
                    if o.is_empty() || !is_float(o) {
                        if let Some(r) = rename.get(o) {
                            *o = r.clone();
                        }
                        continue;
                    }
                    let target = rename.get(o).cloned().unwrap_or_else(|| o.clone());
                    let c = self.names.fresh(&format!("{target}_fp32"));
                    after.push(self.cast(&c, &target, dt::FLOAT16));
                    *o = c;
                }
                nodes.push(n);
                nodes.extend(after);
            } else {
                for o in n.output.iter_mut() {
                    if let Some(r) = rename.get(o) {
                        *o = r.clone();
                    }
                }
                self.retarget(&mut n, &types)?;
                nodes.push(n);
            }
        }
        nodes.extend(post);
        g.node = nodes;
        Ok(())
    }
}

fn original_name<'a>(name: &'a str, rename: &'a HashMap<String, String>) -> &'a str {
    rename
        .iter()
        .find(|(_, v)| v.as_str() == name)
        .map_or(name, |(k, _)| k.as_str())
}

/// Applies `rename` to a node's inputs and to the inputs of nodes in its
/// subgraphs (which may read values of the enclosing graph).
fn rename_inputs(n: &mut NodeProto, rename: &HashMap<String, String>) {
    if rename.is_empty() {
        return;
    }
    for i in n.input.iter_mut() {
        if let Some(r) = rename.get(i) {
            *i = r.clone();
        }
    }
    for a in &mut n.attribute {
        for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
            for sub in &mut g.node {
                rename_inputs(sub, rename);
            }
        }
    }
}

/// The fp16 version of `file`'s model.
pub fn to_fp16(file: &OnnxFile, opts: &Fp16Options) -> Result<(OnnxOut, Fp16Report)> {
    let mut model: ModelProto = file.model.clone();
    let mut g = model.graph.take().unwrap_or_default();
    // The main graph's initializers are set aside (they are streamed out
    // with their data converted lazily); their types seed inference.
    let init_protos = std::mem::take(&mut g.initializer);
    let mut ctx = Ctx {
        file,
        blocked: opts.blocked.iter().map(|s| s.as_str()).collect(),
        names: Names::of(file.graph()),
        report: Fp16Report::default(),
    };
    let outer: HashMap<String, i32> = init_protos
        .iter()
        .filter_map(|t| Some((t.name.clone()?, t.data_type?)))
        .collect();
    ctx.graph(&mut g, &outer, true, opts.keep_io_types)?;
    let mut inits = Vec::with_capacity(init_protos.len());
    for proto in init_protos {
        let name = proto.name.clone().unwrap_or_default();
        let Some(init) = file.tensor(&proto, &name)? else {
            inits.push(OutInit { proto, data: None });
            continue;
        };
        if init.data_type == dt::FLOAT {
            ctx.report.converted_initializers += 1;
            let data: Arc<dyn DataSource> = Arc::new(Fp16Source {
                inner: init.tensor.data.clone(),
                clamps: ctx.report.clamps.clone(),
            });
            let mut proto = proto;
            proto.data_type = Some(dt::FLOAT16);
            inits.push(OutInit {
                proto,
                data: Some(data),
            });
        } else {
            inits.push(OutInit {
                proto,
                data: Some(init.stored.clone()),
            });
        }
    }
    model.graph = Some(g);
    Ok((OnnxOut { model, inits }, ctx.report))
}
