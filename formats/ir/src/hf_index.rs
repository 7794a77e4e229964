//! Hugging Face sharded checkpoints: an index json
//! (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) whose
//! `weight_map` names the shard file of every tensor. One reader for every
//! format whose shards are listed this way.

use crate::{Error, Model, Result, SharedFile};
use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path};

/// Largest index json accepted.
pub const MAX_INDEX_SIZE: u64 = 64 << 20;

/// Shard file → the tensors the index puts there, shards in name order.
pub fn read_index(index: &Path) -> Result<BTreeMap<String, HashSet<String>>> {
    let text = SharedFile::read_whole(index, MAX_INDEX_SIZE)?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::malformed(index, format!("index JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::malformed(index, "no \"weight_map\" object"))?;
    let mut shards: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for (name, shard) in map {
        let plain = shard.as_str().filter(|s| {
            let p = Path::new(s);
            p.components().count() == 1 && matches!(p.components().next(), Some(Component::Normal(_)))
        });
        let shard = plain.ok_or_else(|| {
            Error::malformed(
                index,
                format!("weight_map entry '{name}': shard is not a plain file name in the index's folder"),
            )
        })?;
        shards.entry(shard.to_string()).or_default().insert(name.clone());
    }
    Ok(shards)
}

/// Opens a sharded model through its index: each shard with `open_shard`,
/// keeping the tensors the index lists there (every one must be present).
/// Metadata and notes come from the first shard.
pub fn open_sharded(
    index: &Path,
    format: &'static str,
    mut open_shard: impl FnMut(&Path) -> Result<Model>,
) -> Result<Model> {
    let shards = read_index(index)?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut model = Model {
        format,
        path: index.to_path_buf(),
        ..Default::default()
    };
    for (i, (shard, names)) in shards.iter().enumerate() {
        crate::check_interrupt()?;
        let m = open_shard(&dir.join(shard))?;
        let present: HashSet<&str> = m.tensors.iter().map(|t| t.info.name.as_str()).collect();
        for n in names {
            if !present.contains(n.as_str()) {
                return Err(Error::malformed(
                    index,
                    format!("weight_map puts '{n}' in {shard}, which has no such tensor"),
                ));
            }
        }
        if i == 0 {
            model.metadata = m.metadata;
            model.notes = m.notes;
            model.declared_order = m.declared_order;
        }
        model
            .tensors
            .extend(m.tensors.into_iter().filter(|t| names.contains(t.info.name.as_str())));
    }
    model.check_unique_names().map_err(|e| e.in_file(index))?;
    Ok(model)
}
