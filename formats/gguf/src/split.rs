//! Split GGUF models as llama.cpp's `llama-gguf-split` makes and merges
//! them (tools/gguf-split/gguf-split.cpp at the reference commit): shards
//! named `STEM-00001-of-0000N.gguf`, the model's metadata in the first one
//! only, every shard carrying `split.no` (u16, from 0), `split.count` (u16)
//! and `split.tensors.count` (i32, the model's total).

use modelconv_ir::{Error, FormatOption, Metadata, OptionValue, Options, Result, Stage, Tensor, Value};
use std::path::{Path, PathBuf};

pub const SPLIT_NO: &str = "split.no";
pub const SPLIT_COUNT: &str = "split.count";
pub const SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

const MAX_SIZE: &str = "split-max-size";
const MAX_TENSORS: &str = "split-max-tensors";
const NO_TENSOR_FIRST: &str = "no-tensor-first-split";
const ONLY: &str = "split-only";

/// llama-gguf-split's default `--split-max-tensors`.
const DEFAULT_MAX_TENSORS: u64 = 128;
/// llama-gguf-split pads every tensor to GGUF_DEFAULT_ALIGNMENT, whatever
/// `general.alignment` says.
pub const SPLIT_ALIGNMENT: u64 = 32;

/// The options of split output, on `convert` (GGUF output) and `quantize`.
pub const OPTIONS: &[FormatOption] = &[
    FormatOption {
        name: MAX_SIZE,
        stages: &[Stage::Write, Stage::Quantize],
        value: OptionValue::Value("N(M|G)"),
        help: "split the output as llama-gguf-split --split-max-size does: shards OUT-00001-of-0000N.gguf of at most N·10⁶ (M) or N·10⁹ (G) bytes of tensor data, each tensor counted padded to 32 bytes",
    },
    FormatOption {
        name: MAX_TENSORS,
        stages: &[Stage::Write, Stage::Quantize],
        value: OptionValue::Value("N"),
        help: "split the output as llama-gguf-split --split-max-tensors does: at most N tensors per shard",
    },
    FormatOption {
        name: NO_TENSOR_FIRST,
        stages: &[Stage::Write, Stage::Quantize],
        value: OptionValue::Flag,
        help: "split output: the first shard holds the metadata and no tensors (alone, splits by llama-gguf-split's default of 128 tensors)",
    },
    FormatOption {
        name: ONLY,
        stages: &[Stage::Write, Stage::Quantize],
        value: OptionValue::Value("K"),
        help: "split output: write shard K alone (from 1, as the file names count), byte-identical to shard K of the whole run; the layout is decided from the headers, so separate processes can each write one",
    },
];

/// Where a new shard starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most this many bytes of padded tensor data per shard.
    Bytes(u64),
    /// At most this many tensors per shard.
    Tensors(u64),
}

/// A split requested on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub limit: Limit,
    pub no_tensor_first_split: bool,
    /// Write only this shard (0-based).
    pub only: Option<usize>,
}

impl Split {
    /// The split the options ask for, or `None` for one file.
    pub fn from_options(options: &Options) -> Result<Option<Split>> {
        let size = options.get(MAX_SIZE).map(parse_size).transpose()?;
        let tensors = options.get(MAX_TENSORS).map(parse_count).transpose()?;
        let no_tensor_first_split = options.flag(NO_TENSOR_FIRST);
        let only = options.get(ONLY).map(parse_only).transpose()?;
        let limit = match (size, tensors) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(format!(
                    "--{MAX_SIZE} and --{MAX_TENSORS}: give one or the other, as llama-gguf-split takes them"
                )))
            }
            (Some(b), None) => Limit::Bytes(b),
            (None, Some(n)) => Limit::Tensors(n),
            (None, None) if no_tensor_first_split || only.is_some() => Limit::Tensors(DEFAULT_MAX_TENSORS),
            (None, None) => return Ok(None),
        };
        Ok(Some(Split {
            limit,
            no_tensor_first_split,
            only,
        }))
    }

    /// The tensors of each shard, as index ranges into `tensors`, cut as
    /// llama-gguf-split cuts them: by size, a shard ends before the tensor
    /// that would take its padded data past the limit; by count, every N
    /// tensors; a tensor larger than the limit gets a shard of its own. A
    /// shard that would hold no tensors (the first tensor larger than the
    /// limit) is an error, except the first with `--no-tensor-first-split`.
    pub fn shards(&self, tensors: &[Tensor]) -> Result<Vec<std::ops::Range<usize>>> {
        let mut starts: Vec<usize> = vec![0];
        if self.no_tensor_first_split {
            starts.push(0);
        }
        let mut current = 0u64;
        for (i, t) in tensors.iter().enumerate() {
            let padded = t
                .info
                .byte_len
                .saturating_add(modelconv_ir::padding(t.info.byte_len, SPLIT_ALIGNMENT));
            let next = current.saturating_add(padded);
            let cut = match self.limit {
                Limit::Bytes(max) => next > max,
                Limit::Tensors(n) => i > 0 && (i as u64).is_multiple_of(n),
            };
            if cut {
                // The shard being closed began at this tensor: it holds none.
                if starts.last() == Some(&i) {
                    return Err(self.empty_shard(t, padded));
                }
                starts.push(i);
                current = padded;
            } else {
                current = next;
            }
        }
        let mut ranges: Vec<_> = starts.windows(2).map(|w| w[0]..w[1]).collect();
        if let Some(&last) = starts.last() {
            ranges.push(last..tensors.len());
        }
        Ok(ranges)
    }

    fn empty_shard(&self, t: &Tensor, padded: u64) -> Error {
        let limit = match self.limit {
            Limit::Bytes(b) => format!("--{MAX_SIZE} ({b} bytes)"),
            Limit::Tensors(n) => format!("--{MAX_TENSORS} {n}"),
        };
        Error::invalid(format!(
            "a shard would hold no tensors: tensor '{}' ({padded} bytes padded) does not fit in {limit}; \
             llama-gguf-split refuses this too (raise the limit)",
            t.info.name
        ))
    }
}

/// `N` followed by `M` (10⁶ bytes) or `G` (10⁹), as llama-gguf-split reads
/// `--split-max-size`; N a positive integer.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'M' | 'm')) => (&t[..i], 1_000_000u64),
        Some((i, 'G' | 'g')) => (&t[..i], 1_000_000_000u64),
        _ => {
            return Err(Error::invalid(format!(
                "--{MAX_SIZE} {s}: give a whole number of M (megabytes) or G (gigabytes), as llama-gguf-split takes it: 500M, 2G"
            )))
        }
    };
    num.parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            Error::invalid(format!(
                "--{MAX_SIZE} {s}: the size must be a positive whole number of M or G"
            ))
        })
}

fn parse_count(s: &str) -> Result<u64> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| Error::invalid(format!("--{MAX_TENSORS} {s}: expected a positive number of tensors")))
}

fn parse_only(s: &str) -> Result<usize> {
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|&k| k > 0)
        .map(|k| k - 1)
        .ok_or_else(|| Error::invalid(format!("--{ONLY} {s}: expected a shard number from 1")))
}

/// `dir/out.gguf` (or `dir/out`) → `dir/out-00002-of-00005.gguf`, the
/// name llama.cpp's `llama_split_path` gives shard 2 of 5.
pub fn shard_path(dest: &Path, i: usize, n: usize) -> PathBuf {
    let name = dest
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".gguf").unwrap_or(&name);
    dest.with_file_name(format!("{stem}-{:05}-of-{n:05}.gguf", i + 1))
}

/// gguf_set_val: an existing key is removed and the new value appended.
fn set_last(md: &mut Metadata, key: &str, value: Value) {
    md.remove(key);
    md.set(key, value);
}

/// The metadata of shard `i` of `n`: the model's for the first (llama-gguf-split
/// copies every key, then sets `split.no`, a placeholder `split.count`,
/// `split.tensors.count`, and sets `split.count` again once the count is
/// known, so it ends last), only the three keys for the others.
pub fn shard_metadata(model: &Metadata, i: usize, n: usize, total_tensors: usize) -> Result<Metadata> {
    let (no, count, total) = split_values(i, n, total_tensors)?;
    let mut md = if i == 0 { model.clone() } else { Metadata::new() };
    set_last(&mut md, SPLIT_NO, no);
    set_last(&mut md, SPLIT_COUNT, Value::U16(0));
    set_last(&mut md, SPLIT_TENSORS_COUNT, total);
    set_last(&mut md, SPLIT_COUNT, count);
    Ok(md)
}

/// The metadata of shard `i` of `n` as llama-quantize --keep-split writes
/// it: the model's in the first shard and nothing in the others, then
/// `split.no`, `split.count`, `split.tensors.count` in that order; with
/// one shard, no split keys at all.
pub fn kept_shard_metadata(model: &Metadata, i: usize, n: usize, total_tensors: usize) -> Result<Metadata> {
    let mut md = if i == 0 { model.clone() } else { Metadata::new() };
    if n > 1 {
        let (no, count, total) = split_values(i, n, total_tensors)?;
        set_last(&mut md, SPLIT_NO, no);
        set_last(&mut md, SPLIT_COUNT, count);
        set_last(&mut md, SPLIT_TENSORS_COUNT, total);
    }
    Ok(md)
}

/// split.no, split.count and split.tensors.count as GGUF types them
/// (u16, u16, i32), or why they do not fit.
fn split_values(i: usize, n: usize, total_tensors: usize) -> Result<(Value, Value, Value)> {
    let no = u16::try_from(i).map_err(|_| Error::invalid(format!("{n} shards: split.no is a u16")))?;
    let count =
        u16::try_from(n).map_err(|_| Error::invalid(format!("{n} shards: split.count is a u16 (at most 65535)")))?;
    let total = i32::try_from(total_tensors)
        .map_err(|_| Error::invalid(format!("{total_tensors} tensors: split.tensors.count is an i32")))?;
    Ok((Value::U16(no), Value::U16(count), Value::I32(total)))
}

/// The metadata of one file made of a split model: `split.count` set to 0
/// (removed and appended), as `llama-gguf-split --merge` writes it, so that
/// llama.cpp does not look for the other shards; `split.no` and
/// `split.tensors.count` stay where they are, as there.
pub fn merged_metadata(model: &Metadata) -> Option<Metadata> {
    model.contains(SPLIT_COUNT).then(|| {
        let mut md = model.clone();
        set_last(&mut md, SPLIT_COUNT, Value::U16(0));
        md
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelconv_ir::{DType, MemSource, TensorInfo};
    use std::sync::Arc;

    fn tensors(bytes: &[u64]) -> Vec<Tensor> {
        bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let info = TensorInfo::new(format!("t{i}"), DType::U8, vec![b]).unwrap();
                Tensor::new(info, Arc::new(MemSource::new(vec![0u8; b as usize]))).unwrap()
            })
            .collect()
    }

    fn split(limit: Limit, no_tensor_first_split: bool) -> Split {
        Split {
            limit,
            no_tensor_first_split,
            only: None,
        }
    }

    #[test]
    fn a_shard_ends_before_the_tensor_whose_padded_size_passes_the_limit() {
        // 33 bytes count as 64, 10 and 4 as 32.
        let t = tensors(&[33, 33, 10, 4]);
        assert_eq!(
            split(Limit::Bytes(100), false).shards(&t).unwrap(),
            vec![0..1, 1..3, 3..4]
        );
        assert_eq!(
            split(Limit::Bytes(64), false).shards(&t).unwrap(),
            vec![0..1, 1..2, 2..4]
        );
        assert_eq!(
            split(Limit::Bytes(64), true).shards(&t).unwrap(),
            vec![0..0, 0..1, 1..2, 2..4]
        );
    }

    #[test]
    fn a_first_tensor_larger_than_the_limit_is_refused_as_llama_gguf_split_refuses_it() {
        // Later, a tensor larger than the limit gets a shard of its own.
        let t = tensors(&[10, 100, 10]);
        assert_eq!(
            split(Limit::Bytes(64), false).shards(&t).unwrap(),
            vec![0..1, 1..2, 2..3]
        );
        let t = tensors(&[100]);
        for first in [false, true] {
            let e = split(Limit::Bytes(64), first).shards(&t).unwrap_err().to_string();
            assert!(e.contains("'t0' (128 bytes padded)"), "{e}");
        }
    }

    #[test]
    fn by_count_every_nth_tensor_starts_a_shard() {
        let t = tensors(&[1; 7]);
        assert_eq!(
            split(Limit::Tensors(3), false).shards(&t).unwrap(),
            vec![0..3, 3..6, 6..7]
        );
        assert_eq!(
            split(Limit::Tensors(3), true).shards(&t).unwrap(),
            vec![0..0, 0..3, 3..6, 6..7]
        );
        assert_eq!(split(Limit::Tensors(7), false).shards(&t).unwrap(), vec![0..7]);
    }

    #[test]
    fn shard_metadata_puts_split_count_last_as_gguf_set_val_does() {
        let mut md = Metadata::new();
        md.set("general.architecture", Value::String("llama".into()));
        md.set(SPLIT_COUNT, Value::U16(9));
        let first = shard_metadata(&md, 0, 3, 20).unwrap();
        let keys: Vec<&str> = first.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["general.architecture", SPLIT_NO, SPLIT_TENSORS_COUNT, SPLIT_COUNT]
        );
        assert_eq!(first.get(SPLIT_COUNT), Some(&Value::U16(3)));
        let other = shard_metadata(&md, 2, 3, 20).unwrap();
        assert_eq!(other.len(), 3);
        assert_eq!(other.get(SPLIT_NO), Some(&Value::U16(2)));
        assert_eq!(other.get(SPLIT_TENSORS_COUNT), Some(&Value::I32(20)));
        let merged = merged_metadata(&first).unwrap();
        let keys: Vec<&str> = merged.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["general.architecture", SPLIT_NO, SPLIT_TENSORS_COUNT, SPLIT_COUNT]
        );
        assert_eq!(merged.get(SPLIT_COUNT), Some(&Value::U16(0)));
        assert!(merged_metadata(&Metadata::new()).is_none());
    }

    #[test]
    fn sizes_are_whole_megabytes_or_gigabytes() {
        assert_eq!(parse_size("500M").unwrap(), 500_000_000);
        assert_eq!(parse_size("2G").unwrap(), 2_000_000_000);
        for bad in ["1MB", "1.5G", "0M", "-1G", "G", "12"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shard_paths_take_the_stem_without_gguf() {
        assert_eq!(
            shard_path(Path::new("d/out.gguf"), 1, 3),
            PathBuf::from("d/out-00002-of-00003.gguf")
        );
        assert_eq!(
            shard_path(Path::new("out"), 0, 1),
            PathBuf::from("out-00001-of-00001.gguf")
        );
    }
}
