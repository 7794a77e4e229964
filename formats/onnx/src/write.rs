//! Writing ONNX: the graph is encoded with prost, but initializer data is
//! streamed from its sources straight into the output (or into a `.data`
//! file beside it), so no copy of the weights is held in memory.
//!
//! Protobuf encodes fields in tag order, each message prefixed by its
//! length; every length is known from the plan, so the file is written in
//! one pass. Field order matches what the reference (C++) serializer
//! writes, so an unchanged model re-encodes byte for byte.

use crate::proto::{tensor_proto, GraphProto, ModelProto, StringStringEntryProto, TensorProto};
use modelconv_ir::{commit_all, DataSource, Error, OutputFile, Progress, Result, WriteOptions, WritePlan};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Protobuf cannot hold a message of 2 GiB or more; past this the data
/// goes to an external file whatever the options say.
pub const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;
/// Tensors of at least this many bytes go to the external file.
pub const EXTERNAL_MIN: u64 = 1024;
/// Alignment of tensors in the external file (page size, for mmap).
pub const EXTERNAL_ALIGN: u64 = 4096;

/// A model ready to write: the graph (its `initializer` list is ignored)
/// and the initializers, in order, each with the bytes of its `raw_data`.
pub struct OnnxOut {
    pub model: ModelProto,
    pub inits: Vec<OutInit>,
}

pub struct OutInit {
    /// The tensor's header (name, dims, data_type, doc_string, …). When
    /// `data` is set its data fields are ignored.
    pub proto: TensorProto,
    /// The bytes of `raw_data`; `None` keeps `proto` exactly as it is.
    pub data: Option<Arc<dyn DataSource>>,
}

impl OutInit {
    pub fn name(&self) -> &str {
        self.proto.name.as_deref().unwrap_or("")
    }
}

enum Body {
    Whole(Vec<u8>),
    Data {
        head: Vec<u8>,
        src: Arc<dyn DataSource>,
        tail: Vec<u8>,
        /// Offset in the external file, or `None` for `raw_data`.
        external: Option<u64>,
    },
}

/// The fully encoded layout of an ONNX output.
pub struct OnnxPlan {
    dest: PathBuf,
    data_dest: Option<PathBuf>,
    opts: WriteOptions,
    model_lo: Vec<u8>,
    graph_len: u64,
    graph_lo: Vec<u8>,
    inits: Vec<Body>,
    graph_hi: Vec<u8>,
    model_hi: Vec<u8>,
    data_bytes: u64,
    /// External data was chosen because the model would pass 2 GiB.
    pub forced_external: bool,
}

fn len_delimited(len: u64) -> u64 {
    1 + encoded_len_varint(len) as u64
}

/// The file name of the external data of `dest`: `<file name>.data`.
pub fn data_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".data");
    dest.with_file_name(name)
}

/// Splits a tensor header around field 9 (`raw_data`).
fn split_tensor(t: TensorProto, external: Option<(String, u64, u64)>) -> (Vec<u8>, Vec<u8>) {
    let TensorProto {
        dims,
        data_type,
        segment,
        float_data: _,
        int32_data: _,
        string_data: _,
        int64_data: _,
        name,
        raw_data: _,
        double_data: _,
        uint64_data: _,
        doc_string,
        external_data: _,
        data_location: _,
        metadata_props,
    } = t;
    let head = TensorProto {
        dims,
        data_type,
        segment,
        name,
        ..Default::default()
    };
    let mut tail = TensorProto {
        doc_string,
        metadata_props,
        ..Default::default()
    };
    if let Some((location, offset, length)) = external {
        let kv = |k: &str, v: String| StringStringEntryProto {
            key: Some(k.to_string()),
            value: Some(v),
        };
        tail.external_data = vec![
            kv("location", location),
            kv("offset", offset.to_string()),
            kv("length", length.to_string()),
        ];
        tail.data_location = Some(tensor_proto::DataLocation::External as i32);
    }
    (head.encode_to_vec(), tail.encode_to_vec())
}

/// Lays out `out` for writing to `dest`; with `external` (or when the
/// model would pass the protobuf limit) tensors of 1 KiB or more go to
/// `<dest>.data`.
pub fn plan(out: OnnxOut, dest: &Path, external: bool, opts: &WriteOptions) -> Result<OnnxPlan> {
    let embedded: u64 = out
        .inits
        .iter()
        .map(|i| i.data.as_ref().map_or(0, |d| d.len()))
        .fold(0, u64::saturating_add);
    let forced_external = !external && embedded > PROTOBUF_LIMIT;
    let external = external || forced_external;
    let data_dest = data_path(dest);
    let data_name = data_dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            Error::invalid(format!(
                "{}: output name must be UTF-8 for external data",
                dest.display()
            ))
        })?
        .to_string();

    let Parts {
        model_lo,
        model_hi,
        graph_lo,
        graph_hi,
    } = split_model(out.model);
    let mut graph_len = (graph_lo.len() + graph_hi.len()) as u64;
    let mut data = DataLayout {
        external,
        name: data_name,
        pos: 0,
        bytes: 0,
        any_external: false,
    };
    let mut inits = Vec::with_capacity(out.inits.len());
    for init in out.inits {
        let (body, len) = data.body(init);
        graph_len += len_delimited(len) + len;
        inits.push(body);
    }
    let (data_bytes, any_external) = (data.bytes, data.any_external);
    let total = (model_lo.len() + model_hi.len()) as u64 + len_delimited(graph_len) + graph_len;
    if total > PROTOBUF_LIMIT {
        return Err(Error::unsupported(format!(
            "{}: the graph itself encodes to {total} bytes, past protobuf's 2 GiB limit",
            dest.display()
        )));
    }
    Ok(OnnxPlan {
        dest: dest.to_path_buf(),
        data_dest: any_external.then_some(data_dest),
        opts: opts.clone(),
        model_lo,
        graph_len,
        graph_lo,
        inits,
        graph_hi,
        model_hi,
        data_bytes,
        forced_external,
    })
}

/// The model and its graph encoded around the initializers: what comes
/// before them (`_lo`) and after (`_hi`), in field order, so the
/// initializers can be streamed in between.
struct Parts {
    model_lo: Vec<u8>,
    model_hi: Vec<u8>,
    graph_lo: Vec<u8>,
    graph_hi: Vec<u8>,
}

fn split_model(model: ModelProto) -> Parts {
    let ModelProto {
        ir_version,
        opset_import,
        producer_name,
        producer_version,
        domain,
        model_version,
        doc_string,
        graph,
        metadata_props,
        training_info,
        functions,
        configuration,
    } = model;
    let model_lo = ModelProto {
        ir_version,
        producer_name,
        producer_version,
        domain,
        model_version,
        doc_string,
        ..Default::default()
    }
    .encode_to_vec();
    let model_hi = ModelProto {
        opset_import,
        metadata_props,
        training_info,
        functions,
        configuration,
        ..Default::default()
    }
    .encode_to_vec();
    let GraphProto {
        node,
        name,
        initializer: _,
        sparse_initializer,
        doc_string,
        input,
        output,
        value_info,
        quantization_annotation,
        metadata_props,
    } = graph.unwrap_or_default();
    let graph_lo = GraphProto {
        node,
        name,
        ..Default::default()
    }
    .encode_to_vec();
    let graph_hi = GraphProto {
        sparse_initializer,
        doc_string,
        input,
        output,
        value_info,
        quantization_annotation,
        metadata_props,
        ..Default::default()
    }
    .encode_to_vec();

    Parts {
        model_lo,
        model_hi,
        graph_lo,
        graph_hi,
    }
}

/// Where each initializer's data goes: inline, or (with external data,
/// for tensors of EXTERNAL_MIN bytes and more) at the next aligned offset
/// of the side file.
struct DataLayout {
    external: bool,
    name: String,
    pos: u64,
    bytes: u64,
    any_external: bool,
}

impl DataLayout {
    /// The initializer's encoded parts and its encoded length in the graph.
    fn body(&mut self, init: OutInit) -> (Body, u64) {
        match init.data {
            None => {
                let b = init.proto.encode_to_vec();
                let n = b.len() as u64;
                (Body::Whole(b), n)
            }
            Some(src) => {
                let n = src.len();
                self.bytes += n;
                if self.external && n >= EXTERNAL_MIN {
                    let offset = self.pos.next_multiple_of(EXTERNAL_ALIGN);
                    self.pos = offset + n;
                    self.any_external = true;
                    let (head, tail) = split_tensor(init.proto, Some((self.name.clone(), offset, n)));
                    let len = (head.len() + tail.len()) as u64;
                    (
                        Body::Data {
                            head,
                            src,
                            tail,
                            external: Some(offset),
                        },
                        len,
                    )
                } else {
                    let (head, tail) = split_tensor(init.proto, None);
                    let len = (head.len() + tail.len()) as u64 + len_delimited(n) + n;
                    (
                        Body::Data {
                            head,
                            src,
                            tail,
                            external: None,
                        },
                        len,
                    )
                }
            }
        }
    }
}

fn put_len_delimited(f: &mut OutputFile, tag: u32, len: u64) -> Result<()> {
    let mut b = Vec::with_capacity(11);
    encode_key(tag, WireType::LengthDelimited, &mut b);
    encode_varint(len, &mut b);
    f.write_all(&b)
}

impl WritePlan for OnnxPlan {
    fn outputs(&self) -> Vec<PathBuf> {
        let mut v = vec![self.dest.clone()];
        v.extend(self.data_dest.clone());
        v
    }

    fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    fn write(self: Box<Self>, progress: &dyn Progress) -> Result<()> {
        let mut f = OutputFile::create(&self.dest, &self.opts)?;
        let mut data = match &self.data_dest {
            Some(p) => Some(OutputFile::create(p, &self.opts)?),
            None => None,
        };
        f.write_all(&self.model_lo)?;
        put_len_delimited(&mut f, 7, self.graph_len)?;
        f.write_all(&self.graph_lo)?;
        for body in &self.inits {
            match body {
                Body::Whole(b) => {
                    put_len_delimited(&mut f, 5, b.len() as u64)?;
                    f.write_all(b)?;
                }
                Body::Data {
                    head,
                    src,
                    tail,
                    external: None,
                } => {
                    let n = src.len();
                    put_len_delimited(&mut f, 5, (head.len() + tail.len()) as u64 + len_delimited(n) + n)?;
                    f.write_all(head)?;
                    put_len_delimited(&mut f, 9, n)?;
                    f.write_source(src.as_ref(), progress)?;
                    f.write_all(tail)?;
                }
                Body::Data {
                    head,
                    src,
                    tail,
                    external: Some(offset),
                } => {
                    put_len_delimited(&mut f, 5, (head.len() + tail.len()) as u64)?;
                    f.write_all(head)?;
                    f.write_all(tail)?;
                    let d = data
                        .as_mut()
                        .ok_or_else(|| Error::internal("external tensor without a data file"))?;
                    d.pad_to(EXTERNAL_ALIGN)?;
                    debug_assert_eq!(d.position(), *offset);
                    d.write_source(src.as_ref(), progress)?;
                }
            }
        }
        f.write_all(&self.graph_hi)?;
        f.write_all(&self.model_hi)?;
        let mut files = vec![f];
        files.extend(data);
        commit_all(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Claims to be `n` zero bytes; never asked for them here.
    struct Zeros(u64);
    impl DataSource for Zeros {
        fn len(&self) -> u64 {
            self.0
        }
        fn read_at(&self, _: u64, buf: &mut [u8]) -> Result<()> {
            buf.fill(0);
            Ok(())
        }
    }

    fn out(sizes: &[u64]) -> OnnxOut {
        let inits = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| OutInit {
                proto: TensorProto {
                    dims: vec![n as i64],
                    data_type: Some(2),
                    name: Some(format!("t{i}")),
                    ..Default::default()
                },
                data: Some(Arc::new(Zeros(n))),
            })
            .collect();
        OnnxOut {
            model: ModelProto {
                graph: Some(GraphProto::default()),
                ..Default::default()
            },
            inits,
        }
    }

    #[test]
    fn past_two_gib_the_data_goes_external() {
        let dest = Path::new("/nonexistent/m.onnx");
        let opts = WriteOptions::default();
        let small = plan(out(&[1 << 20, 100]), dest, false, &opts).unwrap();
        assert!(!small.forced_external && small.outputs().len() == 1);
        let big = plan(out(&[1 << 30, 1 << 30, 100]), dest, false, &opts).unwrap();
        assert!(big.forced_external);
        assert_eq!(
            big.outputs(),
            [dest.to_path_buf(), PathBuf::from("/nonexistent/m.onnx.data")]
        );
        // Offsets: page-aligned; the 100-byte tensor stays inline.
        let offsets: Vec<Option<u64>> = big
            .inits
            .iter()
            .map(|b| match b {
                Body::Data { external, .. } => *external,
                Body::Whole(_) => None,
            })
            .collect();
        assert_eq!(offsets, [Some(0), Some(1 << 30), None]);
    }
}
