//! Writing: deterministic single files, or Hugging Face shards plus index.

use crate::header::{self, Entry};
use modelconv_ir::{commit_all, Error, Model, OutputFile, Progress, Result, Tensor, WriteOptions, WritePlan, Writer};
use std::path::{Path, PathBuf};

pub struct SafetensorsWriter;

struct Shard {
    path: PathBuf,
    header: Vec<u8>,
    tensors: Vec<Tensor>,
}

struct Plan {
    shards: Vec<Shard>,
    /// The index json (path and text) when sharded.
    index: Option<(PathBuf, String)>,
    data_bytes: u64,
    opts: WriteOptions,
}

impl Writer for SafetensorsWriter {
    fn hf_weights_file(&self) -> Option<&'static str> {
        Some("model.safetensors")
    }
    fn plan(&self, model: &Model, dest: &Path, opts: &WriteOptions) -> Result<Box<dyn WritePlan>> {
        model.check_unique_names()?;
        model.refuse_types(
            "safetensors",
            |d| !d.is_quantized(),
            |_| "convert with --dtype F32, F16 or BF16".into(),
        )?;
        let metadata = model.metadata.to_strings();

        // Greedy split in tensor order: a new shard starts when the next
        // tensor would pass the limit (a tensor larger than it gets its own).
        let mut groups: Vec<Vec<Tensor>> = vec![Vec::new()];
        let mut size = 0u64;
        for t in &model.tensors {
            if let (Some(max), Some(last)) = (opts.max_shard_size, groups.last()) {
                if !last.is_empty() && size.saturating_add(t.info.byte_len) > max {
                    groups.push(Vec::new());
                    size = 0;
                }
            }
            size = size.saturating_add(t.info.byte_len);
            if let Some(last) = groups.last_mut() {
                last.push(t.clone());
            }
        }
        let data_bytes = model.data_bytes();
        let n = groups.len();
        let mut shards = Vec::with_capacity(n);
        let mut weight_map = serde_json::Map::new();
        for (i, tensors) in groups.into_iter().enumerate() {
            let path = if n == 1 {
                dest.to_path_buf()
            } else {
                shard_path(dest, i + 1, n)
            };
            let mut offset = 0u64;
            let entries: Vec<Entry> = tensors
                .iter()
                .map(|t| {
                    let begin = offset;
                    offset += t.info.byte_len;
                    Entry {
                        name: t.info.name.clone(),
                        dtype: t.info.dtype,
                        shape: t.info.shape.clone(),
                        begin,
                        end: offset,
                    }
                })
                .collect();
            let header = header::serialize(&metadata, &entries);
            if header.len() as u64 > header::MAX_HEADER_SIZE {
                return Err(Error::unsupported(format!(
                    "the header would be {} bytes, over safetensors' limit of {}",
                    header.len(),
                    header::MAX_HEADER_SIZE
                )));
            }
            let file_name = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            for t in &tensors {
                weight_map.insert(t.info.name.clone(), file_name.clone().into());
            }
            shards.push(Shard { path, header, tensors });
        }
        let index = (n > 1).then(|| {
            let index = serde_json::json!({
                "metadata": { "total_size": data_bytes },
                "weight_map": weight_map,
            });
            let text = serde_json::to_string_pretty(&index).unwrap_or_default() + "\n";
            (index_path(dest), text)
        });
        Ok(Box::new(Plan {
            shards,
            index,
            data_bytes,
            opts: opts.clone(),
        }))
    }
}

/// `dir/model.safetensors` → `dir/model-00002-of-00005.safetensors`.
fn shard_path(dest: &Path, i: usize, n: usize) -> PathBuf {
    dest.with_file_name(format!("{}-{i:05}-of-{n:05}.safetensors", stem(dest)))
}

/// `dir/model.safetensors` → `dir/model.safetensors.index.json`.
fn index_path(dest: &Path) -> PathBuf {
    dest.with_file_name(format!("{}.safetensors.index.json", stem(dest)))
}

fn stem(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".safetensors").unwrap_or(&name).to_string()
}

impl WritePlan for Plan {
    fn outputs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.shards.iter().map(|s| s.path.clone()).collect();
        v.extend(self.index.iter().map(|(p, _)| p.clone()));
        v
    }

    fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// One shard: its header holds every offset; written in one pass.
    fn streamable(&self) -> bool {
        self.shards.len() == 1 && self.index.is_none()
    }

    fn write(self: Box<Self>, progress: &dyn Progress) -> Result<()> {
        let mut files = Vec::new();
        for shard in &self.shards {
            let mut out = OutputFile::create(&shard.path, &self.opts)?;
            out.write_all(&(shard.header.len() as u64).to_le_bytes())?;
            out.write_all(&shard.header)?;
            for t in &shard.tensors {
                out.write_source(t.data.as_ref(), progress)
                    .map_err(|e| e.for_tensor(&t.info.name))?;
            }
            files.push(out);
        }
        if let Some((path, text)) = &self.index {
            let mut out = OutputFile::create(path, &self.opts)?;
            out.write_all(text.as_bytes())?;
            files.push(out);
        }
        commit_all(files)
    }
}
