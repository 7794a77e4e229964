//! What a PyTorch pickle may build, plugged into the pickle VM: storages
//! (from persistent ids), tensors (torch's `_rebuild_*` functions),
//! `torch.Size`, dtypes and storage classes as names; with numpy's and
//! Python's own builders ([`TORCH`]). A TorchScript archive's classes are
//! records as well ([`TORCHSCRIPT`]).

use modelconv_npy::pickled::NUMPY;
use modelconv_pickle::constructors::first_items;
use modelconv_pickle::{Chain, Constructors, Object, Value, PYTHON};
use std::cell::RefCell;
use std::rc::Rc;

/// A PyTorch storage, as named by a persistent id.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Key of the storage's bytes in the container (`data/<key>` or the legacy key).
    pub key: String,
    /// Element type name (torch's, e.g. `float32`), or `None` for untyped bytes.
    pub dtype: Option<String>,
    /// For legacy views: the offset (in elements) into the root storage.
    pub view_offset: u64,
}

impl Object for StorageRef {
    fn kind(&self) -> &'static str {
        "storage"
    }
}

/// A tensor: a strided view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// Element type (torch name).
    pub dtype: String,
    /// Offset into the storage, in elements.
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<i64>,
}

impl Object for TensorRef {
    fn kind(&self) -> &'static str {
        "tensor"
    }
}

/// Whether a value is a tensor or a numpy array: what a state dict holds.
pub fn is_tensor_like(v: &Value) -> bool {
    v.object::<TensorRef>().is_some() || modelconv_npy::pickled::is_array(v)
}

/// torch dtype names (as globals like `torch.float32`, or from storage
/// classes) → our canonical torch name.
pub fn torch_dtype(name: &str) -> Option<&'static str> {
    Some(match name {
        "float32" | "float" | "FloatStorage" => "float32",
        "float64" | "double" | "DoubleStorage" => "float64",
        "float16" | "half" | "HalfStorage" => "float16",
        "bfloat16" | "BFloat16Storage" => "bfloat16",
        "float8_e4m3fn" | "Float8_e4m3fnStorage" => "float8_e4m3fn",
        "float8_e5m2" | "Float8_e5m2Storage" => "float8_e5m2",
        "int64" | "long" | "LongStorage" => "int64",
        "int32" | "int" | "IntStorage" => "int32",
        "int16" | "short" | "ShortStorage" => "int16",
        "int8" | "CharStorage" => "int8",
        "uint8" | "ByteStorage" => "uint8",
        "uint16" | "UInt16Storage" => "uint16",
        "uint32" | "UInt32Storage" => "uint32",
        "uint64" | "UInt64Storage" => "uint64",
        "bool" | "BoolStorage" => "bool",
        _ => return None,
    })
}

/// torch's own builders.
pub struct Torch;

const REBUILD_TENSOR: &[&str] = &["_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"];
const REBUILD_PARAMETER: &[&str] = &["_rebuild_parameter", "_rebuild_parameter_with_state"];
const REBUILD_FROM_TYPE: &str = "_rebuild_from_type_v2";

impl Constructors for Torch {
    fn allows(&self, module: &str, name: &str) -> bool {
        match module {
            "torch._utils" => {
                REBUILD_TENSOR.contains(&name) || REBUILD_PARAMETER.contains(&name) || name == REBUILD_FROM_TYPE
            }
            "torch" => name.ends_with("Storage") || torch_dtype(name).is_some() || name == "Size",
            "torch.storage" => name == "UntypedStorage" || name == "TypedStorage",
            "torch._tensor" => name == REBUILD_FROM_TYPE,
            _ => false,
        }
    }

    fn call(&self, module: &str, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        Some(match (module, name) {
            ("torch._utils", n) if REBUILD_TENSOR.contains(&n) => rebuild_tensor(n, args),
            ("torch._utils", n) if REBUILD_PARAMETER.contains(&n) => args
                .first()
                .cloned()
                .ok_or_else(|| "_rebuild_parameter without data".into()),
            ("torch._utils" | "torch._tensor", REBUILD_FROM_TYPE) => rebuild_from_type(args),
            ("torch", "Size") => Ok(Value::Tuple(Rc::new(
                args.first().and_then(Value::items).unwrap_or(args.to_vec()),
            ))),
            _ => return None,
        })
    }
}

/// `_rebuild_from_type_v2(func, new_type, args, state)`: the tensor
/// `func(*args)` builds; the subclass and its state are dropped.
fn rebuild_from_type(args: &[Value]) -> Result<Value, String> {
    let [func, _ty, inner, ..] = args else {
        return Err("_rebuild_from_type_v2 needs (func, type, args, state)".into());
    };
    let inner = inner.items().ok_or("_rebuild_from_type_v2 args")?;
    let Value::Global(g) = func else {
        return Err(format!("call of: unexpected {}", func.kind()));
    };
    match TORCH.call(&g.0, &g.1, &inner) {
        Some(built) => built,
        None => Ok(Value::Opaque(g.clone())),
    }
}

/// `_rebuild_tensor*(storage, offset, size, stride, …)`: a view of the
/// storage; `_v3` names its dtype as its seventh argument.
fn rebuild_tensor(which: &str, args: &[Value]) -> Result<Value, String> {
    let [storage, offset, size, stride, ..] = args else {
        return Err(format!("{which} needs (storage, offset, size, stride, ...)"));
    };
    let Some(st) = storage.object::<StorageRef>() else {
        return Err(format!("{which}: unexpected {}", storage.kind()));
    };
    let ints = |v: &Value| -> Option<Vec<i64>> { v.items()?.iter().map(Value::as_int).collect() };
    let offset = offset
        .as_int()
        .and_then(|o| u64::try_from(o).ok())
        .ok_or("bad storage offset")?;
    let size: Vec<u64> = ints(size)
        .and_then(|v| v.into_iter().map(|d| u64::try_from(d).ok()).collect())
        .ok_or("bad tensor size")?;
    let stride = ints(stride).ok_or("bad tensor stride")?;
    if stride.len() != size.len() {
        return Err("size and stride differ in length".into());
    }
    let dtype = if which == "_rebuild_tensor_v3" {
        match args.get(6) {
            Some(Value::Global(g)) => torch_dtype(&g.1).map(str::to_string),
            _ => None,
        }
    } else {
        st.dtype.clone()
    };
    let dtype = dtype.ok_or("tensor without a known dtype")?;
    let storage = StorageRef {
        dtype: Some(dtype.clone()),
        ..st.clone()
    };
    Ok(Value::new_object(TensorRef {
        storage,
        dtype,
        offset: offset + st.view_offset,
        size,
        stride,
    }))
}

/// The key under which a TorchScript record keeps its class name.
pub const TORCHSCRIPT_CLASS: &str = "__class__";

/// TorchScript's `data.pkl` (`torch.jit.save`): `__torch__.*` classes are
/// records, never code. NEWOBJ of one makes a dict holding its
/// `__class__` name, and BUILD adds its attributes (the object's state).
/// `torch.jit._pickle`'s list builders and type tags are data too.
pub struct Records;

fn is_record_class(module: &str) -> bool {
    module == "__torch__" || module.starts_with("__torch__.")
}

impl Constructors for Records {
    fn allows(&self, module: &str, _name: &str) -> bool {
        is_record_class(module) || module == "torch.jit._pickle"
    }

    fn call(&self, module: &str, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        if is_record_class(module) {
            let class = Value::Str(format!("{module}.{name}").into());
            let record = vec![(Value::Str(TORCHSCRIPT_CLASS.into()), class)];
            return Some(Ok(Value::Dict(Rc::new(RefCell::new(record)))));
        }
        match (module, name) {
            ("torch.jit._pickle", "restore_type_tag") => Some(
                args.first()
                    .cloned()
                    .ok_or_else(|| "restore_type_tag needs a value".into()),
            ),
            ("torch.jit._pickle", n) if n.starts_with("build_") => {
                Some(Ok(Value::List(Rc::new(RefCell::new(first_items(args))))))
            }
            _ => None,
        }
    }

    fn build(&self, target: &Value, state: &Value) -> Option<Result<(), String>> {
        let (Value::Dict(d), Value::Dict(st)) = (target, state) else {
            return None;
        };
        let items = st.borrow().clone();
        d.borrow_mut().extend(items);
        Some(Ok(()))
    }
}

/// What a checkpoint's pickle may build.
pub static TORCH: Chain = Chain(&[&PYTHON, &NUMPY, &Torch]);

/// What a TorchScript archive's `data.pkl` may build: a checkpoint's, and
/// its classes as records.
pub static TORCHSCRIPT: Chain = Chain(&[&PYTHON, &NUMPY, &Torch, &Records]);
