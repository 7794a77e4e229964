//! What a pickle stream may build: the VM knows only the pickle protocol;
//! which globals a stream may name, and how calling or BUILDing one makes
//! data, is plugged in by the format that reads the stream (torch's
//! rebuild functions by the PyTorch reader, numpy's arrays by the numpy
//! engine). Python's own containers ([`PYTHON`]) are here, as the protocol
//! itself relies on them.

use crate::value::Value;
use std::cell::RefCell;
use std::rc::Rc;

/// A set of allowlisted constructors, interpreted as data builders.
pub trait Constructors: Sync {
    /// Whether a stream may name `module.name` (GLOBAL, STACK_GLOBAL).
    fn allows(&self, module: &str, name: &str) -> bool;

    /// The value `module.name(*args)` builds: `None` when the callee is
    /// not one of this set's builders (the VM then keeps an opaque object
    /// of that class), `Err` with why when the arguments are wrong.
    fn call(&self, module: &str, name: &str, args: &[Value]) -> Option<Result<Value, String>>;

    /// BUILD of `target` with `state`: `None` when `target` is not one of
    /// this set's (its state is then ignored), `Err` when the state is wrong.
    fn build(&self, _target: &Value, _state: &Value) -> Option<Result<(), String>> {
        None
    }
}

/// Several sets as one: a name is allowed when any set allows it; a call
/// or BUILD goes to the first set that takes it.
pub struct Chain(pub &'static [&'static dyn Constructors]);

impl Constructors for Chain {
    fn allows(&self, module: &str, name: &str) -> bool {
        self.0.iter().any(|c| c.allows(module, name))
    }
    fn call(&self, module: &str, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        self.0.iter().find_map(|c| c.call(module, name, args))
    }
    fn build(&self, target: &Value, state: &Value) -> Option<Result<(), String>> {
        self.0.iter().find_map(|c| c.build(target, state))
    }
}

/// Python's own builders: `collections.OrderedDict`, the builtin
/// containers and scalars, and `_codecs.encode` (how protocol 2 pickles
/// `bytes`).
pub struct Python;

/// [`Python`]'s builders.
pub static PYTHON: Python = Python;

fn is_builtins(module: &str) -> bool {
    module == "builtins" || module == "__builtin__"
}

/// The items of the first argument (a tuple or list), or none.
pub fn first_items(args: &[Value]) -> Vec<Value> {
    args.first().and_then(Value::items).unwrap_or_default()
}

impl Constructors for Python {
    fn allows(&self, module: &str, name: &str) -> bool {
        match module {
            "collections" => name == "OrderedDict",
            "_codecs" => name == "encode",
            m if is_builtins(m) => matches!(
                name,
                "set"
                    | "frozenset"
                    | "slice"
                    | "tuple"
                    | "list"
                    | "dict"
                    | "int"
                    | "float"
                    | "bool"
                    | "str"
                    | "bytes"
                    | "bytearray"
                    | "complex"
            ),
            _ => false,
        }
    }

    fn call(&self, module: &str, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let seq = |items: Vec<Value>| Rc::new(RefCell::new(items));
        Some(Ok(match (module, name) {
            ("collections", "OrderedDict") => return Some(ordered_dict(args)),
            ("_codecs", "encode") => match args.first() {
                // latin-1: each code point below 256 is one byte.
                Some(Value::Str(s)) => Value::Bytes(Rc::new(s.chars().map(|c| c as u32 as u8).collect())),
                _ => return Some(Err("_codecs.encode needs a string".into())),
            },
            (m, "slice") if is_builtins(m) => {
                Value::Tuple(Rc::new(args.first().and_then(Value::items).unwrap_or(args.to_vec())))
            }
            (m, "tuple") if is_builtins(m) => Value::Tuple(Rc::new(first_items(args))),
            (m, "list") if is_builtins(m) => Value::List(seq(first_items(args))),
            (m, "set" | "frozenset") if is_builtins(m) => Value::Set(seq(first_items(args))),
            _ => return None,
        }))
    }
}

/// `OrderedDict(items)`: a dict of the (key, value) pairs given.
fn ordered_dict(args: &[Value]) -> Result<Value, String> {
    let mut d = Vec::new();
    if let Some(items) = args.first().and_then(Value::items) {
        for it in items {
            match it.items().as_deref() {
                Some([k, v]) => d.push((k.clone(), v.clone())),
                _ => return Err("OrderedDict item is not a pair".into()),
            }
        }
    }
    Ok(Value::Dict(Rc::new(RefCell::new(d))))
}
