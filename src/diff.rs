//! `modelconv diff`: two models of any formats, compared by tensor name,
//! element by element in f64, streaming in chunks on all cores.

use crate::{registry, report, util, EXIT_CHECK_FAILED};
use anyhow::Result;
use modelconv_ir::{Model, OpenOptions, Tensor};
use modelconv_pipeline::{read_f64, readable_as_numbers};
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The first model (any format this build reads; tensors are matched by name).
    a: PathBuf,
    /// The second model: the reference the tolerance is relative to (|a-b| <= atol + rtol*|b|).
    b: PathBuf,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// Absolute tolerance: |a-b| <= atol + rtol*|b| passes.
    #[arg(long, default_value_t = 0.0)]
    atol: f64,
    /// Relative tolerance.
    #[arg(long, default_value_t = 0.0)]
    rtol: f64,
}

/// Elements compared per chunk.
const CHUNK_ELEMS: u64 = 1 << 20;

#[derive(Default, Clone, Copy)]
struct Stats {
    n: u64,
    max_abs: f64,
    sum_sq: f64,
    dot: f64,
    na: f64,
    nb: f64,
    over: u64,
}

impl Stats {
    fn merge(mut self, o: Stats) -> Stats {
        self.n += o.n;
        self.max_abs = self.max_abs.max(o.max_abs);
        self.sum_sq += o.sum_sq;
        self.dot += o.dot;
        self.na += o.na;
        self.nb += o.nb;
        self.over += o.over;
        self
    }
    fn rmse(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.sum_sq / self.n as f64).sqrt()
        }
    }
    fn cosine(&self) -> f64 {
        match (self.na == 0.0, self.nb == 0.0) {
            (true, true) => 1.0,
            (true, false) | (false, true) => 0.0,
            _ => self.dot / (self.na.sqrt() * self.nb.sqrt()),
        }
    }
}

/// Compares elements `[start, start + n)` of two tensors.
fn chunk_stats(a: &Tensor, b: &Tensor, start: u64, n: u64, atol: f64, rtol: f64) -> modelconv_ir::Result<Stats> {
    let (xa, xb) = (read_f64(a, start, n)?, read_f64(b, start, n)?);
    let mut s = Stats::default();
    for (&x, &y) in xa.iter().zip(&xb) {
        s.n += 1;
        let d = if x == y || (x.is_nan() && y.is_nan()) {
            0.0
        } else {
            (x - y).abs()
        };
        let d = if d.is_nan() { f64::INFINITY } else { d };
        if d > atol + rtol * y.abs() {
            s.over += 1;
        }
        s.max_abs = s.max_abs.max(d);
        s.sum_sq += d * d;
        if x.is_finite() && y.is_finite() {
            s.dot += x * y;
            s.na += x * x;
            s.nb += y * y;
        }
    }
    Ok(s)
}

/// Why two same-named tensors cannot be compared element-wise, if they cannot.
fn incomparable(a: &Tensor, b: &Tensor) -> Option<String> {
    if a.info.shape != b.info.shape {
        return Some(format!("shape {:?} vs {:?}", a.info.shape, b.info.shape));
    }
    for t in [a, b] {
        if !readable_as_numbers(t.info.dtype) {
            return Some(format!("dequantizing {} is not supported yet", t.info.dtype));
        }
    }
    None
}

pub fn run(args: Args, _quiet: bool) -> Result<u8> {
    let (a, b) = (util::Input::new(&args.a)?, util::Input::new(&args.b)?);
    let (_, ma) = registry::open(&a.path, None, &OpenOptions::default())?;
    let (_, mb) = registry::open(&b.path, None, &OpenOptions::default())?;
    let report = compare(&ma, &mb, args.atol, args.rtol)?;
    if args.json {
        report::emit("diff", &report);
    } else {
        print_text(&report, &args);
    }
    Ok(if report.ok { 0 } else { EXIT_CHECK_FAILED })
}

/// `diff --json` (docs/json.md).
#[derive(Serialize)]
struct DiffDoc {
    a: String,
    b: String,
    atol: f64,
    rtol: f64,
    tensors: Vec<DiffRow>,
    only_in_a: Vec<String>,
    only_in_b: Vec<String>,
    ok: bool,
}

#[derive(Serialize)]
struct DiffRow {
    name: String,
    dtype_a: &'static str,
    dtype_b: &'static str,
    shape: Vec<u64>,
    /// `ok`, `over_tolerance` or `incomparable`.
    status: &'static str,
    /// Why the tensors could not be compared (incomparable only).
    reason: Option<String>,
    /// Statistics in f64; `null` when incomparable; infinity as `"inf"`.
    max_abs: Option<serde_json::Value>,
    rmse: Option<serde_json::Value>,
    cosine: Option<serde_json::Value>,
    elements_over_tolerance: Option<u64>,
}

fn compare(ma: &Model, mb: &Model, atol: f64, rtol: f64) -> Result<DiffDoc> {
    let only = |x: &Model, y: &Model| -> Vec<String> {
        x.tensors
            .iter()
            .filter(|t| y.tensor(&t.info.name).is_none())
            .map(|t| t.info.name.clone())
            .collect()
    };
    let (only_a, only_b) = (only(ma, mb), only(mb, ma));
    let pairs: Vec<(&Tensor, &Tensor)> = ma
        .tensors
        .iter()
        .filter_map(|a| mb.tensor(&a.info.name).map(|b| (a, b)))
        .collect();
    let jobs: Vec<(usize, u64, u64)> = pairs
        .iter()
        .enumerate()
        .filter(|(_, (a, b))| incomparable(a, b).is_none())
        .flat_map(|(i, (a, _))| {
            let n = a.info.numel();
            (0..n.div_ceil(CHUNK_ELEMS)).map(move |c| (i, c * CHUNK_ELEMS, CHUNK_ELEMS.min(n - c * CHUNK_ELEMS)))
        })
        .collect();
    let partial: Vec<(usize, Stats)> = jobs
        .par_iter()
        .map(|&(i, start, n)| chunk_stats(pairs[i].0, pairs[i].1, start, n, atol, rtol).map(|s| (i, s)))
        .collect::<modelconv_ir::Result<_>>()?;
    let mut stats = vec![Stats::default(); pairs.len()];
    for (i, s) in partial {
        stats[i] = stats[i].merge(s);
    }
    let mut ok = only_a.is_empty() && only_b.is_empty();
    let tensors: Vec<DiffRow> = pairs
        .iter()
        .zip(&stats)
        .map(|((a, b), s)| {
            let reason = incomparable(a, b);
            let within = reason.is_none() && s.over == 0;
            ok &= within;
            let stat = |v: f64| reason.is_none().then(|| util::json_f64(v));
            DiffRow {
                name: a.info.name.clone(),
                dtype_a: a.info.dtype.name(),
                dtype_b: b.info.dtype.name(),
                shape: a.info.shape.clone(),
                status: match (&reason, within) {
                    (Some(_), _) => "incomparable",
                    (None, true) => "ok",
                    (None, false) => "over_tolerance",
                },
                max_abs: stat(s.max_abs),
                rmse: stat(s.rmse()),
                cosine: stat(s.cosine()),
                elements_over_tolerance: reason.is_none().then_some(s.over),
                reason,
            }
        })
        .collect();
    Ok(DiffDoc {
        a: report::path_text(&ma.path),
        b: report::path_text(&mb.path),
        atol,
        rtol,
        tensors,
        only_in_a: only_a,
        only_in_b: only_b,
        ok,
    })
}

fn print_text(r: &DiffDoc, args: &Args) {
    let name_w = r.tensors.iter().map(|t| t.name.len()).max().unwrap_or(4).clamp(4, 60);
    println!(
        "{:<name_w$}  {:<15} {:>12} {:>12} {:>10}  STATUS",
        "NAME", "DTYPES", "MAX|A-B|", "RMSE", "COSINE"
    );
    let num = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::Number(n)) => format!("{:.4e}", n.as_f64().unwrap_or(0.0)),
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => "-".into(),
    };
    for t in &r.tensors {
        let cos = match &t.cosine {
            Some(serde_json::Value::Number(n)) => format!("{:.6}", n.as_f64().unwrap_or(0.0)),
            _ => "-".into(),
        };
        let status = match &t.reason {
            Some(why) => format!("incomparable: {why}"),
            None => t.status.to_string(),
        };
        println!(
            "{:<name_w$}  {:<15} {:>12} {:>12} {:>10}  {status}",
            util::printable(&t.name),
            format!("{}/{}", t.dtype_a, t.dtype_b),
            num(&t.max_abs),
            num(&t.rmse),
            cos
        );
    }
    for (names, path) in [(&r.only_in_a, &args.a), (&r.only_in_b, &args.b)] {
        if !names.is_empty() {
            println!("only in {}: {}", path.display(), util::printable(&names.join(", ")));
        }
    }
    let verdict = if r.ok { "same within tolerance" } else { "DIFFERENT" };
    println!("{verdict} (atol {}, rtol {})", args.atol, args.rtol);
}
