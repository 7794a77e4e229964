//! `config.json` and the other small JSON files of a model folder, read with
//! a size limit, and the hyper-parameter look-ups `convert_hf_to_gguf.py`
//! does (`find_hparam`: the first of several spellings that is present).

use modelconv_ir::{Error, Result, SharedFile};
use serde_json::{Map, Value};
use std::path::Path;

/// Largest JSON side file read (config, tokenizer config, tokenizer.json).
pub const MAX_JSON: u64 = 256 << 20;

/// Reads `path` as JSON, if it is a file.
pub fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = read_limited(path, MAX_JSON)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::malformed(path, format!("not valid JSON: {e}")))
}

/// The whole of a regular file of at most `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    SharedFile::read_whole(path, limit)
}

/// A model's hyper-parameters: `config.json`, with a `text_config` section
/// lifted to the top level (multimodal wrappers).
#[derive(Debug, Clone)]
pub struct Hparams {
    pub map: Map<String, Value>,
}

impl Hparams {
    pub fn from_json(path: &Path, v: Value) -> Result<Self> {
        let Value::Object(mut map) = v else {
            return Err(Error::malformed(path, "config is not a JSON object"));
        };
        if let Some(Value::Object(text)) = map.get("text_config").cloned() {
            map.extend(text);
        }
        Ok(Hparams { map })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// The first of `keys` present (null counts as present, as in Python).
    pub fn find(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().find_map(|k| self.map.get(*k))
    }

    /// A required unsigned integer, under any of `keys`.
    pub fn uint(&self, keys: &[&str]) -> Result<u64> {
        self.opt_uint(keys)?
            .ok_or_else(|| Error::invalid(format!("config.json: none of {keys:?} is given")))
    }

    /// An optional unsigned integer; present but not one is an error.
    pub fn opt_uint(&self, keys: &[&str]) -> Result<Option<u64>> {
        match self.find(keys) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| Error::invalid(format!("config.json: {keys:?} is {v}, expected an unsigned integer"))),
        }
    }

    /// An optional number.
    pub fn opt_f64(&self, keys: &[&str]) -> Result<Option<f64>> {
        match self.find(keys) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| Error::invalid(format!("config.json: {keys:?} is {v}, expected a number"))),
        }
    }

    /// The first entry of `architectures`.
    pub fn architecture(&self) -> Option<&str> {
        self.map.get("architectures")?.as_array()?.first()?.as_str()
    }
}

/// A u32 metadata value from a config number, refusing what does not fit.
pub fn u32_of(what: &str, v: u64) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(format!("config.json: {what} = {v} does not fit in 32 bits")))
}
