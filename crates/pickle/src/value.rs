//! The values a pickle stream can build in our VM: plain data, names of
//! globals (never resolved to code), and the objects the constructors a
//! format plugs in build ([`Object`]: a storage, a tensor, an array).

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

/// A value a plugged-in constructor builds (see
/// the `Constructors` set of the reading format); read back with
/// [`Value::object`].
pub trait Object: Any + std::fmt::Debug {
    /// A short name of what it is, for messages (`tensor`, `ndarray`).
    fn kind(&self) -> &'static str;
}

#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in i64 (little-endian two's complement).
    BigInt(Rc<Vec<u8>>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<Vec<u8>>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Set(Rc<RefCell<Vec<Value>>>),
    /// `module.name`, only a name.
    Global(Rc<(String, String)>),
    /// What a plugged-in constructor (or a persistent id) built.
    Object(Rc<dyn Object>),
    /// An allowlisted object whose state we keep but do not interpret.
    Opaque(Rc<(String, String)>),
}

impl Value {
    /// A plugged-in object of type `T`, if this is one.
    pub fn object<T: Object>(&self) -> Option<&T> {
        match self {
            Value::Object(o) => (&**o as &dyn Any).downcast_ref::<T>(),
            _ => None,
        }
    }

    /// Wraps a plugged-in object.
    pub fn new_object(o: impl Object) -> Value {
        Value::Object(Rc::new(o))
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Items of a tuple or list.
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    /// A short name of the kind of value, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global(_) => "global",
            Value::Object(o) => o.kind(),
            Value::Opaque(_) => "object",
        }
    }
}

/// Identity of a mutable container (the only values a cycle can pass through).
pub(crate) fn mutable_id(v: &Value) -> Option<*const ()> {
    match v {
        Value::List(l) | Value::Set(l) => Some(Rc::as_ptr(l).cast()),
        Value::Dict(d) => Some(Rc::as_ptr(d).cast()),
        _ => None,
    }
}

/// Every mutable container (list, dict, set) reachable from `roots`, each
/// once, by an iterative walk (linear in what is reachable).
pub fn reachable_containers<'a>(roots: impl IntoIterator<Item = &'a Value>) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    let mut tuples = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut work: Vec<Value> = roots.into_iter().cloned().collect();
    while let Some(v) = work.pop() {
        match &v {
            Value::Tuple(t) if tuples.insert(Rc::as_ptr(t)) => work.extend(t.iter().cloned()),
            Value::List(l) | Value::Set(l) if seen.insert(Rc::as_ptr(l).cast::<()>()) => {
                work.extend(l.borrow().iter().cloned());
                out.push(v.clone());
            }
            Value::Dict(d) if seen.insert(Rc::as_ptr(d).cast::<()>()) => {
                for (k, x) in d.borrow().iter() {
                    work.push(k.clone());
                    work.push(x.clone());
                }
                out.push(v.clone());
            }
            _ => {}
        }
    }
    out
}

/// Empties containers, breaking any reference cycle through them (a list
/// appended to itself would otherwise never be freed).
pub fn clear_containers(containers: Vec<Value>) {
    for c in &containers {
        match c {
            Value::List(l) | Value::Set(l) => drop(std::mem::take(&mut *l.borrow_mut())),
            Value::Dict(d) => drop(std::mem::take(&mut *d.borrow_mut())),
            _ => {}
        }
    }
}

/// Breaks the cycles of containers reachable from `drop_roots` that are not
/// reachable from `keep`.
pub fn break_cycles<'a>(drop_roots: impl IntoIterator<Item = &'a Value>, keep: Option<&Value>) {
    let kept: std::collections::HashSet<_> = reachable_containers(keep).iter().filter_map(mutable_id).collect();
    let gone = reachable_containers(drop_roots)
        .into_iter()
        .filter(|c| mutable_id(c).is_some_and(|id| !kept.contains(&id)))
        .collect();
    clear_containers(gone);
}

/// An unpickled object that frees its containers with it: a cyclic
/// pickle's lists and dicts are emptied on drop, not leaked.
pub struct Root(pub Value);

impl Drop for Root {
    fn drop(&mut self) {
        break_cycles([&self.0], None);
    }
}

impl Root {
    /// The value, now owned by the caller (who frees its cycles).
    pub fn into_inner(mut self) -> Value {
        std::mem::replace(&mut self.0, Value::None)
    }
}

impl std::ops::Deref for Root {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0
    }
}

/// Moves the children of a container this handle owns alone onto `work`.
/// Mutable containers are emptied through their cell whenever this is the
/// last strong handle, weak handles or not (the VM keeps weak ones to every
/// container it makes; `Rc::get_mut` would refuse then, and the drop
/// would recurse).
fn take_children(v: &mut Value, work: &mut Vec<Value>) {
    match v {
        Value::List(rc) | Value::Set(rc) if Rc::strong_count(rc) == 1 => {
            if let Ok(mut items) = rc.try_borrow_mut() {
                work.append(&mut items);
            }
        }
        Value::Tuple(rc) => {
            if let Some(items) = Rc::get_mut(rc) {
                work.append(items);
            }
        }
        Value::Dict(rc) if Rc::strong_count(rc) == 1 => {
            if let Ok(mut items) = rc.try_borrow_mut() {
                for (k, x) in items.drain(..) {
                    work.push(k);
                    work.push(x);
                }
            }
        }
        _ => {}
    }
}

/// Dropping a value never recurses: a hostile pickle can nest containers
/// a million deep, and a recursive drop would overflow the stack. Children
/// of containers owned only here are moved to a worklist and dropped one
/// by one (each then has no children left).
impl Drop for Value {
    fn drop(&mut self) {
        let mut work = Vec::new();
        take_children(self, &mut work);
        while let Some(mut v) = work.pop() {
            take_children(&mut v, &mut work);
        }
    }
}
