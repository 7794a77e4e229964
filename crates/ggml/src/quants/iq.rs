//! The lattice ("i-quant") types: IQ2_XXS, IQ2_XS, IQ3_XXS (and their
//! dequantizers), as ggml's `quantize_row_iq*_impl` produce them.
//!
//! Groups of 8 values (IQ2) or 4 (IQ3) are quantized to points of a fixed
//! codebook: magnitudes on a lattice of odd levels 2l + 1, signs kept apart
//! (an even number of negatives per 8, so 7 bits encode them). The
//! codebooks are ggml's data (`data/*.bin`, extracted from ggml-common.h
//! and ggml-quants.c by `data/gen_tables.py`); the map from every lattice
//! point to its nearest codebook points is computed from them once, as
//! ggml's `iq2xs_init_impl` / `iq3xs_init_impl` compute it.

// Index loops here follow ggml's block layouts position by position.
#![allow(clippy::needless_range_loop)]

use super::kquants::{make_qp_quants, nearest_int};
use super::{f16_bits, f16_value};
use std::sync::OnceLock;

const QK_K: usize = 256;
const GROUP_MAX_EPS: f32 = 1e-15;
const GROUP_MAX_EPS_IQ3_XXS: f32 = 1e-8;
const GROUP_MAX_EPS_IQ2_S: f32 = 1e-8;
const GROUP_MAX_EPS_IQ1_M: f32 = 1e-7;
const GROUP_MAX_EPS_IQ1_S: f32 = 1e-12;
/// The shift of IQ1's ternary levels (ggml's IQ1S_DELTA = IQ1M_DELTA).
const IQ1_DELTA: f32 = 0.125;

fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

/// The dequantization tables of ggml-common.h.
struct Tables {
    kmask: [u8; 8],
    ksigns: Vec<u8>,
    iq2xxs: Vec<u64>,
    iq2xs: Vec<u64>,
    iq2s: Vec<u64>,
    iq3xxs: Vec<u32>,
    iq3s: Vec<u32>,
    iq1s: Vec<u64>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut kmask = [0u8; 8];
        kmask.copy_from_slice(include_bytes!("../../data/kmask_iq2xs.bin"));
        Tables {
            kmask,
            ksigns: include_bytes!("../../data/ksigns_iq2xs.bin").to_vec(),
            iq2xxs: u64s(include_bytes!("../../data/iq2xxs_grid.bin")),
            iq2xs: u64s(include_bytes!("../../data/iq2xs_grid.bin")),
            iq2s: u64s(include_bytes!("../../data/iq2s_grid.bin")),
            iq3xxs: u32s(include_bytes!("../../data/iq3xxs_grid.bin")),
            iq3s: u32s(include_bytes!("../../data/iq3s_grid.bin")),
            iq1s: u64s(include_bytes!("../../data/iq1s_grid.bin")),
        }
    })
}

/// A codebook of points with `D` coordinates of `BITS`-bit levels, as the
/// quantizers search it: each point's coordinates 2l + 1, the index of
/// every lattice point (its levels packed `BITS` bits apiece) on the
/// codebook, and for the others their nearest codebook points.
struct Lattice<const D: usize> {
    points: Vec<[i8; D]>,
    /// ≥ 0: the codebook index; < 0: -(offset + 1) into `neighbours`,
    /// where a count is followed by that many codebook indices.
    map: Vec<i32>,
    neighbours: Vec<u16>,
}

impl<const D: usize> Lattice<D> {
    /// ggml's init: `compact` holds each point's levels, `BITS` bits per
    /// coordinate; a lattice point off the codebook keeps every codebook
    /// point at the `nwant` smallest squared distances, nearest first
    /// (ties by index).
    fn build(compact: &[u16], bits: u32, map_size: usize, nwant: usize) -> Self {
        let mask = (1u16 << bits) - 1;
        let points: Vec<[i8; D]> = compact
            .iter()
            .map(|&c| std::array::from_fn(|i| (2 * ((c >> (bits * i as u32)) & mask) + 1) as i8))
            .collect();
        let mut map = vec![-1i32; map_size];
        for (i, p) in points.iter().enumerate() {
            let index = p
                .iter()
                .enumerate()
                .fold(0usize, |a, (k, &v)| a | (((v as usize - 1) / 2) << (bits as usize * k)));
            map[index] = i as i32;
        }
        let mut neighbours = Vec::new();
        for i in 0..map_size {
            if map[i] >= 0 {
                continue;
            }
            let pos: [i32; D] = std::array::from_fn(|k| 2 * ((i >> (bits as usize * k)) & mask as usize) as i32 + 1);
            let near = Self::nearest(&points, &pos, nwant);
            map[i] = -(neighbours.len() as i32 + 1);
            neighbours.push(near.len() as u16);
            neighbours.extend(near);
        }
        Lattice {
            points,
            map,
            neighbours,
        }
    }

    /// The codebook points at the `nwant` smallest distinct squared
    /// distances from `pos`, by (distance, index).
    fn nearest(points: &[[i8; D]], pos: &[i32; D], nwant: usize) -> Vec<u16> {
        let d2: Vec<i32> = points
            .iter()
            .map(|p| (0..D).map(|k| (p[k] as i32 - pos[k]) * (p[k] as i32 - pos[k])).sum())
            .collect();
        let mut distinct: Vec<i32> = Vec::with_capacity(nwant + 1);
        for &d in &d2 {
            if let Err(at) = distinct.binary_search(&d) {
                if at < nwant {
                    distinct.insert(at, d);
                    distinct.truncate(nwant);
                }
            }
        }
        let limit = distinct.last().copied().unwrap_or(i32::MAX);
        let mut near: Vec<(i32, u16)> = d2
            .iter()
            .enumerate()
            .filter(|(_, &d)| d <= limit)
            .map(|(j, &d)| (d, j as u16))
            .collect();
        near.sort_unstable();
        near.into_iter().map(|(_, j)| j).collect()
    }

    /// The codebook index of the levels `l`, or the best neighbour of that
    /// lattice point for `xval` at `scale` under `weight` (whose levels
    /// then replace `l`): `iq2_find_best_neighbour` / `iq3_…`.
    fn snap(&self, bits: u32, l: &mut [i8], xval: &[f32], weight: &[f32], scale: f32) -> (usize, bool) {
        let u = pack_levels(bits, l);
        if self.map[u] >= 0 {
            return (self.map[u] as usize, true);
        }
        let (mut best_d2, mut best) = (f32::MAX, usize::MAX);
        for &j in self.neighbours_of(u) {
            let pg = &self.points[j as usize];
            let mut d2 = 0.0f32;
            for i in 0..D {
                let diff = scale * f32::from(pg[i]) - xval[i];
                d2 += weight[i] * diff * diff;
            }
            if d2 < best_d2 {
                best_d2 = d2;
                best = j as usize;
            }
        }
        for i in 0..D {
            l[i] = (self.points[best][i] - 1) / 2;
        }
        (best, false)
    }

    /// The codebook neighbours of a lattice point off the codebook.
    fn neighbours_of(&self, u: usize) -> &[u16] {
        let at = (-self.map[u] - 1) as usize;
        let n = self.neighbours[at] as usize;
        &self.neighbours[at + 1..at + 1 + n]
    }

    /// The codebook index of levels known to be on it.
    fn index_of(&self, bits: u32, l: &[i8]) -> usize {
        self.map[pack_levels(bits, l)].max(0) as usize
    }
}

/// A lattice built once, on first use: name, coordinates, ggml's compact
/// table, bits per coordinate, map size, neighbour distances kept
/// (the arguments of `iq2xs_init_impl` / `iq3xs_init_impl` per type).
macro_rules! lattice {
    ($name:ident, $d:literal, $file:literal, $bits:literal, $size:literal, $nwant:literal) => {
        fn $name() -> &'static Lattice<$d> {
            static L: OnceLock<Lattice<$d>> = OnceLock::new();
            L.get_or_init(|| {
                Lattice::build(
                    &u16s(include_bytes!(concat!("../../data/", $file))),
                    $bits,
                    $size,
                    $nwant,
                )
            })
        }
    };
}

lattice!(iq2xxs_lattice, 8, "kgrid_2bit_256.bin", 2, 43692, 2);
lattice!(iq2xs_lattice, 8, "kgrid_2bit_512.bin", 2, 43692, 2);
lattice!(iq2s_lattice, 8, "kgrid_2bit_1024.bin", 2, 43692, 1);
lattice!(iq1_lattice, 8, "kgrid_1bit_2048.bin", 2, 43692, 3);
lattice!(iq3xxs_lattice, 4, "kgrid_256.bin", 3, 4096, 2);
lattice!(iq3s_lattice, 4, "kgrid_512.bin", 3, 4096, 3);

/// Levels packed `bits` apiece, the first lowest: a lattice point's index.
fn pack_levels(bits: u32, l: &[i8]) -> usize {
    l.iter()
        .enumerate()
        .fold(0usize, |a, (i, &v)| a | ((v as usize) << (bits as usize * i)))
}

/// Importance weights qw·sqrt(σ² + x²), or x² without a matrix.
fn weights_of(xb: &[f32], qw: Option<&[f32]>, sigma2: f32, w: &mut [f32]) {
    weights_or(xb, qw, sigma2, w, squared);
}

/// [`weights_of`] with the type's own weights where no matrix is given.
fn weights_or(xb: &[f32], qw: Option<&[f32]>, sigma2: f32, w: &mut [f32], plain: fn(f32, f32) -> f32) {
    for i in 0..xb.len() {
        w[i] = match qw {
            Some(q) => q[i] * (sigma2 + xb[i] * xb[i]).sqrt(),
            None => plain(sigma2, xb[i]),
        };
    }
}

/// Magnitudes and all 8 sign bits per 8 values (IQ2_S, IQ3_S).
fn plain_signs(xb: &[f32], xval: &mut [f32], signs: &mut [u8]) {
    for k in 0..xb.len() / 8 {
        let mut s = 0u8;
        for i in 0..8 {
            let v = xb[8 * k + i];
            xval[8 * k + i] = if v >= 0.0 { v } else { -v };
            if v < 0.0 {
                s |= 1 << i;
            }
        }
        signs[k] = s;
    }
}

/// Magnitudes of `xb` and the sign bits of each 8 (7 stored: an odd
/// number of negatives flips the least important value's sign instead).
fn fold_signs(xb: &[f32], weight: &[f32], xval: &mut [f32], signs: &mut [u8]) {
    for k in 0..xb.len() / 8 {
        let (mut nflip, mut s) = (0, 0u8);
        for i in 0..8 {
            let v = xb[8 * k + i];
            if v >= 0.0 {
                xval[8 * k + i] = v;
            } else {
                xval[8 * k + i] = -v;
                nflip += 1;
                s |= 1 << i;
            }
        }
        if nflip % 2 == 1 {
            let importance = |i: usize| weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
            let (mut imin, mut min) = (0, importance(0));
            for i in 1..8 {
                if importance(i) < min {
                    min = importance(i);
                    imin = i;
                }
            }
            xval[8 * k + imin] = -xval[8 * k + imin];
            s ^= 1 << imin;
        }
        signs[k] = s & 127;
    }
}

/// One sub-block made ready for the lattice search: weights, their square
/// roots (the neighbour search's), magnitudes and sign bytes.
struct SubBlock<const N: usize> {
    weight: [f32; N],
    waux: [f32; N],
    xval: [f32; N],
    signs: [u8; 4],
}

impl<const N: usize> SubBlock<N> {
    /// `parity`: IQ2_XXS/IQ2_XS/IQ3_XXS keep an even number of negatives
    /// per 8 ([`fold_signs`]); IQ2_S/IQ3_S store all 8 sign bits.
    fn new(xb: &[f32], qw: Option<&[f32]>, s2: f32, plain: fn(f32, f32) -> f32, parity: bool) -> Self {
        let mut b = SubBlock {
            weight: [0f32; N],
            waux: [0f32; N],
            xval: [0f32; N],
            signs: [0u8; 4],
        };
        weights_or(xb, qw, s2, &mut b.weight, plain);
        for i in 0..N {
            b.waux[i] = b.weight[i].sqrt();
        }
        if parity {
            fold_signs(xb, &b.weight, &mut b.xval, &mut b.signs);
        } else {
            plain_signs(xb, &mut b.xval, &mut b.signs);
        }
        b
    }
}

/// x², the weights without a matrix.
fn squared(_: f32, x: f32) -> f32 {
    x * x
}

fn max_of(x: &[f32]) -> f32 {
    x[1..].iter().fold(x[0], |m, &v| if m > v { m } else { v })
}

/// Σw·x·q and Σw·q² for levels `l` (q = 2l + 1).
fn fit(xval: &[f32], weight: &[f32], l: &[i8]) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for i in 0..xval.len() {
        let q = (2 * i32::from(l[i]) + 1) as f32;
        sumqx += weight[i] * xval[i] * q;
        sumq2 += weight[i] * q * q;
    }
    (sumqx, sumq2)
}

/// The levels of `xval` at inverse scale `id`, clamped to [0, kmax - 1].
fn levels(xval: &[f32], id: f32, kmax: i32, l: &mut [i8]) {
    for i in 0..xval.len() {
        l[i] = nearest_int(0.5 * (id * xval[i] - 1.0)).clamp(0, kmax - 1) as i8;
    }
}

/// How a type runs the shared scale search.
struct Search {
    bits: u32,
    kmax: i32,
    /// Inverse scales (2·kmax - 1 + is·step)/max for is in -nsteps..=nsteps.
    nsteps: i32,
    step: f32,
    /// IQ3_S counts every group as off the codebook until a scale wins,
    /// and requantizes every group at the end (the others only those off).
    pessimistic: bool,
}

const IQ2_SEARCH: Search = Search {
    bits: 2,
    kmax: 3,
    nsteps: 9,
    step: 0.1,
    pessimistic: false,
};

/// The scale search IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S share: inverse scales
/// around (2·kmax - 1)/max, each group snapped to the codebook, the best
/// weighted fit kept; then the groups that were off the codebook
/// requantized at the best scale and the scale refitted. Returns the scale
/// with `l` on the codebook.
fn lattice_search<const D: usize>(
    lat: &Lattice<D>,
    sp: &Search,
    xval: &[f32],
    weight: &[f32],
    waux: &[f32],
    l: &mut [i8],
) -> f32 {
    let (bits, kmax) = (sp.bits, sp.kmax);
    let n = xval.len();
    let groups = n / D;
    let max = max_of(xval);
    let mut scale = max / (2 * kmax - 1) as f32;
    let mut best = 0.0f32;
    let mut laux = [0i8; 32];
    let (mut on_grid, mut on_grid_aux) = ([!sp.pessimistic; 8], [true; 8]);
    for is in -sp.nsteps..=sp.nsteps {
        let id = ((2 * kmax - 1) as f32 + is as f32 * sp.step) / max;
        let this_scale = 1.0 / id;
        for k in 0..groups {
            let g = D * k..D * k + D;
            levels(&xval[g.clone()], id, kmax, &mut laux[g.clone()]);
            on_grid_aux[k] = lat
                .snap(bits, &mut laux[g.clone()], &xval[g.clone()], &waux[g], this_scale)
                .1;
        }
        let (sumqx, sumq2) = fit(xval, weight, &laux[..n]);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            l.copy_from_slice(&laux[..n]);
            on_grid[..groups].copy_from_slice(&on_grid_aux[..groups]);
        }
    }
    if on_grid[..groups].iter().any(|g| !g) && scale > 0.0 {
        let id = 1.0 / scale;
        for k in (0..groups).filter(|&k| sp.pessimistic || !on_grid[k]) {
            let g = D * k..D * k + D;
            levels(&xval[g.clone()], id, kmax, &mut l[g.clone()]);
            lat.snap(bits, &mut l[g.clone()], &xval[g.clone()], &waux[g], scale);
        }
        let (sumqx, sumq2) = fit(xval, weight, l);
        if sumq2 > 0.0 {
            scale = sumqx / sumq2;
        }
    }
    scale
}

/// The 4-bit super-block code of a sub-block scale: (scale/d - 1)/2.
fn scale_code(id: f32, scale: f32) -> u32 {
    nearest_int(0.5 * (id * scale - 1.0)).clamp(0, 15) as u32
}

/// σ² of a super-block (Σx²/256, times `k`).
fn sigma2(x: &[f32], k: f32) -> f32 {
    k * x.iter().fold(0.0f32, |s, v| s + v * v) / QK_K as f32
}

// ------------------------------------------------------------ IQ2_XXS
// d f16 | qs: per 32 values two u32, four 8-bit codebook indices, then
// four 7-bit sign groups and the 4-bit scale in the top bits.

/// `quantize_row_iq2_xxs_impl` (an importance matrix is required).
pub fn quantize_iq2_xxs_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    let lat = iq2xxs_lattice();
    let s2 = sigma2(x, 1.0);
    let mut q2 = [0u32; 16];
    let mut scales = [0f32; 8];
    let mut max_scale = 0.0f32;
    for ib in 0..8 {
        let b = SubBlock::<32>::new(&x[32 * ib..32 * ib + 32], Some(&qw[32 * ib..]), s2, squared, true);
        let mut signs = b.signs;
        let mut l = [0i8; 32];
        let Some(scale) = iq2_xxs_scale(lat, &b.xval, &b.weight, &b.waux, &mut l) else {
            continue;
        };
        let mut scale = scale;
        if scale < 0.0 {
            scale = -scale;
            signs.iter_mut().for_each(|s| *s = !*s & 127);
        }
        for k in 0..4 {
            q2[2 * ib] |= (lat.index_of(2, &l[8 * k..8 * k + 8]) as u32) << (8 * k);
            q2[2 * ib + 1] |= u32::from(signs[k]) << (7 * k);
        }
        scales[ib] = scale;
        max_scale = max_scale.max(scale);
    }
    finish_iq2(out, max_scale, &scales, |id, s, ib| {
        q2[2 * ib + 1] |= scale_code(id, s) << 28
    });
    if max_scale != 0.0 {
        write_u32s(&mut out[2..66], &q2);
    }
}

/// IQ2_XXS's sub-block search: a start from `make_qp_quants`, 13 scales
/// around it, then every group requantized at the best one. `None` for an
/// all-zero sub-block.
fn iq2_xxs_scale(
    lat: &Lattice<8>,
    xval: &[f32; 32],
    weight: &[f32; 32],
    waux: &[f32; 32],
    l: &mut [i8; 32],
) -> Option<f32> {
    const KMAX: i32 = 3;
    if max_of(xval) < GROUP_MAX_EPS {
        return None;
    }
    let mut lq = [0u8; 32];
    let mut scale = make_qp_quants(KMAX + 1, xval, &mut lq, weight);
    let eff_max = scale * KMAX as f32;
    if eff_max <= 0.0 {
        return None;
    }
    let mut best = 0.0f32;
    let mut laux = [0i8; 32];
    for is in -6..=6 {
        let id = ((2 * KMAX - 1) as f32 + is as f32 * 0.1) / eff_max;
        let this_scale = 1.0 / id;
        for k in 0..4 {
            let g = 8 * k..8 * k + 8;
            levels(&xval[g.clone()], id, KMAX, &mut laux[g.clone()]);
            lat.snap(2, &mut laux[g.clone()], &xval[g.clone()], &waux[g], this_scale);
        }
        let (sumqx, sumq2) = fit(xval, weight, &laux);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            *l = laux;
        }
    }
    if scale > 0.0 {
        let id = 1.0 / scale;
        for k in 0..4 {
            let g = 8 * k..8 * k + 8;
            levels(&xval[g.clone()], id, KMAX, &mut l[g.clone()]);
            lat.snap(2, &mut l[g.clone()], &xval[g.clone()], &waux[g], scale);
        }
        let (sumqx, sumq2) = fit(xval, weight, l);
        if sumq2 > 0.0 {
            scale = sumqx / sumq2;
        }
    }
    Some(scale)
}

/// The super-block scale d = max/31 (an all-zero block keeps d = 0 and
/// zero codes) and each sub-block's 4-bit code, stored by `put`.
fn finish_iq2(out: &mut [u8], max_scale: f32, scales: &[f32], mut put: impl FnMut(f32, f32, usize)) {
    out.iter_mut().for_each(|b| *b = 0);
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    out[0..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    let id = 1.0 / d;
    for (ib, &s) in scales.iter().enumerate() {
        put(id, s, ib);
    }
}

fn write_u32s(out: &mut [u8], v: &[u32]) {
    for (o, x) in out.chunks_exact_mut(4).zip(v) {
        o.copy_from_slice(&x.to_le_bytes());
    }
}

/// ±1 for bit j of a sign byte.
fn sign(t: &Tables, signs: u8, j: usize) -> f32 {
    if signs & t.kmask[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

pub fn dequantize_iq2_xxs(b: &[u8], y: &mut [f32]) {
    let t = tables();
    let d = f16_value(b, 0);
    for ib in 0..8 {
        let at = 2 + 8 * ib;
        let aux0 = &b[at..at + 4];
        let aux1 = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]);
        let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
        for l in 0..4 {
            let grid = t.iq2xxs[aux0[l] as usize].to_le_bytes();
            let signs = t.ksigns[((aux1 >> (7 * l)) & 127) as usize];
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = db * f32::from(grid[j]) * sign(t, signs, j);
            }
        }
    }
}

// ------------------------------------------------------------ IQ2_XS
// d f16 | qs: u16 per 8 values (9-bit index, 7 sign bits) | scales[8]
// (two 4-bit codes, one per 16 values).

/// `quantize_row_iq2_xs_impl` (an importance matrix is required).
pub fn quantize_iq2_xs_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    let lat = iq2xs_lattice();
    let s2 = sigma2(x, 1.0);
    let mut q2 = [0u16; 32];
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    for ib in 0..16 {
        let b = SubBlock::<16>::new(&x[16 * ib..16 * ib + 16], Some(&qw[16 * ib..]), s2, squared, true);
        let mut signs = b.signs;
        if max_of(&b.xval) < GROUP_MAX_EPS {
            continue;
        }
        let mut l = [0i8; 16];
        let mut scale = lattice_search(lat, &IQ2_SEARCH, &b.xval, &b.weight, &b.waux, &mut l);
        if scale < 0.0 {
            scale = -scale;
            signs.iter_mut().for_each(|s| *s = !*s & 127);
        }
        for k in 0..2 {
            q2[2 * ib + k] = lat.index_of(2, &l[8 * k..8 * k + 8]) as u16 | (u16::from(signs[k]) << 9);
        }
        scales[ib] = scale;
        max_scale = max_scale.max(scale);
    }
    let mut sc = [0u8; 8];
    finish_iq2(out, max_scale, &scales, |id, s, ib| {
        sc[ib / 2] |= (scale_code(id, s) as u8) << (4 * (ib % 2));
    });
    if max_scale != 0.0 {
        for (o, v) in out[2..66].chunks_exact_mut(2).zip(&q2) {
            o.copy_from_slice(&v.to_le_bytes());
        }
        out[66..74].copy_from_slice(&sc);
    }
}

pub fn dequantize_iq2_xs(b: &[u8], y: &mut [f32]) {
    let t = tables();
    let d = f16_value(b, 0);
    let scales = &b[66..74];
    for ib in 0..8 {
        let db = [
            d * (0.5 + (scales[ib] & 0xf) as f32) * 0.25,
            d * (0.5 + (scales[ib] >> 4) as f32) * 0.25,
        ];
        for l in 0..4 {
            let at = 2 + 2 * (4 * ib + l);
            let q = u16::from_le_bytes([b[at], b[at + 1]]);
            let grid = t.iq2xs[(q & 511) as usize].to_le_bytes();
            let signs = t.ksigns[(q >> 9) as usize];
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = db[l / 2] * f32::from(grid[j]) * sign(t, signs, j);
            }
        }
    }
}

// ------------------------------------------------------------ IQ3_XXS
// d f16 | qs[64]: an 8-bit codebook index per 4 values | per 32 values a
// u32 of four 7-bit sign groups and the 4-bit scale.

pub fn quantize_iq3_xxs(x: &[f32], out: &mut [u8]) {
    iq3_xxs_with(x, None, out);
}

pub fn quantize_iq3_xxs_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    iq3_xxs_with(x, Some(qw), out);
}

/// `quantize_row_iq3_xxs_impl` with the 256-point codebook.
fn iq3_xxs_with(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    const KMAX: i32 = 8;
    let lat = iq3xxs_lattice();
    let s2 = sigma2(x, 2.0);
    let mut q3 = [0u8; 64];
    let mut scales_and_signs = [0u32; 8];
    let mut scales = [0f32; 8];
    let mut max_scale = 0.0f32;
    for ib in 0..8 {
        let b = SubBlock::<32>::new(&x[32 * ib..32 * ib + 32], qw.map(|q| &q[32 * ib..]), s2, squared, true);
        let mut signs = b.signs;
        if max_of(&b.xval) < GROUP_MAX_EPS_IQ3_XXS {
            continue;
        }
        let mut l = [0i8; 32];
        let search = Search {
            bits: 3,
            kmax: KMAX,
            nsteps: 15,
            step: 0.2,
            pessimistic: false,
        };
        let mut scale = lattice_search(lat, &search, &b.xval, &b.weight, &b.waux, &mut l);
        if scale < 0.0 {
            scale = -scale;
            signs.iter_mut().for_each(|s| *s = !*s & 127);
        }
        for k in 0..8 {
            q3[8 * ib + k] = lat.index_of(3, &l[4 * k..4 * k + 4]) as u8;
        }
        scales_and_signs[ib] = signs
            .iter()
            .enumerate()
            .fold(0u32, |a, (k, &s)| a | (u32::from(s) << (7 * k)));
        scales[ib] = scale;
        max_scale = max_scale.max(scale);
    }
    out.iter_mut().for_each(|b| *b = 0);
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    // ggml's "small improvement via this fudge factor".
    out[0..2].copy_from_slice(&f16_bits(d * 1.0125).to_le_bytes());
    let id = 1.0 / d;
    for ib in 0..8 {
        scales_and_signs[ib] |= scale_code(id, scales[ib]) << 28;
    }
    out[2..66].copy_from_slice(&q3);
    write_u32s(&mut out[66..98], &scales_and_signs);
}

pub fn dequantize_iq3_xxs(b: &[u8], y: &mut [f32]) {
    let t = tables();
    let d = f16_value(b, 0);
    for ib in 0..8 {
        let at = 66 + 4 * ib;
        let aux = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
        let qs = &b[2 + 8 * ib..10 + 8 * ib];
        for l in 0..4 {
            let signs = t.ksigns[((aux >> (7 * l)) & 127) as usize];
            let g1 = t.iq3xxs[qs[2 * l] as usize].to_le_bytes();
            let g2 = t.iq3xxs[qs[2 * l + 1] as usize].to_le_bytes();
            for j in 0..4 {
                y[32 * ib + 8 * l + j] = db * f32::from(g1[j]) * sign(t, signs, j);
                y[32 * ib + 8 * l + j + 4] = db * f32::from(g2[j]) * sign(t, signs, j + 4);
            }
        }
    }
}

// ------------------------------------------------------------ IQ2_S
// d f16 | qs[32] low index bytes | signs[32] | qh[8] (2 high index bits
// per 8 values) | scales[8] (two 4-bit codes, one per 16 values).

pub fn quantize_iq2_s(x: &[f32], out: &mut [u8]) {
    iq2_s_with(x, None, out);
}

pub fn quantize_iq2_s_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    iq2_s_with(x, Some(qw), out);
}

/// `quantize_row_iq2_s_impl` (weights 0.25σ² + x² without a matrix).
fn iq2_s_with(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let lat = iq2s_lattice();
    let s2 = sigma2(x, 2.0);
    out.iter_mut().for_each(|b| *b = 0);
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    for ib in 0..16 {
        let xb = &x[16 * ib..16 * ib + 16];
        let (mut weight, mut waux, mut xval) = ([0f32; 16], [0f32; 16], [0f32; 16]);
        weights_or(xb, qw.map(|q| &q[16 * ib..]), s2, &mut weight, |s2, x| {
            0.25 * s2 + x * x
        });
        for i in 0..16 {
            waux[i] = weight[i].sqrt();
        }
        let mut signs = [0u8; 2];
        plain_signs(xb, &mut xval, &mut signs);
        if max_of(&xval) < GROUP_MAX_EPS_IQ2_S {
            continue;
        }
        let mut l = [0i8; 16];
        let mut scale = lattice_search(lat, &IQ2_SEARCH, &xval, &weight, &waux, &mut l);
        if scale < 0.0 {
            scale = -scale;
            signs.iter_mut().for_each(|s| *s = !*s);
        }
        for k in 0..2 {
            let index = lat.index_of(2, &l[8 * k..8 * k + 8]);
            let i8 = 2 * ib + k;
            out[2 + i8] = (index & 255) as u8;
            out[66 + i8 / 4] |= ((index >> 8) << (2 * (i8 % 4))) as u8;
            out[2 + 32 + i8] = signs[k];
        }
        scales[ib] = scale;
        max_scale = max_scale.max(scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    out[0..2].copy_from_slice(&f16_bits(d * 0.9875).to_le_bytes());
    let id = 1.0 / d;
    for ib in 0..16 {
        out[74 + ib / 2] |= (scale_code(id, scales[ib]) as u8) << (4 * (ib % 2));
    }
}

pub fn dequantize_iq2_s(b: &[u8], y: &mut [f32]) {
    let t = tables();
    let d = f16_value(b, 0);
    let (qs, signs, qh, scales) = (&b[2..34], &b[34..66], &b[66..74], &b[74..82]);
    for ib in 0..8 {
        let db = [
            d * (0.5 + (scales[ib] & 0xf) as f32) * 0.25,
            d * (0.5 + (scales[ib] >> 4) as f32) * 0.25,
        ];
        for l in 0..4 {
            let index = usize::from(qs[4 * ib + l]) | ((usize::from(qh[ib]) << (8 - 2 * l)) & 0x300);
            let grid = t.iq2s[index].to_le_bytes();
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = db[l / 2] * f32::from(grid[j]) * sign(t, signs[4 * ib + l], j);
            }
        }
    }
}

// ------------------------------------------------------------ IQ3_S
// d f16 | qs[64] low index bytes | qh[8] (one high index bit per 4
// values) | signs[32] | scales[4] (two 4-bit codes, one per 32 values).

pub fn quantize_iq3_s(x: &[f32], out: &mut [u8]) {
    iq3_s_with(x, None, out);
}

pub fn quantize_iq3_s_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    iq3_s_with(x, Some(qw), out);
}

/// `quantize_row_iq3_s_impl` with 32-value sub-blocks.
fn iq3_s_with(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let lat = iq3s_lattice();
    let search = Search {
        bits: 3,
        kmax: 8,
        nsteps: 9,
        step: 0.2,
        pessimistic: true,
    };
    let s2 = sigma2(x, 2.0);
    out.iter_mut().for_each(|b| *b = 0);
    let mut scales = [0f32; 8];
    let mut max_scale = 0.0f32;
    for ib in 0..8 {
        let b = SubBlock::<32>::new(&x[32 * ib..32 * ib + 32], qw.map(|q| &q[32 * ib..]), s2, squared, false);
        let mut signs = b.signs;
        if max_of(&b.xval) == 0.0 {
            continue;
        }
        let mut l = [0i8; 32];
        let mut scale = lattice_search(lat, &search, &b.xval, &b.weight, &b.waux, &mut l);
        if scale < 0.0 {
            scale = -scale;
            signs.iter_mut().for_each(|s| *s = !*s);
        }
        for k in 0..8 {
            let index = lat.index_of(3, &l[4 * k..4 * k + 4]);
            let g = 8 * ib + k;
            out[2 + g] = (index & 255) as u8;
            out[66 + g / 8] |= ((index >> 8) << (g % 8)) as u8;
        }
        out[74 + 4 * ib..78 + 4 * ib].copy_from_slice(&signs);
        scales[ib] = scale;
        max_scale = max_scale.max(scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    out[0..2].copy_from_slice(&f16_bits(d * 1.033).to_le_bytes());
    let id = 1.0 / d;
    for ib in (0..8).step_by(2) {
        out[106 + ib / 2] = (scale_code(id, scales[ib]) | (scale_code(id, scales[ib + 1]) << 4)) as u8;
    }
}

pub fn dequantize_iq3_s(b: &[u8], y: &mut [f32]) {
    let t = tables();
    let d = f16_value(b, 0);
    let (qs, qh, signs, scales) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
    for ib in 0..8 {
        let code = if ib % 2 == 0 {
            scales[ib / 2] & 0xf
        } else {
            scales[ib / 2] >> 4
        };
        let db = d * (1 + 2 * i32::from(code)) as f32;
        let (q, h, sg) = (&qs[8 * ib..8 * ib + 8], qh[ib], &signs[4 * ib..4 * ib + 4]);
        for l in 0..4 {
            let i1 = usize::from(q[2 * l]) | ((usize::from(h) << (8 - 2 * l)) & 256);
            let i2 = usize::from(q[2 * l + 1]) | ((usize::from(h) << (7 - 2 * l)) & 256);
            let (g1, g2) = (t.iq3s[i1].to_le_bytes(), t.iq3s[i2].to_le_bytes());
            for j in 0..4 {
                y[32 * ib + 8 * l + j] = db * f32::from(g1[j]) * sign(t, sg[l], j);
                y[32 * ib + 8 * l + j + 4] = db * f32::from(g2[j]) * sign(t, sg[l], j + 4);
            }
        }
    }
}

// ------------------------------------------------------------ IQ1_S / IQ1_M
// Ternary groups of 8 on a 2048-point codebook, the levels -1, 0, 1
// shifted by ±0.125 per sub-block.

/// Shifted levels with the positive and negative delta.
const X_P: [f32; 3] = [-1.0 + IQ1_DELTA, IQ1_DELTA, 1.0 + IQ1_DELTA];
const X_M: [f32; 3] = [-1.0 - IQ1_DELTA, -IQ1_DELTA, 1.0 - IQ1_DELTA];

/// The order of `xb` ascending (stable, as glibc's merge-sorting qsort
/// leaves equal values).
fn ascending(xb: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..xb.len()).collect();
    idx.sort_by(|&a, &b| xb[a].partial_cmp(&xb[b]).unwrap_or(std::cmp::Ordering::Equal));
    idx
}

/// Levels 0/1/2 from the best split of the sorted values at i1 ≤ i2.
fn split_levels(idx: &[usize], i1: usize, i2: usize, l: &mut [i8]) {
    for (j, &i) in idx.iter().enumerate() {
        l[i] = if j < i1 {
            0
        } else if j < i2 {
            1
        } else {
            2
        };
    }
}

/// Each group of 8 snapped to the codebook (`iq1_find_best_neighbour2` off
/// it, the group's levels read as `xx(k)`); returns the indices and
/// whether all were on it.
fn iq1_snap(
    xb: &[f32],
    weight: &[f32],
    scale: f32,
    xx: impl Fn(usize) -> [f32; 3],
    l: &mut [i8],
    index: &mut [u16],
) -> bool {
    let lat = iq1_lattice();
    let mut all = true;
    for k in 0..xb.len() / 8 {
        let g = 8 * k..8 * k + 8;
        let u = pack_levels(2, &l[g.clone()]);
        if lat.map[u] >= 0 {
            index[k] = lat.map[u] as u16;
            continue;
        }
        all = false;
        let xg = xx(k);
        let (mut best, mut best_d2) = (lat.neighbours_of(u)[0], f32::MAX);
        for &j in lat.neighbours_of(u) {
            let pg = &lat.points[j as usize];
            let mut d2 = 0.0f32;
            for i in 0..8 {
                let diff = scale * xg[((pg[i] - 1) / 2) as usize] - xb[8 * k + i];
                d2 += weight[8 * k + i] * diff * diff;
            }
            if d2 < best_d2 {
                best_d2 = d2;
                best = j;
            }
        }
        for i in 0..8 {
            l[8 * k + i] = (lat.points[best as usize][i] - 1) / 2;
        }
        index[k] = best;
    }
    all
}

/// The scale refitted to the snapped codebook points (kept when positive).
fn iq1_refit(xb: &[f32], weight: &[f32], index: &[u16], xx: impl Fn(usize) -> [f32; 3], scale: f32) -> f32 {
    let lat = iq1_lattice();
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for (k, &ix) in index.iter().enumerate() {
        let (pg, xg) = (&lat.points[ix as usize], xx(k));
        for j in 0..8 {
            let q = xg[((pg[j] - 1) / 2) as usize];
            sumqx += weight[8 * k + j] * q * xb[8 * k + j];
            sumq2 += weight[8 * k + j] * q * q;
        }
    }
    if sumqx > 0.0 && sumq2 > 0.0 {
        sumqx / sumq2
    } else {
        scale
    }
}

fn abs_max(x: &[f32]) -> f32 {
    x[1..]
        .iter()
        .fold(x[0].abs(), |m, v| if m > v.abs() { m } else { v.abs() })
}

/// `quantize_row_iq1_s_impl` (an importance matrix is required).
/// d f16 | qs[32] low index bytes | qh u16[8]: 3 high index bits per 8
/// values, the 3-bit scale at 12, the delta's sign at 15.
pub fn quantize_iq1_s_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    let s2 = sigma2(x, 2.0);
    out.iter_mut().for_each(|b| *b = 0);
    let (mut scales, mut shifts, mut qh) = ([0f32; 8], [1i8; 8], [0u16; 8]);
    let mut max_scale = 0.0f32;
    for ib in 0..8 {
        let xb = &x[32 * ib..32 * ib + 32];
        let mut weight = [0f32; 32];
        weights_of(xb, Some(&qw[32 * ib..]), s2, &mut weight);
        if abs_max(xb) < GROUP_MAX_EPS_IQ1_S {
            continue;
        }
        let idx = ascending(xb);
        let (mut sumx, mut sumw) = ([0f32; 33], [0f32; 33]);
        for (j, &i) in idx.iter().enumerate() {
            sumx[j + 1] = sumx[j] + weight[i] * xb[i];
            sumw[j + 1] = sumw[j] + weight[i];
        }
        let (mut best_score, mut scale) = (-f32::MAX, abs_max(xb));
        let mut best: Option<(usize, usize, i8)> = None;
        for i1 in 0..=32 {
            for i2 in i1..=32 {
                for (xv, shift) in [(&X_P, 1i8), (&X_M, -1)] {
                    let sumqx =
                        (sumx[i1] - sumx[0]) * xv[0] + (sumx[i2] - sumx[i1]) * xv[1] + (sumx[32] - sumx[i2]) * xv[2];
                    let sumq2 = (sumw[i1] - sumw[0]) * xv[0] * xv[0]
                        + (sumw[i2] - sumw[i1]) * xv[1] * xv[1]
                        + (sumw[32] - sumw[i2]) * xv[2] * xv[2];
                    if sumq2 > 0.0 && sumqx * sumqx > best_score * sumq2 {
                        scale = sumqx / sumq2;
                        best_score = scale * sumqx;
                        best = Some((i1, i2, shift));
                    }
                }
            }
        }
        let Some((i1, i2, mut shift)) = best else { continue };
        let mut l = [0i8; 32];
        split_levels(&idx, i1, i2, &mut l);
        if scale < 0.0 {
            l.iter_mut().for_each(|v| *v = 2 - *v);
            scale = -scale;
            shift = -shift;
        }
        let xx = |_: usize| if shift == 1 { X_P } else { X_M };
        let mut index = [0u16; 4];
        if !iq1_snap(xb, &weight, scale, xx, &mut l, &mut index) {
            scale = iq1_refit(xb, &weight, &index, xx, scale);
        }
        for k in 0..4 {
            out[2 + 4 * ib + k] = (index[k] & 255) as u8;
            qh[ib] |= (index[k] >> 8) << (3 * k);
        }
        scales[ib] = scale;
        shifts[ib] = shift;
        max_scale = max_scale.max(scale);
    }
    if max_scale != 0.0 {
        let d = max_scale / 15.0;
        out[0..2].copy_from_slice(&f16_bits(d * 1.125).to_le_bytes());
        let id = 1.0 / d;
        for ib in 0..8 {
            let mut l = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 7) as u16;
            if shifts[ib] == -1 {
                l |= 8;
            }
            qh[ib] |= l << 12;
        }
    }
    for (o, v) in out[34..50].chunks_exact_mut(2).zip(&qh) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

pub fn dequantize_iq1_s(b: &[u8], y: &mut [f32]) {
    let t = tables();
    let d = f16_value(b, 0);
    for ib in 0..8 {
        let qh = u16::from_le_bytes([b[34 + 2 * ib], b[35 + 2 * ib]]);
        let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
        let delta = if qh & 0x8000 != 0 { -IQ1_DELTA } else { IQ1_DELTA };
        for l in 0..4 {
            let index = usize::from(b[2 + 4 * ib + l]) | (usize::from((qh >> (3 * l)) & 7) << 8);
            let grid = t.iq1s[index].to_le_bytes();
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = dl * (f32::from(grid[j] as i8) + delta);
            }
        }
    }
}

/// IQ1_M's levels of group `k` (of 2) for sign choice `best_k`: bit 1 of
/// it picks the first group's delta, bit 0 the second's.
fn iq1m_levels(best_k: i8, k: usize) -> [f32; 3] {
    let minus = if k == 0 { best_k >= 2 } else { best_k % 2 == 1 };
    if minus {
        X_M
    } else {
        X_P
    }
}

pub fn quantize_iq1_m(x: &[f32], out: &mut [u8]) {
    iq1_m_with(x, None, out);
}

pub fn quantize_iq1_m_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    iq1_m_with(x, Some(qw), out);
}

/// The best split and sign choice of one 16-value IQ1_M sub-block:
/// prefix sums per half (each half takes its own delta), every split of
/// the sorted values scored for the four (delta, delta) choices.
fn iq1m_split(xb: &[f32], weight: &[f32], idx: &[usize]) -> (f32, Option<(usize, usize, i8)>) {
    let (mut px, mut pw) = ([[0f32; 17]; 2], [[0f32; 17]; 2]);
    for (j, &i) in idx.iter().enumerate() {
        let h = usize::from(i >= 8);
        px[h][j + 1] = px[h][j] + weight[i] * xb[i];
        px[1 - h][j + 1] = px[1 - h][j];
        pw[h][j + 1] = pw[h][j] + weight[i];
        pw[1 - h][j + 1] = pw[1 - h][j];
    }
    let (txs, tws) = ([px[0][16], px[1][16]], [pw[0][16], pw[1][16]]);
    let (p2, m2) = (X_P[2], X_M[2]);
    let cp1 = X_P[0] * X_P[0] - X_P[1] * X_P[1];
    let cp2 = X_P[1] * X_P[1] - X_P[2] * X_P[2];
    let cm1 = X_M[0] * X_M[0] - X_M[1] * X_M[1];
    let cm2 = X_M[1] * X_M[1] - X_M[2] * X_M[2];
    let (mut best_score, mut scale) = (-f32::MAX, abs_max(xb));
    let mut best = None;
    for i1 in 0..=16 {
        for i2 in i1..=16 {
            let (mut qx_p, mut qx_m, mut q2_p, mut q2_m) = ([0f32; 2], [0f32; 2], [0f32; 2], [0f32; 2]);
            for h in 0..2 {
                let sx = px[h][i1] + px[h][i2];
                qx_p[h] = txs[h] * p2 - sx;
                qx_m[h] = txs[h] * m2 - sx;
                q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
                q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
            }
            let sumqx = [
                qx_p[0] + qx_p[1],
                qx_p[0] + qx_m[1],
                qx_m[0] + qx_p[1],
                qx_m[0] + qx_m[1],
            ];
            let sumq2 = [
                q2_p[0] + q2_p[1],
                q2_p[0] + q2_m[1],
                q2_m[0] + q2_p[1],
                q2_m[0] + q2_m[1],
            ];
            for k in 0..4 {
                if sumq2[k] > 0.0 && sumqx[k] * sumqx[k] > best_score * sumq2[k] {
                    scale = sumqx[k] / sumq2[k];
                    best_score = scale * sumqx[k];
                    best = Some((i1, i2, k as i8));
                }
            }
        }
    }
    (scale, best)
}

/// `quantize_row_iq1_m_impl` (weights x² without a matrix).
/// qs[32] low index bytes | qh[16]: per 16 values two 3-bit high index
/// parts and two delta signs | scales u16[4]: 3-bit sub-block scales, and
/// the f16 super-block scale spread over their top nibbles.
fn iq1_m_with(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    const MASKS: [u8; 4] = [0x00, 0x80, 0x08, 0x88];
    let lat = iq1_lattice();
    let s2 = sigma2(x, 2.0);
    out.iter_mut().for_each(|b| *b = 0);
    let (mut scales, mut shifts) = ([0f32; 16], [0i8; 16]);
    let mut max_scale = 0.0f32;
    for ib in 0..16 {
        let xb = &x[16 * ib..16 * ib + 16];
        let mut weight = [0f32; 16];
        weights_of(xb, qw.map(|q| &q[16 * ib..]), s2, &mut weight);
        if abs_max(xb) < GROUP_MAX_EPS_IQ1_M {
            continue;
        }
        let idx = ascending(xb);
        let (mut scale, best) = iq1m_split(xb, &weight, &idx);
        let Some((i1, i2, mut best_k)) = best else { continue };
        let mut l = [0i8; 16];
        split_levels(&idx, i1, i2, &mut l);
        if scale < 0.0 {
            l.iter_mut().for_each(|v| *v = 2 - *v);
            scale = -scale;
            best_k = 3 - best_k;
        }
        let xx = |k: usize| iq1m_levels(best_k, k);
        let mut index = [0u16; 2];
        if !iq1_snap(xb, &weight, scale, xx, &mut l, &mut index) {
            scale = iq1_refit(xb, &weight, &index, xx, scale);
        }
        out[2 * ib] = (index[0] & 255) as u8;
        out[2 * ib + 1] = (index[1] & 255) as u8;
        out[32 + ib] = ((index[0] >> 8) | ((index[1] >> 8) << 4)) as u8;
        scales[ib] = scale;
        shifts[ib] = best_k;
        max_scale = max_scale.max(scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let mut sc = [0u16; 4];
    let mut d = max_scale / 15.0;
    let id = 1.0 / d;
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for ib in 0..16 {
        let l = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 7);
        sc[ib / 4] |= (l as u16) << (3 * (ib % 4));
        out[32 + ib] |= MASKS[shifts[ib] as usize];
        let xb = &x[16 * ib..16 * ib + 16];
        let mut weight = [0f32; 16];
        weights_of(xb, qw.map(|q| &q[16 * ib..]), s2, &mut weight);
        let qh = usize::from(out[32 + ib]);
        for k in 0..2 {
            let xg = iq1m_levels(shifts[ib], k);
            let index = usize::from(out[2 * ib + k]) + ((qh << (8 - 4 * k)) & 0x700);
            let pg = &lat.points[index];
            for j in 0..8 {
                let q = xg[((pg[j] - 1) / 2) as usize] * (2 * l + 1) as f32;
                sumqx += weight[8 * k + j] * q * xb[8 * k + j];
                sumq2 += weight[8 * k + j] * q * q;
            }
        }
    }
    if sumq2 > 0.0 {
        d = sumqx / sumq2;
    }
    let s = f16_bits(d * 1.1125);
    sc[0] |= (s & 0x000f) << 12;
    sc[1] |= (s & 0x00f0) << 8;
    sc[2] |= (s & 0x0f00) << 4;
    sc[3] |= s & 0xf000;
    for (o, v) in out[48..56].chunks_exact_mut(2).zip(&sc) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

pub fn dequantize_iq1_m(b: &[u8], y: &mut [f32]) {
    let t = tables();
    let sc: [u16; 4] = std::array::from_fn(|i| u16::from_le_bytes([b[48 + 2 * i], b[49 + 2 * i]]));
    let bits = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
    let d = half::f16::from_bits(bits).to_f32();
    for ib in 0..8 {
        let s = sc[ib / 2];
        let dl1 = d * (2 * ((s >> (6 * (ib % 2))) & 7) + 1) as f32;
        let dl2 = d * (2 * ((s >> (6 * (ib % 2) + 3)) & 7) + 1) as f32;
        let (qs, qh) = (
            &b[4 * ib..4 * ib + 4],
            [u16::from(b[32 + 2 * ib]), u16::from(b[33 + 2 * ib])],
        );
        let idx = [
            u16::from(qs[0]) | ((qh[0] << 8) & 0x700),
            u16::from(qs[1]) | ((qh[0] << 4) & 0x700),
            u16::from(qs[2]) | ((qh[1] << 8) & 0x700),
            u16::from(qs[3]) | ((qh[1] << 4) & 0x700),
        ];
        let delta = |h: u16, m: u16| if h & m != 0 { -IQ1_DELTA } else { IQ1_DELTA };
        let deltas = [
            delta(qh[0], 0x08),
            delta(qh[0], 0x80),
            delta(qh[1], 0x08),
            delta(qh[1], 0x80),
        ];
        for l in 0..4 {
            let grid = t.iq1s[idx[l] as usize].to_le_bytes();
            let dl = if l < 2 { dl1 } else { dl2 };
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = dl * (f32::from(grid[j] as i8) + deltas[l]);
            }
        }
    }
}
