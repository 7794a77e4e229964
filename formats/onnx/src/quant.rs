//! Weight-only quantization of an ONNX model: the weight initializers of
//! MatMul and Gemm (and, optionally, Gather embeddings) become INT8 or INT4
//! initializers with float scales, dequantized in the graph.
//!
//! - Blocked `DequantizeLinear` (`axis`, `block_size`; opset 21) when the
//!   model is at opset 21, or can be moved there: every op it uses is
//!   unchanged in meaning between its opset and 21 ([`UPGRADE_SAFE_SINCE`]).
//! - Otherwise INT8 uses per-channel `DequantizeLinear` (opset 13) and INT4
//!   uses `com.microsoft.MatMulNBits` (onnxruntime's contrib op) for MatMul.
//!
//! The scheme is symmetric: per block (or channel) `scale = max|w| / qmax`
//! (qmax 127 or 7), `q = round_half_even(w / scale)`, zero point 0.

use crate::graph::{self, attr_i, attr_int, node, op, Names};
use crate::proto::{GraphProto, NodeProto, OperatorSetIdProto, TensorProto};
use crate::read::OnnxFile;
use crate::tensor::dt;
use crate::write::{OnnxOut, OutInit};
use half::f16;
use modelconv_ir::{DType, DataSource, Error, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    Int8,
    Int4,
}

impl QType {
    pub fn name(self) -> &'static str {
        match self {
            QType::Int8 => "INT8",
            QType::Int4 => "INT4",
        }
    }
    fn qmax(self) -> f32 {
        match self {
            QType::Int8 => 127.0,
            QType::Int4 => 7.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct QuantOptions {
    pub ty: QType,
    /// Elements per scale along the reduction axis; 0 = one scale per
    /// output channel.
    pub block_size: u64,
    /// Also quantize the data of Gather nodes (embeddings).
    pub embeddings: bool,
    /// Allow moving the default-domain opset to 21 for blocked quantization.
    pub upgrade_opset: bool,
    /// Leave initializers with fewer elements than this alone.
    pub min_elements: u64,
}

impl Default for QuantOptions {
    fn default() -> Self {
        QuantOptions {
            ty: QType::Int8,
            block_size: 32,
            embeddings: false,
            upgrade_opset: true,
            min_elements: 1024,
        }
    }
}

/// How one weight was quantized.
#[derive(Debug, Clone)]
pub struct QuantRow {
    pub name: String,
    /// The weight's type before (`F32` or `F16`).
    pub from: String,
    pub consumer: String,
    pub shape: Vec<u64>,
    pub scheme: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Filled in when the weight is quantized, as the output is written.
    rmse: Arc<Mutex<Option<f64>>>,
}

impl QuantRow {
    /// ‖dequantized − original‖ / ‖original‖, once the output is written.
    pub fn relative_rmse(&self) -> Option<f64> {
        *self.rmse.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Default)]
pub struct QuantReport {
    pub rows: Vec<QuantRow>,
    /// Candidate weights left as they are, with the reason.
    pub skipped: Vec<(String, String)>,
    pub opset_before: i64,
    pub opset_after: i64,
}

/// Default-domain ops and the opset from which their meaning is unchanged
/// up to opset 21 (later versions only added types or optional inputs and
/// attributes whose defaults keep the old behaviour). A model whose ops are
/// all listed at or below its opset can be moved to opset 21.
pub const UPGRADE_SAFE_SINCE: &[(&str, i64)] = &[
    ("Abs", 6),
    ("Acos", 7),
    ("Add", 7),
    ("And", 7),
    ("ArgMax", 11),
    ("ArgMin", 11),
    ("Asin", 7),
    ("Atan", 7),
    ("AveragePool", 11),
    ("BatchNormalization", 9),
    ("Cast", 6),
    ("CastLike", 15),
    ("Ceil", 6),
    ("Celu", 12),
    ("Clip", 11),
    ("Concat", 4),
    ("Constant", 1),
    ("ConstantOfShape", 9),
    ("Conv", 11),
    ("ConvTranspose", 11),
    ("Cos", 7),
    ("CumSum", 11),
    ("DequantizeLinear", 13),
    ("Div", 7),
    ("Dropout", 7),
    ("Einsum", 12),
    ("Elu", 6),
    ("Equal", 7),
    ("Erf", 9),
    ("Exp", 6),
    ("Expand", 8),
    ("Flatten", 11),
    ("Floor", 6),
    ("Gather", 11),
    ("GatherElements", 11),
    ("GatherND", 12),
    ("Gelu", 20),
    ("Gemm", 11),
    ("GlobalAveragePool", 1),
    ("GlobalMaxPool", 1),
    ("Greater", 7),
    ("GreaterOrEqual", 12),
    ("HardSigmoid", 6),
    ("HardSwish", 14),
    ("Hardmax", 13),
    ("Identity", 1),
    ("If", 11),
    ("InstanceNormalization", 6),
    ("IsInf", 10),
    ("IsNaN", 9),
    ("LayerNormalization", 17),
    ("LeakyRelu", 6),
    ("Less", 7),
    ("LessOrEqual", 12),
    ("Log", 6),
    ("LogSoftmax", 13),
    ("Loop", 13),
    ("MatMul", 1),
    ("MatMulInteger", 10),
    ("Max", 8),
    ("MaxPool", 12),
    ("Mean", 8),
    ("Min", 8),
    ("Mish", 18),
    ("Mod", 10),
    ("Mul", 7),
    ("Neg", 6),
    ("NonZero", 9),
    ("Not", 1),
    ("OneHot", 11),
    ("Or", 7),
    ("PRelu", 7),
    ("Pad", 11),
    ("Pow", 7),
    ("QuantizeLinear", 13),
    ("Range", 11),
    ("Reciprocal", 6),
    ("ReduceL2", 18),
    ("ReduceMax", 18),
    ("ReduceMean", 18),
    ("ReduceMin", 18),
    ("ReduceProd", 18),
    ("ReduceSum", 13),
    ("ReduceSumSquare", 18),
    ("Relu", 6),
    ("Reshape", 5),
    ("Resize", 13),
    ("Round", 11),
    ("ScatterElements", 11),
    ("ScatterND", 11),
    ("Selu", 6),
    ("Shape", 1),
    ("Sigmoid", 6),
    ("Sign", 9),
    ("Sin", 7),
    ("Size", 1),
    ("Slice", 10),
    ("Softmax", 13),
    ("Softplus", 1),
    ("Split", 13),
    ("Sqrt", 6),
    ("Squeeze", 13),
    ("Sub", 7),
    ("Sum", 8),
    ("Tan", 7),
    ("Tanh", 6),
    ("Tile", 6),
    ("TopK", 11),
    ("Transpose", 1),
    ("Trilu", 14),
    ("Unsqueeze", 13),
    ("Where", 9),
    ("Xor", 7),
];

/// Default-domain ops whose nodes, valid at opset 9 and below, change
/// meaning or stop being valid at opset 10 or 11 (an attribute made an
/// input, a changed output type, a deprecated op), with that opset.
pub const CHANGED_BY_OPSET_11: &[(&str, i64)] = &[
    ("Slice", 10),
    ("TopK", 10),
    ("Upsample", 10),
    ("Dropout", 10),
    ("Resize", 11),
    ("Pad", 11),
    ("Clip", 11),
    ("Scatter", 11),
    ("MaxUnpool", 11),
];

/// Why the default-domain opset `v` (below 10) cannot move to 11 as
/// onnxruntime's quantizer moves it (its "opset < 10" branch), or `None`
/// if every op keeps its meaning: none changed at 10 or 11, and each is
/// one whose history is known ([`UPGRADE_SAFE_SINCE`]; later changes do
/// not matter here).
pub fn upgrade_to_11_blocker(g: &GraphProto, v: i64) -> Option<String> {
    for n in &g.node {
        if graph::is_default_domain(n) {
            if let Some((o, at)) = CHANGED_BY_OPSET_11.iter().find(|(o, at)| *o == op(n) && *at > v) {
                return Some(format!("{o} changed meaning at opset {at}, after {v}"));
            }
            if !UPGRADE_SAFE_SINCE.iter().any(|(o, _)| *o == op(n)) {
                return Some(format!("op {} is not known to be unchanged up to opset 11", op(n)));
            }
        }
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                if let Some(r) = upgrade_to_11_blocker(sub, v) {
                    return Some(r);
                }
            }
        }
    }
    None
}

/// Why the default-domain opset `v` cannot move to 21, or `None` if it can.
pub fn upgrade_blocker(g: &GraphProto, v: i64) -> Option<String> {
    for n in &g.node {
        if graph::is_default_domain(n) {
            match UPGRADE_SAFE_SINCE.iter().find(|(o, _)| *o == op(n)) {
                Some((_, since)) if *since <= v => {}
                Some((o, since)) => return Some(format!("{o} changed meaning at opset {since}, after {v}")),
                None => return Some(format!("op {} is not known to be unchanged up to opset 21", op(n))),
            }
        }
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                if let Some(r) = upgrade_blocker(sub, v) {
                    return Some(r);
                }
            }
        }
    }
    None
}

#[derive(Clone, Copy, PartialEq)]
enum Scheme {
    /// Blocked DequantizeLinear along `axis`.
    Blocked { axis: usize },
    /// One scale per index of `axis`.
    PerChannel { axis: usize },
    /// com.microsoft.MatMulNBits (weights [K, N] of a MatMul).
    MatMulNBits,
    /// One scale for the whole tensor: DequantizeLinear as opset 10 has it.
    PerTensor,
}

/// Quantized weight data: `q` (one i8 per element, row-major) and scales.
struct Quantized {
    q: Vec<i8>,
    scales: Vec<f32>,
    sq_err: f64,
    sq_ref: f64,
}

/// Quantizes `w` ([rows, cols]) with one scale per group; `group(r, c)`
/// gives the index of the scale of element (r, c).
fn quantize_groups(
    w: &[f32],
    cols: usize,
    groups: usize,
    group: &GroupOf,
    ty: QType,
    f16_scales: bool,
) -> (Vec<i8>, Vec<f32>, f64, f64) {
    // Rows in parallel: per-worker maxima, merged.
    let amax = w
        .par_chunks(cols.max(1))
        .enumerate()
        .fold(
            || vec![0f32; groups],
            |mut acc, (r, row)| {
                for (c, &x) in row.iter().enumerate() {
                    let g = group(r, c);
                    acc[g] = acc[g].max(x.abs());
                }
                acc
            },
        )
        .reduce(
            || vec![0f32; groups],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x = x.max(*y));
                a
            },
        );
    let scales: Vec<f32> = amax
        .iter()
        .map(|&a| {
            let s = if a > 0.0 && a.is_finite() { a / ty.qmax() } else { 1.0 };
            if f16_scales {
                f16::from_f32(s).to_f32().max(f32::MIN_POSITIVE)
            } else {
                s
            }
        })
        .collect();
    let (lo, hi) = (-ty.qmax() - 1.0, ty.qmax());
    let mut q = vec![0i8; w.len()];
    let (sq_err, sq_ref) = w
        .par_chunks(cols.max(1))
        .zip(q.par_chunks_mut(cols.max(1)))
        .enumerate()
        .map(|(r, (row, out))| {
            let (mut e, mut n) = (0f64, 0f64);
            for (c, (&x, o)) in row.iter().zip(out.iter_mut()).enumerate() {
                let s = scales[group(r, c)];
                let v = (x / s).round_ties_even().clamp(lo, hi);
                let d = (v * s - x) as f64;
                e += d * d;
                n += (x as f64) * (x as f64);
                *o = v as i8;
            }
            (e, n)
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    (q, scales, sq_err, sq_ref)
}

/// The scale index of element (row, column).
type GroupOf = Box<dyn Fn(usize, usize) -> usize + Send + Sync>;

/// The scales of a weight of `shape` under `scheme`: how many, their
/// dims, and which one each element uses.
fn grouping(shape: [usize; 2], scheme: Scheme, block: usize) -> (usize, Vec<i64>, GroupOf) {
    let [rows, cols] = shape;
    match scheme {
        Scheme::Blocked { axis: 0 } => {
            let nb = rows.div_ceil(block);
            (
                nb * cols,
                vec![nb as i64, cols as i64],
                Box::new(move |r, c| (r / block) * cols + c),
            )
        }
        Scheme::Blocked { .. } => {
            let nb = cols.div_ceil(block);
            (
                rows * nb,
                vec![rows as i64, nb as i64],
                Box::new(move |r, c| r * nb + c / block),
            )
        }
        Scheme::PerTensor => (1, vec![], Box::new(|_, _| 0)),
        Scheme::PerChannel { axis: 0 } => (rows, vec![rows as i64], Box::new(|r, _| r)),
        Scheme::PerChannel { .. } => (cols, vec![cols as i64], Box::new(|_, c| c)),
        // [K, N] weights, blocks along K for each column n: scales [N, nb].
        Scheme::MatMulNBits => {
            let nb = rows.div_ceil(block);
            (
                cols * nb,
                vec![cols as i64, nb as i64],
                Box::new(move |r, c| c * nb + r / block),
            )
        }
    }
}

fn quantize_weight(
    w: &[f32],
    shape: [usize; 2],
    scheme: Scheme,
    block: usize,
    ty: QType,
    f16_scales: bool,
) -> Quantized {
    let (groups, _, g) = grouping(shape, scheme, block);
    let (q, scales, sq_err, sq_ref) = quantize_groups(w, shape[1], groups, &g, ty, f16_scales);
    Quantized {
        q,
        scales,
        sq_err,
        sq_ref,
    }
}

/// A weight's quantized values and scales, as stored.
type Encoded = Arc<(Vec<u8>, Vec<u8>)>;

/// One weight's quantization, run when the writer first reads its output
/// and dropped once both parts are written, so that only the weight being
/// written is held in memory.
struct LazyQuant {
    src: Arc<dyn DataSource>,
    name: String,
    path: std::path::PathBuf,
    is_f16: bool,
    shape: [usize; 2],
    scheme: Scheme,
    block: usize,
    ty: QType,
    q_len: u64,
    s_len: u64,
    cell: Mutex<Option<Encoded>>,
    served: AtomicU64,
    rmse: Arc<Mutex<Option<f64>>>,
}

impl LazyQuant {
    fn encoded(&self) -> Result<Encoded> {
        let mut cell = self.cell.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = cell.as_ref() {
            return Ok(e.clone());
        }
        let numel = self.shape[0] * self.shape[1];
        let mut w = vec![0f32; numel];
        if self.is_f16 {
            let mut raw = vec![0u8; numel * 2];
            self.src.read_at(0, &mut raw)?;
            modelconv_ir::convert(DType::F16, &raw, DType::F32, bytemuck::cast_slice_mut(&mut w));
        } else {
            self.src.read_at(0, bytemuck::cast_slice_mut(&mut w))?;
            for x in &mut w {
                *x = f32::from_le_bytes(x.to_ne_bytes());
            }
        }
        if let Some(i) = w.iter().position(|x| !x.is_finite()) {
            return Err(Error::malformed(
                &self.path,
                format!(
                    "tensor '{}': element {i} is {}; weights must be finite to quantize",
                    self.name, w[i]
                ),
            ));
        }
        let qd = quantize_weight(&w, self.shape, self.scheme, self.block, self.ty, self.is_f16);
        drop(w);
        let q = match (self.scheme, self.ty) {
            (Scheme::MatMulNBits, _) => pack_matmulnbits(&qd.q, self.shape[0], self.shape[1], self.block),
            (_, QType::Int8) => qd.q.iter().map(|&x| x as u8).collect(),
            (_, QType::Int4) => pack_int4(&qd.q),
        };
        *self.rmse.lock().unwrap_or_else(|p| p.into_inner()) = Some(if qd.sq_ref > 0.0 {
            (qd.sq_err / qd.sq_ref).sqrt()
        } else {
            0.0
        });
        let e = Arc::new((q, float_bytes(&qd.scales, self.is_f16)));
        debug_assert_eq!((e.0.len() as u64, e.1.len() as u64), (self.q_len, self.s_len));
        *cell = Some(e.clone());
        Ok(e)
    }

    /// Counts bytes handed out; when both parts are out, frees them.
    fn served(&self, n: u64) {
        if self.served.fetch_add(n, Ordering::Relaxed) + n >= self.q_len + self.s_len {
            self.served.store(0, Ordering::Relaxed);
            *self.cell.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

/// The quantized values (`scales == false`) or the scales of a weight.
struct Part {
    job: Arc<LazyQuant>,
    scales: bool,
}

impl DataSource for Part {
    fn len(&self) -> u64 {
        if self.scales {
            self.job.s_len
        } else {
            self.job.q_len
        }
    }
    fn preferred_chunk(&self) -> Option<u64> {
        Some(self.len().max(1))
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let e = self.job.encoded()?;
        let bytes = if self.scales { &e.1 } else { &e.0 };
        let src = usize::try_from(offset)
            .ok()
            .and_then(|o| bytes.get(o..o.checked_add(buf.len())?))
            .ok_or_else(|| Error::internal("read past the end of a quantized tensor"))?;
        buf.copy_from_slice(src);
        self.job.served(buf.len() as u64);
        Ok(())
    }
}

fn pack_int4(q: &[i8]) -> Vec<u8> {
    q.chunks(2)
        .map(|p| (p[0] as u8 & 0xF) | (p.get(1).map_or(0, |&h| h as u8 & 0xF) << 4))
        .collect()
}

/// MatMulNBits' B: for each column n, K values in blocks of `block`
/// (padded with the zero point), two unsigned 4-bit codes per byte.
fn pack_matmulnbits(q: &[i8], k: usize, n: usize, block: usize) -> Vec<u8> {
    let nb = k.div_ceil(block);
    let col_bytes = nb * block / 2;
    // 0x88: both codes 8, the implied zero point (what padding holds).
    let mut out = vec![0x88u8; n * col_bytes];
    for (r, row) in q.chunks_exact(n).enumerate().take(k) {
        let (offset, shift) = ((r / block) * (block / 2) + (r % block) / 2, 4 * (r % 2) as u32);
        let keep = !(0xFu8 << shift);
        for (c, &v) in row.iter().enumerate() {
            let byte = &mut out[c * col_bytes + offset];
            *byte = (*byte & keep) | (((v as i16 + 8) as u8) << shift);
        }
    }
    out
}

fn tensor(name: String, data_type: i32, dims: Vec<i64>) -> TensorProto {
    TensorProto {
        dims,
        data_type: Some(data_type),
        name: Some(name),
        ..Default::default()
    }
}

fn float_bytes(v: &[f32], f16_out: bool) -> Vec<u8> {
    if f16_out {
        v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect()
    } else {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
}

/// Constant nodes of the main graph whose value a MatMul or Gemm reads as
/// its weight, or a Gather as its table, become initializers of the same
/// name (the same value: ONNX treats both as constants), so they are
/// quantized like any other weight. IR versions before 4 require every
/// initializer to be a graph input too, so there they are left, and said so.
fn promote_constant_weights(g: &mut GraphProto, ir_version: i64, report: &mut QuantReport) -> Result<()> {
    let weight_input = |n: &NodeProto, i: usize| {
        graph::is_default_domain(n) && matches!((op(n), i), ("MatMul", 1) | ("Gemm", 1) | ("Gather", 0))
    };
    let read_as_weight: std::collections::HashSet<&str> = g
        .node
        .iter()
        .flat_map(|n| {
            n.input
                .iter()
                .enumerate()
                .filter(|(i, _)| weight_input(n, *i))
                .map(|(_, x)| x.as_str())
        })
        .collect();
    let mut promoted = Vec::new();
    let mut kept_nodes = Vec::new();
    for n in &g.node {
        let mut values = crate::read::constant_values(n)?;
        let candidate = values.len() == 1
            && read_as_weight.contains(values[0].0.as_str())
            && matches!(values[0].1.data_type, Some(dt::FLOAT) | Some(dt::FLOAT16))
            && values[0].1.dims.len() == 2;
        if !candidate {
            kept_nodes.push(true);
            continue;
        }
        if ir_version < 4 {
            report.skipped.push((
                values[0].0.clone(),
                format!(
                    "a Constant node, and IR version {ir_version} (< 4) has no initializers outside the graph inputs"
                ),
            ));
            kept_nodes.push(true);
            continue;
        }
        let (name, mut t) = values.remove(0);
        t.name = Some(name);
        promoted.push(t);
        kept_nodes.push(false);
    }
    let mut keep = kept_nodes.into_iter();
    g.node.retain(|_| keep.next().unwrap_or(true));
    g.initializer.extend(promoted);
    // Weights inside If/Loop/Scan bodies stay as they are: said, not hidden.
    for sub in crate::read::subgraphs(g) {
        let float_2d =
            |t: &TensorProto| matches!(t.data_type, Some(dt::FLOAT) | Some(dt::FLOAT16)) && t.dims.len() == 2;
        let mut names: Vec<String> = sub
            .initializer
            .iter()
            .filter(|t| float_2d(t))
            .map(|t| t.name.clone().unwrap_or_default())
            .collect();
        for n in &sub.node {
            names.extend(
                crate::read::constant_values(n)?
                    .into_iter()
                    .filter(|(_, t)| float_2d(t))
                    .map(|(name, _)| name),
            );
        }
        for name in names {
            report.skipped.push((
                name,
                "in a subgraph (If/Loop/Scan body): weights there are not quantized".into(),
            ));
        }
    }
    Ok(())
}

/// The weight-only quantized version of `file`'s model.
pub fn quantize(file: &OnnxFile, opts: &QuantOptions) -> Result<(OnnxOut, QuantReport)> {
    if opts.block_size != 0 && (opts.block_size < 16 || !opts.block_size.is_power_of_two()) {
        return Err(Error::invalid(format!(
            "--block-size {}: use a power of two of at least 16, or 0 for one scale per channel",
            opts.block_size
        )));
    }
    let mut model = file.model.clone();
    let mut g = model.graph.take().unwrap_or_default();
    let mut report = QuantReport::default();
    let family = choose_family(file, opts, &mut model, &g, &mut report)?;
    promote_constant_weights(&mut g, model.ir_version.unwrap_or(0), &mut report)?;
    let mut pass = Pass {
        file,
        opts,
        family,
        names: Names::of(&g),
        report,
        inits: Vec::new(),
        dq_nodes: Vec::new(),
        rename: HashMap::new(),
        nbits_nodes: HashMap::new(),
    };
    let uses = Uses::of(&g);
    for proto in std::mem::take(&mut g.initializer) {
        pass.initializer(&g, &uses, proto)?;
    }
    pass.rewire(&mut g);
    if pass.report.rows.iter().any(|r| r.scheme.starts_with("MatMulNBits"))
        && !model
            .opset_import
            .iter()
            .any(|o| o.domain.as_deref() == Some("com.microsoft"))
    {
        model.opset_import.push(OperatorSetIdProto {
            domain: Some("com.microsoft".into()),
            version: Some(1),
        });
    }
    model.graph = Some(g);
    Ok((
        OnnxOut {
            model,
            inits: pass.inits,
        },
        pass.report,
    ))
}

/// The scheme family for the whole model, decided once from its opset.
#[derive(Debug, Clone, Copy)]
struct Family {
    /// The default-domain opset the quantized model has (after a move to
    /// 11 below opset 10; 21 is `blocked_ok`).
    opset: i64,
    /// Blocked DequantizeLinear and INT4 are available (opset 21, or moved to it).
    blocked_ok: bool,
    /// Below opset 13 DequantizeLinear has no axis: one scale per tensor.
    per_tensor: bool,
}

/// Decides the [`Family`], moving the model to opset 21 (IR 10) when
/// blocked scales need it and nothing blocks the move; below opset 10
/// (no DequantizeLinear) otherwise to opset 11 as onnxruntime's quantizer
/// does, where every op keeps its meaning; refuses INT8 on a model that
/// can move to neither, naming the op.
fn choose_family(
    file: &OnnxFile,
    opts: &QuantOptions,
    model: &mut crate::proto::ModelProto,
    g: &GraphProto,
    report: &mut QuantReport,
) -> Result<Family> {
    let opset_idx = model
        .opset_import
        .iter()
        .position(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")));
    let v = opset_idx.and_then(|i| model.opset_import[i].version).unwrap_or(1);
    report.opset_before = v;
    report.opset_after = v;
    let mut stay_reason: Option<String> = None;
    let blocked_ok = if opts.block_size == 0 && opts.ty == QType::Int8 {
        false
    } else if v >= 21 {
        true
    } else if !opts.upgrade_opset {
        stay_reason = Some("--keep-opset".to_string());
        false
    } else if let Some(why) = upgrade_blocker(g, v) {
        report
            .skipped
            .push((String::new(), format!("opset {v} not moved to 21: {why}")));
        stay_reason = Some(why);
        false
    } else {
        true
    };
    if blocked_ok && v < 21 {
        report.opset_after = 21;
        if let Some(i) = opset_idx {
            model.opset_import[i].version = Some(21);
        }
        model.ir_version = Some(model.ir_version.unwrap_or(0).max(10));
    }
    let mut v_now = v;
    if !blocked_ok && opts.ty == QType::Int8 && v < 10 {
        // As onnxruntime's quantizer does: opset 11 first, where the ops allow.
        let to_11 = if opts.upgrade_opset {
            upgrade_to_11_blocker(g, v)
        } else {
            Some("--keep-opset".to_string())
        };
        if let Some(why) = to_11 {
            return Err(Error::unsupported(format!(
                "{}: opset {v} has no DequantizeLinear (it came in opset 10), and the model cannot move to opset 21 ({}) nor to 11 ({why})",
                file.path.display(),
                stay_reason
                    .as_deref()
                    .unwrap_or("per-channel scales were asked for (--block-size 0)")
            )));
        }
        if let Some(i) = opset_idx {
            model.opset_import[i].version = Some(11);
        }
        // Opset 11 needs IR version 6.
        model.ir_version = Some(model.ir_version.unwrap_or(0).max(6));
        report.opset_after = 11;
        v_now = 11;
    }
    let per_tensor = !blocked_ok && opts.ty == QType::Int8 && v_now < 13;
    if per_tensor {
        report.skipped.push((
            String::new(),
            format!(
                "opset {v_now}: one scale per tensor (per-channel DequantizeLinear needs opset 13; the model is at {v_now}: {})",
                stay_reason.as_deref().unwrap_or("--block-size 0")
            ),
        ));
    }
    Ok(Family {
        opset: v_now,
        blocked_ok,
        per_tensor,
    })
}

/// Who reads each value: (node index, input index), and the graph inputs.
struct Uses {
    readers: HashMap<String, Vec<(usize, usize)>>,
    graph_inputs: std::collections::HashSet<String>,
}

impl Uses {
    fn of(g: &GraphProto) -> Uses {
        let mut readers: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (ni, n) in g.node.iter().enumerate() {
            for (ii, i) in n.input.iter().enumerate() {
                readers.entry(i.clone()).or_default().push((ni, ii));
            }
        }
        let graph_inputs = g.input.iter().filter_map(|v| v.name.clone()).collect();
        Uses { readers, graph_inputs }
    }
}

/// One weight chosen for quantization: its scheme and layout.
struct Chosen {
    /// The reduction axis and the op that reads the weight.
    k_axis: usize,
    consumer: &'static str,
    consumers: Vec<(usize, usize)>,
    shape: [usize; 2],
    scheme: Scheme,
    /// The weight as read once here (its data still lazy).
    init: crate::read::Initializer,
}

/// The quantization of one model: what it has built so far.
struct Pass<'a> {
    file: &'a OnnxFile,
    opts: &'a QuantOptions,
    family: Family,
    names: Names,
    report: QuantReport,
    inits: Vec<OutInit>,
    /// DequantizeLinear nodes, placed first in the graph.
    dq_nodes: Vec<NodeProto>,
    /// Weight name → its DequantizeLinear output, for the readers.
    rename: HashMap<String, String>,
    /// MatMul node index → the MatMulNBits node that replaces it.
    nbits_nodes: HashMap<usize, NodeProto>,
}

impl Pass<'_> {
    /// One initializer: quantized and wired in, or kept as it is (with the
    /// reason, when it was a candidate).
    fn initializer(&mut self, g: &GraphProto, uses: &Uses, proto: TensorProto) -> Result<()> {
        let name = proto.name.clone().unwrap_or_default();
        let chosen = match self.choose(g, uses, &proto, &name)? {
            Ok(c) => c,
            Err(why) => {
                if let Some(why) = why {
                    self.report.skipped.push((name.clone(), why));
                }
                let data = self.file.tensor(&proto, &name)?.map(|i| i.stored);
                self.inits.push(OutInit { proto, data });
                return Ok(());
            }
        };
        self.quantize_one(g, proto, &name, &chosen)
    }

    /// Whether and how the weight `proto` is quantized: `Err(None)` for a
    /// tensor that is no candidate, `Err(Some(why))` for one left as it is.
    fn choose(
        &self,
        g: &GraphProto,
        uses: &Uses,
        proto: &TensorProto,
        name: &str,
    ) -> Result<std::result::Result<Chosen, Option<String>>> {
        let (opts, fam) = (self.opts, self.family);
        let consumers = uses.readers.get(name).cloned().unwrap_or_default();
        let role = consumers.iter().find_map(|&(ni, ii)| {
            let n = &g.node[ni];
            match (graph::is_default_domain(n), op(n), ii) {
                (true, "MatMul", 1) => Some((0usize, "MatMul")),
                (true, "Gemm", 1) => Some((if attr_i(n, "transB") == Some(1) { 1 } else { 0 }, "Gemm")),
                (true, "Gather", 0) if opts.embeddings => Some((1, "Gather")),
                _ => None,
            }
        });
        let Some((k_axis, consumer)) = role else {
            return Ok(Err(None));
        };
        // Reading the tensor checks its dims against its data first.
        let Some(init) = self.file.tensor(proto, name)? else {
            return Ok(Err(None));
        };
        let numel = init.tensor.info.numel();
        let dtype = proto.data_type.unwrap_or(0);
        let skip = |why: &str| Ok(Err(Some(why.to_string())));
        if !(dtype == dt::FLOAT || dtype == dt::FLOAT16) {
            return skip("not FLOAT or FLOAT16");
        }
        if proto.dims.len() != 2 {
            return skip("not 2-D");
        }
        if numel < opts.min_elements {
            return skip("too small");
        }
        if uses.graph_inputs.contains(name) {
            return skip("also a graph input (may be overridden at run time)");
        }
        let dims = &init.tensor.info.shape;
        let (Ok(rows), Ok(cols)) = (usize::try_from(dims[0]), usize::try_from(dims[1])) else {
            return skip("too large for this machine");
        };
        let shape = [rows, cols];
        let (k, block) = (shape[k_axis], opts.block_size as usize);
        let scheme = if fam.blocked_ok && block > 0 && k.is_multiple_of(block) {
            Scheme::Blocked { axis: k_axis }
        } else if fam.per_tensor {
            Scheme::PerTensor
        } else if opts.ty == QType::Int8 || fam.blocked_ok {
            // INT4 per-channel needs opset 21 too (the INT4 type).
            Scheme::PerChannel { axis: 1 - k_axis }
        } else if block > 0
            && consumer == "MatMul"
            && consumers.iter().all(|&(ni, ii)| op(&g.node[ni]) == "MatMul" && ii == 1)
        {
            Scheme::MatMulNBits
        } else {
            return skip(&format!(
                "INT4 for {consumer} needs opset 21, and this model stays at {}",
                fam.opset
            ));
        };
        if dtype == dt::FLOAT16 && scheme != Scheme::MatMulNBits && self.report.opset_after < 19 {
            return skip(&format!(
                "FLOAT16: DequantizeLinear takes float16 scales from opset 19; the model stays at {}",
                self.report.opset_after
            ));
        }
        Ok(Ok(Chosen {
            k_axis,
            consumer,
            consumers,
            shape,
            scheme,
            init,
        }))
    }

    /// Replaces the weight by its quantized data and scales (lazy, computed
    /// once when written) and wires them to its readers.
    fn quantize_one(&mut self, g: &GraphProto, proto: TensorProto, name: &str, c: &Chosen) -> Result<()> {
        let (opts, shape, scheme, init) = (self.opts, c.shape, c.scheme, &c.init);
        let dtype = proto.data_type.unwrap_or(0);
        let block = opts.block_size as usize;
        let k = shape[c.k_axis];
        let is_f16 = dtype == dt::FLOAT16;
        let (groups, scale_dims, _) = grouping(shape, scheme, block.max(1));
        let numel = (shape[0] * shape[1]) as u64;
        let q_len = match (scheme, opts.ty) {
            (Scheme::MatMulNBits, _) => (shape[1] * k.div_ceil(block) * block / 2) as u64,
            (_, QType::Int8) => numel,
            (_, QType::Int4) => numel.div_ceil(2),
        };
        let rmse = Arc::new(Mutex::new(None));
        let job = Arc::new(LazyQuant {
            src: init.tensor.data.clone(),
            name: name.to_string(),
            path: self.file.path.clone(),
            is_f16,
            shape,
            scheme,
            block: block.max(1),
            ty: opts.ty,
            q_len,
            s_len: groups as u64 * if is_f16 { 2 } else { 4 },
            cell: Mutex::new(None),
            served: AtomicU64::new(0),
            rmse: rmse.clone(),
        });
        let qname = self.names.fresh(&format!("{name}_quantized"));
        let sname = self.names.fresh(&format!("{name}_scale"));
        let scales: Arc<dyn DataSource> = Arc::new(Part {
            job: job.clone(),
            scales: true,
        });
        let qdata: Arc<dyn DataSource> = Arc::new(Part { job, scales: false });
        let scale_proto = tensor(sname.clone(), dtype, scale_dims);
        let (qproto, desc) = quantized_proto(&proto, &qname, scheme, opts.ty, shape, k, block);
        let bytes_after = qdata.len() + scales.len();
        self.wire(g, name, c, &qname, &sname);
        self.report.rows.push(QuantRow {
            name: name.to_string(),
            from: if dtype == dt::FLOAT { "F32" } else { "F16" }.to_string(),
            consumer: c.consumer.to_string(),
            shape: shape.iter().map(|&d| d as u64).collect(),
            scheme: desc,
            bytes_before: init.tensor.info.byte_len,
            bytes_after,
            rmse,
        });
        self.inits.push(OutInit {
            proto: qproto,
            data: Some(qdata),
        });
        self.inits.push(OutInit {
            proto: scale_proto,
            data: Some(scales),
        });
        Ok(())
    }

    /// The readers of weight `name` now read its quantized form: each MatMul
    /// becomes a MatMulNBits, or one DequantizeLinear feeds them all.
    fn wire(&mut self, g: &GraphProto, name: &str, c: &Chosen, qname: &str, sname: &str) {
        let block = self.opts.block_size as usize;
        if c.scheme == Scheme::MatMulNBits {
            for &(ni, _) in &c.consumers {
                let m = &g.node[ni];
                let nname = self
                    .names
                    .fresh(&format!("{}_MatMulNBits", m.name.as_deref().unwrap_or(name)));
                let mut n = node(
                    "MatMulNBits",
                    "com.microsoft",
                    nname,
                    vec![m.input[0].clone(), qname.to_string(), sname.to_string()],
                    m.output.clone(),
                );
                n.attribute = vec![
                    attr_int("K", c.shape[0] as i64),
                    attr_int("N", c.shape[1] as i64),
                    attr_int("bits", 4),
                    attr_int("block_size", block as i64),
                ];
                self.nbits_nodes.insert(ni, n);
            }
            return;
        }
        let dq_out = self.names.fresh(&format!("{name}_dequantized"));
        let mut n = node(
            "DequantizeLinear",
            "",
            self.names.fresh(&format!("{name}_DequantizeLinear")),
            vec![qname.to_string(), sname.to_string()],
            vec![dq_out.clone()],
        );
        if let Scheme::Blocked { axis } | Scheme::PerChannel { axis } = c.scheme {
            n.attribute.push(attr_int("axis", axis as i64));
        }
        if matches!(c.scheme, Scheme::Blocked { .. }) {
            n.attribute.push(attr_int("block_size", block as i64));
        }
        self.dq_nodes.push(n);
        self.rename.insert(name.to_string(), dq_out);
    }

    /// The graph's nodes: the DequantizeLinear nodes first, then the
    /// original ones reading the dequantized values (MatMuls replaced).
    fn rewire(&mut self, g: &mut GraphProto) {
        let mut nodes = std::mem::take(&mut self.dq_nodes);
        for (ni, mut n) in std::mem::take(&mut g.node).into_iter().enumerate() {
            if let Some(r) = self.nbits_nodes.remove(&ni) {
                nodes.push(r);
                continue;
            }
            for i in n.input.iter_mut() {
                if let Some(r) = self.rename.get(i) {
                    *i = r.clone();
                }
            }
            nodes.push(n);
        }
        g.node = nodes;
    }
}

/// The quantized initializer's proto and how the report describes it.
fn quantized_proto(
    proto: &TensorProto,
    qname: &str,
    scheme: Scheme,
    ty: QType,
    shape: [usize; 2],
    k: usize,
    block: usize,
) -> (TensorProto, String) {
    let elem = match ty {
        QType::Int8 => dt::INT8,
        QType::Int4 => dt::INT4,
    };
    let qname = qname.to_string();
    match scheme {
        Scheme::MatMulNBits => {
            let nb = k.div_ceil(block);
            let dims = vec![shape[1] as i64, nb as i64, (block / 2) as i64];
            (
                tensor(qname, dt::UINT8, dims),
                format!("MatMulNBits bits=4 block_size={block}"),
            )
        }
        Scheme::Blocked { axis } => (
            tensor(qname, elem, proto.dims.clone()),
            format!("DequantizeLinear axis={axis} block_size={block}"),
        ),
        Scheme::PerChannel { axis } => (
            tensor(qname, elem, proto.dims.clone()),
            format!("DequantizeLinear per-channel axis={axis}"),
        ),
        Scheme::PerTensor => (
            tensor(qname, elem, proto.dims.clone()),
            "DequantizeLinear per-tensor".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_int4_round_trips_within_half_a_step() {
        let w: Vec<f32> = (0..64 * 8).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let q = quantize_weight(&w, [64, 8], Scheme::Blocked { axis: 0 }, 32, QType::Int4, false);
        assert_eq!(grouping([64, 8], Scheme::Blocked { axis: 0 }, 32).1, vec![2, 8]);
        for (i, &x) in w.iter().enumerate() {
            let s = q.scales[(i / 8 / 32) * 8 + i % 8];
            assert!((q.q[i] as f32 * s - x).abs() <= s / 2.0 + 1e-6);
            assert!((-8..=7).contains(&q.q[i]));
        }
        assert_eq!(pack_int4(&[-1, 7, 3]), vec![0x7F, 0x03]);
    }

    #[test]
    fn matmulnbits_layout_is_column_major_blocks() {
        // K = 4, N = 2, block 2: column 0 holds q[0,0], q[1,0] | q[2,0], q[3,0].
        let q = vec![1, -1, 2, -2, 3, -3, -8, 7];
        let b = pack_matmulnbits(&q, 4, 2, 2);
        assert_eq!(b, vec![9 | (10 << 4), 11, 7 | (6 << 4), 5 | (15 << 4)]);
    }
}
