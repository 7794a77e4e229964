//! A pickle interpreter that builds data and nothing else. `GLOBAL` and
//! `STACK_GLOBAL` yield names; calling a name (REDUCE, NEWOBJ, INST, OBJ)
//! is allowed only for the constructors the reading format plugs in
//! ([`Constructors`]), which build data. Every length and count read is
//! checked against the bytes that remain and against limits before
//! anything is allocated.

use crate::constructors::Constructors;
use crate::text;
use crate::value::Value;
use modelconv_ir::scan::Opcodes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Limits against hostile input.
pub const MAX_STACK: usize = 1 << 20;
pub const MAX_MEMO: usize = 1 << 22;
pub const MAX_OPS: u64 = 1 << 28;
/// Values created: bounds memory (a state dict needs ~20 per tensor).
pub const MAX_OBJECTS: u64 = 1 << 25;
/// Tuples, lists, dicts and sets one stream may make: each costs about a
/// hundred bytes or more, and a checkpoint has about seven per tensor
/// (size, stride, argument and storage tuples, hooks dict, optimizer
/// state), so two million is far beyond any real one.
pub const MAX_CONTAINERS: u64 = 1 << 21;
/// Of those, lists, dicts and sets (a few hundred bytes each; about two per
/// tensor in a checkpoint: its hooks dict and its optimizer state).
pub const MAX_MUTABLE: u64 = 1 << 19;

/// What went wrong, with the byte offset of the opcode.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    pub offset: usize,
    pub msg: String,
    pub kind: PickleErrorKind,
}

/// Why a pickle was not read; the readers map each onto an IR error variant.
#[derive(Debug, Clone, PartialEq)]
pub enum PickleErrorKind {
    /// The pickle breaks a rule of the format.
    Malformed,
    /// The data ends before the pickle does.
    Truncated,
    /// A limit on opcodes, objects, stack or memo was reached.
    Limit,
    /// The pickle names this global, which is not on the allowlist.
    RefusedGlobal(String),
    /// The run was interrupted.
    Interrupted,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pickle byte {}: {}", self.offset, self.msg)
    }
}

impl PickleError {
    /// The IR error for a pickle `part` of the file at `path` could not be
    /// read: its kind by why the VM stopped.
    pub fn into_error(self, path: &std::path::Path, part: &str) -> modelconv_ir::Error {
        use modelconv_ir::Error;
        let msg = format!("{part}: {self}");
        match self.kind {
            PickleErrorKind::Interrupted => Error::Interrupted,
            _ if modelconv_ir::check_interrupt().is_err() => Error::Interrupted,
            PickleErrorKind::RefusedGlobal(global) => Error::RefusedGlobal {
                path: path.to_path_buf(),
                global,
                msg,
            },
            PickleErrorKind::Limit => Error::limit(path, msg),
            // The pickle's own bytes end early; where in the file depends on
            // the container, so the offset given is the opcode's within it.
            PickleErrorKind::Truncated => Error::truncated(path, self.offset as u64, msg),
            PickleErrorKind::Malformed => Error::malformed(path, msg),
        }
    }
}

type R<T> = Result<T, PickleError>;

/// A text argument for a message: at most 40 bytes of it.
fn arg_text(l: &[u8]) -> String {
    let cut = &l[..l.len().min(40)];
    let more = if l.len() > 40 { "…" } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(cut))
}

fn int_value(v: text::PyInt) -> Value {
    match v {
        text::PyInt::Small(i) => Value::Int(i),
        text::PyInt::Big(digits) => Value::BigInt(Rc::new(digits.into_bytes())),
    }
}

/// A Python 2 `str` (STRING, BINSTRING): Python 3 decodes it with the
/// unpickler's encoding (ASCII by default, UTF-8 under torch.load, latin-1
/// for numpy's Python 2 files): UTF-8 where it is valid, else latin-1.
fn py2_str(b: &[u8]) -> Rc<str> {
    match std::str::from_utf8(b) {
        Ok(s) => s.into(),
        Err(_) => b.iter().map(|&c| char::from(c)).collect::<String>().into(),
    }
}

/// A BINUNICODE string as CPython's unpickler decodes it: UTF-8 with
/// `surrogatepass`, so an encoded surrogate (ED A0..BF 80..BF) is a
/// character (here U+FFFD: no Rust string holds a lone surrogate), and
/// the stream goes on; anything else that is not UTF-8 is an error.
fn utf8_surrogatepass(mut b: &[u8]) -> Option<Rc<str>> {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                out.push_str(s);
                return Some(out.into());
            }
            Err(e) => {
                let (ok, rest) = b.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(ok).ok()?);
                match rest {
                    [0xed, 0xa0..=0xbf, 0x80..=0xbf, tail @ ..] => {
                        out.push('\u{fffd}');
                        b = tail;
                    }
                    _ => return None,
                }
            }
        }
    }
}

/// Resolves a persistent id (the container's storage references).
pub trait PersistentLoad {
    fn load(&mut self, pid: &Value) -> Result<Value, String>;
}

/// What scan mode records about a pickle stream.
#[derive(Debug, Default, Clone)]
pub struct ScanLog {
    /// Every distinct global named (module, name, offset of the first
    /// use), in order of first use. A pickle naming one global a million
    /// times costs one entry.
    pub globals: Vec<(String, String, usize)>,
    /// How many times each entry of `globals` is named.
    pub uses: Vec<u64>,
    index: HashMap<(String, String), usize>,
    /// Counts of opcodes of note: calls, builds, persistent ids, EXT, buffers, frames.
    pub ops: Opcodes,
}

impl ScanLog {
    /// Counts `uses` more uses of a global, first seen at `offset`.
    pub fn record(&mut self, module: &str, name: &str, offset: usize, uses: u64) {
        let key = (module.to_string(), name.to_string());
        match self.index.get(&key) {
            Some(&i) => self.uses[i] += uses,
            None => {
                self.index.insert(key, self.globals.len());
                self.globals.push((module.to_string(), name.to_string(), offset));
                self.uses.push(uses);
            }
        }
    }
}

pub struct Vm<'a, 'p> {
    /// Some in scan mode: globals are recorded, never refused.
    pub log: Option<ScanLog>,
    data: &'a [u8],
    pos: usize,
    op_at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    persistent: Option<&'p mut dyn PersistentLoad>,
    objects: u64,
    /// How frames are read: see [`Framing`].
    framing: Framing,
    /// File framing: the end of the buffered frame, while reads come from it.
    buf_end: Option<usize>,
    /// What `run` returned: its containers outlive the VM.
    result: Option<Value>,
    /// Every list, set and dict the VM made, weakly.
    created: Vec<Created>,
    /// Containers made (tuples too), against `MAX_CONTAINERS`.
    containers: u64,
    /// Made by [`Vm::scanner`]: the result is thrown away.
    scanning: bool,
    /// What the stream may name and build.
    constructors: &'static dyn Constructors,
    /// Each dict's keys, hashed (see [`DictIndex`]).
    dict_keys: HashMap<*const DictEntries, DictIndex>,
    /// Read as `joblib.load` reads (see [`crate::joblib`]): array data
    /// follows each array wrapper's BUILD.
    joblib: bool,
}

/// A container the VM made, held weakly.
enum Created {
    Seq(std::rc::Weak<RefCell<Vec<Value>>>),
    Map(std::rc::Weak<RefCell<Vec<(Value, Value)>>>),
}

/// Every container the VM made that is still alive and not part of the
/// result is emptied when the VM ends: reference cycles among them (a list
/// appended to itself, dicts holding each other, even ones an error left
/// off the stack) are freed, not leaked. A scan's result is thrown away,
/// so a scanner empties everything.
impl Drop for Vm<'_, '_> {
    fn drop(&mut self) {
        self.memo.clear();
        self.stack.clear();
        // (Not `log`: a scanner's caller takes the log before the VM ends.)
        let keep = if self.scanning { None } else { self.result.take() };
        let kept: std::collections::HashSet<*const ()> = crate::value::reachable_containers(keep.as_ref())
            .iter()
            .filter_map(crate::value::mutable_id)
            .collect();
        let gone: Vec<Value> = std::mem::take(&mut self.created)
            .into_iter()
            .filter_map(|c| match c {
                Created::Seq(w) => w.upgrade().map(Value::List),
                Created::Map(w) => w.upgrade().map(Value::Dict),
            })
            .filter(|c| crate::value::mutable_id(c).is_some_and(|id| !kept.contains(&id)))
            .collect();
        crate::value::clear_containers(gone);
        drop(keep);
        self.result = None;
    }
}

/// How reads cross the end of a FRAME. Python's unpickler differs by input:
/// from bytes (`pickle.loads`) frames change nothing; from a file object
/// without `peek` (the `io.BytesIO` torch.load wraps a zip's `data.pkl` in)
/// a FRAME buffers its bytes, and a read that runs past the buffer's end
/// drops what is left of it and reads on from the file after the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Bytes,
    File,
}

fn bad_arg(what: &str, v: &Value) -> String {
    format!("{what}: unexpected {}", v.kind())
}

impl<'a, 'p> Vm<'a, 'p> {
    /// A VM over `data` that builds what `constructors` allow, resolving
    /// persistent ids through `persistent`.
    pub fn new(
        data: &'a [u8],
        persistent: Option<&'p mut dyn PersistentLoad>,
        constructors: &'static dyn Constructors,
    ) -> Self {
        Vm {
            log: None,
            data,
            pos: 0,
            op_at: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            persistent,
            objects: 0,
            framing: Framing::Bytes,
            buf_end: None,
            result: None,
            created: Vec::new(),
            dict_keys: HashMap::new(),
            containers: 0,
            scanning: false,
            constructors,
            joblib: false,
        }
    }

    /// Reads as `joblib.load` does: past each `NumpyArrayWrapper` BUILD,
    /// the array's bytes (or its own pickle, scanned into this log).
    pub fn with_joblib(mut self) -> Self {
        self.joblib = true;
        self
    }

    /// Reads frames as Python does from a file object ([`Framing::File`]).
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// File framing: a read of `n` bytes (or of a line, `n` None) that does
    /// not fit in the buffered frame drops the rest of it.
    fn leave_frame_if_short(&mut self, n: Option<usize>) {
        let Some(end) = self.buf_end else { return };
        let fits = match n {
            Some(n) => self.pos.checked_add(n).is_some_and(|e| e <= end),
            None => self.data[self.pos..end.min(self.data.len())].contains(&b'\n'),
        };
        if !fits {
            self.pos = end.max(self.pos);
            self.buf_end = None;
        }
    }

    fn err(&self, msg: impl Into<String>) -> PickleError {
        self.err_of(PickleErrorKind::Malformed, msg)
    }
    fn err_of(&self, kind: PickleErrorKind, msg: impl Into<String>) -> PickleError {
        PickleError {
            offset: self.op_at,
            msg: msg.into(),
            kind,
        }
    }
    fn limit(&self, msg: impl Into<String>) -> PickleError {
        self.err_of(PickleErrorKind::Limit, msg)
    }

    fn take(&mut self, n: u64) -> R<&'a [u8]> {
        if self.framing == Framing::File {
            self.leave_frame_if_short(usize::try_from(n).ok());
        }
        let remaining = (self.data.len() - self.pos) as u64;
        if n > remaining {
            return Err(self.err_of(
                PickleErrorKind::Truncated,
                format!("needs {n} bytes but only {remaining} remain"),
            ));
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn le<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64)?);
        Ok(a)
    }
    /// A text-protocol argument: the bytes up to the newline (which is consumed).
    fn line_bytes(&mut self) -> R<&'a [u8]> {
        if self.framing == Framing::File {
            self.leave_frame_if_short(None);
        }
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err_of(PickleErrorKind::Truncated, "unterminated text argument"))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }
    /// A text argument Python decodes as UTF-8 (GLOBAL/INST names).
    fn line(&mut self) -> R<&'a str> {
        let b = self.line_bytes()?;
        std::str::from_utf8(b).map_err(|_| self.err("text argument is not UTF-8"))
    }
    /// A memo key of PUT/GET: `int(s, 10)`, not negative.
    fn text_key(&mut self, what: &str) -> R<u64> {
        let l = self.line_bytes()?;
        match text::py_int(l, 10) {
            Some(text::PyInt::Small(k)) if k >= 0 => Ok(k as u64),
            _ => Err(self.err(format!("bad {what} key {}", arg_text(l)))),
        }
    }
    fn pop(&mut self) -> R<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err("pop across a MARK"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }
    /// The top of the stack (a cheap clone: containers are shared and mutable).
    fn top(&self) -> R<Value> {
        self.stack.last().cloned().ok_or_else(|| self.err("stack underflow"))
    }
    fn push(&mut self, v: Value) -> R<()> {
        self.objects += 1;
        if self.objects > MAX_OBJECTS {
            return Err(self.limit(format!("more than {MAX_OBJECTS} objects")));
        }
        if self.stack.len() >= MAX_STACK {
            return Err(self.limit(format!("stack deeper than {MAX_STACK}")));
        }
        // A container made here (nothing else holds it yet): remembered, so
        // that it can be emptied when the VM ends (see `Drop`).
        let (new, made) = match &v {
            Value::List(l) | Value::Set(l) if Rc::strong_count(l) == 1 => (true, Some(Created::Seq(Rc::downgrade(l)))),
            Value::Dict(d) if Rc::strong_count(d) == 1 => (true, Some(Created::Map(Rc::downgrade(d)))),
            Value::Tuple(t) if Rc::strong_count(t) == 1 => (true, None),
            _ => (false, None),
        };
        if new {
            self.containers += 1;
            if self.containers > MAX_CONTAINERS {
                return Err(self.limit(format!("more than {MAX_CONTAINERS} tuples, lists, dicts and sets")));
            }
        }
        if let Some(c) = made {
            if self.created.len() as u64 >= MAX_MUTABLE {
                return Err(self.limit(format!("more than {MAX_MUTABLE} lists, dicts and sets")));
            }
            self.created.push(c);
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK to pop to"))?;
        if m > self.stack.len() {
            return Err(self.err("MARK above the stack"));
        }
        Ok(self.stack.split_off(m))
    }
    fn memo_put(&mut self, key: u64) -> R<()> {
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(self.limit(format!("memo larger than {MAX_MEMO}")));
        }
        let v = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| self.err("PUT on an empty stack"))?;
        self.memo.insert(key, v);
        Ok(())
    }
    fn memo_get(&mut self, key: u64) -> R<()> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.push(v)
    }
    /// A VM that records what a stream names and calls instead of
    /// refusing; `constructors` still build data, as in loading.
    pub fn scanner(data: &'a [u8], constructors: &'static dyn Constructors) -> Self {
        let mut vm = Vm::new(data, None, constructors);
        vm.log = Some(ScanLog::default());
        vm.scanning = true;
        vm
    }

    fn global(&mut self, module: &str, name: &str) -> R<Value> {
        if let Some(log) = self.log.as_mut() {
            log.record(module, name, self.op_at, 1);
            return Ok(Value::Global(Rc::new((module.to_string(), name.to_string()))));
        }
        if !self.constructors.allows(module, name) {
            let full = format!("{module}.{name}");
            let why = if module == "__main__" || name.chars().next().is_some_and(char::is_uppercase) {
                "this file pickles a Python class; it holds code, not just weights"
            } else {
                "loading it would run code named by the file"
            };
            let msg = format!("refusing global '{full}': {why}");
            return Err(self.err_of(PickleErrorKind::RefusedGlobal(full), msg));
        }
        Ok(Value::Global(Rc::new((module.to_string(), name.to_string()))))
    }

    /// Runs until STOP; returns the result.
    pub fn run(&mut self) -> R<Value> {
        let mut ops = 0u64;
        loop {
            ops += 1;
            if ops > MAX_OPS {
                return Err(self.limit(format!("more than {MAX_OPS} opcodes")));
            }
            if ops.is_multiple_of(1 << 16) && modelconv_ir::check_interrupt().is_err() {
                return Err(self.err_of(PickleErrorKind::Interrupted, "interrupted"));
            }
            self.op_at = self.pos;
            let op = self.u8()?;
            match op {
                b'.' => {
                    let v = self.pop()?;
                    self.result = Some(v.clone());
                    return Ok(v);
                }
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("pickle protocol {p} is newer than 5")));
                    }
                }
                0x95 => {
                    let len = u64::from_le_bytes(self.le()?);
                    if let Some(log) = self.log.as_mut() {
                        log.ops.frames += 1;
                    }
                    if self.framing == Framing::File {
                        // Python reads the frame's bytes (leaving a buffered
                        // frame they do not fit in), then rewinds to its start.
                        let at = self.pos;
                        self.take(len)?;
                        let start = self.pos - len as usize;
                        if self.buf_end.is_none() || start != at {
                            self.buf_end = Some(self.pos);
                        }
                        self.pos = start;
                    }
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self
                        .stack
                        .last()
                        .cloned()
                        .ok_or_else(|| self.err("DUP on an empty stack"))?;
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'I' => {
                    let l = self.line_bytes()?;
                    let v = match l {
                        b"00" => Value::Bool(false),
                        b"01" => Value::Bool(true),
                        _ => int_value(text::int_arg(l).ok_or_else(|| self.err(format!("bad INT {}", arg_text(l))))?),
                    };
                    self.push(v)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(v.into()))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(v.into()))?
                }
                b'L' => {
                    let l = self.line_bytes()?;
                    let v = text::long_arg(l).ok_or_else(|| self.err(format!("bad LONG {}", arg_text(l))))?;
                    self.push(int_value(v))?;
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        u64::from(self.u8()?)
                    } else {
                        u64::from(u32::from_le_bytes(self.le()?))
                    };
                    let b = self.take(n)?;
                    let negative = b.last().is_some_and(|&x| x & 0x80 != 0);
                    let ext = if negative { 0xffu8 } else { 0 };
                    // Fits i64 when the bytes past the eighth only repeat the sign.
                    let fits = b.len() <= 8 || (b[8..].iter().all(|&x| x == ext) && (b[7] & 0x80 != 0) == negative);
                    let v = if fits {
                        let mut a = [ext; 8];
                        let k = b.len().min(8);
                        a[..k].copy_from_slice(&b[..k]);
                        Value::Int(i64::from_le_bytes(a))
                    } else {
                        Value::BigInt(Rc::new(b.to_vec()))
                    };
                    self.push(v)?;
                }
                b'F' => {
                    let l = self.line_bytes()?;
                    let v = text::float_arg(l).ok_or_else(|| self.err(format!("bad FLOAT {}", arg_text(l))))?;
                    self.push(Value::Float(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v))?
                }
                b'S' => {
                    let l = self.line_bytes()?;
                    let b = text::string_arg(l)
                        .ok_or_else(|| self.err("STRING argument is not a quoted, escaped string"))?;
                    self.push(Value::Str(py2_str(&b)))?;
                }
                b'V' => {
                    let l = self.line_bytes()?;
                    let s = text::unicode_arg(l).ok_or_else(|| self.err("UNICODE argument: bad raw-unicode-escape"))?;
                    self.push(Value::Str(s.into()))?;
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'T' => {
                            u64::try_from(i32::from_le_bytes(self.le()?)).map_err(|_| self.err("negative length"))?
                        }
                        b'U' | b'C' => u64::from(self.u8()?),
                        b'B' => u64::from(u32::from_le_bytes(self.le()?)),
                        _ => u64::from_le_bytes(self.le()?),
                    };
                    let b = self.take(n)?;
                    let v = if matches!(op, b'T' | b'U') {
                        Value::Str(py2_str(b))
                    } else {
                        Value::Bytes(Rc::new(b.to_vec()))
                    };
                    self.push(v)?;
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => u64::from(u32::from_le_bytes(self.le()?)),
                        0x8c => u64::from(self.u8()?),
                        _ => u64::from_le_bytes(self.le()?),
                    };
                    let b = self.take(n)?;
                    let s = utf8_surrogatepass(b).ok_or_else(|| self.err("string is not valid UTF-8"))?;
                    self.push(Value::Str(s))?;
                }
                b')' => self.push(Value::Tuple(Rc::new(Vec::new())))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n || self.marks.last().is_some_and(|&m| m > self.stack.len() - n) {
                        return Err(self.err("TUPLE needs more items"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                b']' => self.push(Value::List(Rc::new(RefCell::new(Vec::new()))))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(RefCell::new(items))))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    match &self.top()? {
                        Value::List(l) => l.borrow_mut().push(v),
                        other if self.log.is_none() => return Err(self.err(bad_arg("APPEND", other))),
                        _ => {}
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match &self.top()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        other if self.log.is_none() => return Err(self.err(bad_arg("APPENDS", other))),
                        _ => {}
                    }
                }
                b'}' => self.push(Value::Dict(Rc::new(RefCell::new(Vec::new()))))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = self.pairs(items)?;
                    // dict(items): a repeated key keeps its last value.
                    self.push(Value::Dict(Rc::new(RefCell::new(Vec::new()))))?;
                    self.set_items(d)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.set_items(pairs)?;
                }
                0x8f => self.push(Value::Set(Rc::new(RefCell::new(Vec::new()))))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    match &self.top()? {
                        Value::Set(s) => s.borrow_mut().extend(items),
                        other if self.log.is_none() => return Err(self.err(bad_arg("ADDITEMS", other))),
                        _ => {}
                    }
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::Set(Rc::new(RefCell::new(items))))?;
                }
                b'p' => {
                    let k = self.text_key("PUT")?;
                    self.memo_put(k)?;
                }
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put(k.into())?
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.le()?);
                    self.memo_put(k.into())?
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'g' => {
                    let k = self.text_key("GET")?;
                    self.memo_get(k)?;
                }
                b'h' => {
                    let k = self.u8()?;
                    self.memo_get(k.into())?
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.le()?);
                    self.memo_get(k.into())?
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    let g = self.global(&module, &name)?;
                    self.push(g)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.as_str(), name.as_str()) {
                        (Some(m), Some(n)) => {
                            let g = self.global(m, n)?;
                            self.push(g)?;
                        }
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let args = args
                        .items()
                        .ok_or_else(|| self.err(bad_arg("REDUCE arguments", &args)))?;
                    let v = self.call(&f, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = args
                        .items()
                        .ok_or_else(|| self.err(bad_arg("NEWOBJ arguments", &args)))?;
                    let v = self.call(&cls, args)?;
                    self.push(v)?;
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = args
                        .items()
                        .ok_or_else(|| self.err(bad_arg("NEWOBJ_EX arguments", &args)))?;
                    let v = self.call(&cls, args)?;
                    self.push(v)?;
                }
                b'i' => {
                    // Python's C unpickler finds the MARK before it reads the
                    // names (a text file starting "import" names nothing).
                    if self.marks.is_empty() {
                        return Err(self.err("INST without a MARK"));
                    }
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    let g = self.global(&module, &name)?;
                    let args = self.pop_mark()?;
                    let v = self.call(&g, args)?;
                    self.push(v)?;
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.err("OBJ without a class"));
                    }
                    let cls = items.remove(0);
                    let v = self.call(&cls, items)?;
                    self.push(v)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.pop()?;
                    let v = self.build(target, state)?;
                    self.push(v)?;
                }
                b'P' => {
                    let l = self.line()?;
                    let pid = Value::Str(l.into());
                    let v = self.persistent_load(&pid)?;
                    self.push(v)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(&pid)?;
                    self.push(v)?;
                }
                0x82..=0x84 if self.log.is_some() => {
                    let n = [1u64, 2, 4][(op - 0x82) as usize];
                    self.take(n)?;
                    if let Some(log) = self.log.as_mut() {
                        log.ops.ext += 1;
                    }
                    self.push(Value::Opaque(Rc::new(("copyreg".into(), "extension".into()))))?;
                }
                0x82..=0x84 => return Err(self.err("EXT opcodes (the copyreg extension registry) name code; refused")),
                0x97 | 0x98 if self.log.is_some() => {
                    if let Some(log) = self.log.as_mut() {
                        log.ops.buffers += 1;
                    }
                    if op == 0x97 {
                        self.push(Value::Bytes(Rc::new(Vec::new())))?;
                    }
                }
                0x97 | 0x98 => return Err(self.err("out-of-band buffers (NEXT_BUFFER) are not supported")),
                other => return Err(self.err(format!("unknown opcode 0x{other:02x}"))),
            }
        }
    }

    /// Bytes consumed so far (where the next pickle of a legacy file starts).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Where a file object would stand after this pickle: with file
    /// framing, past the whole buffered frame (Python read all of it), so
    /// a following `pickle.load` starts there, not after the STOP.
    pub fn file_position(&self) -> usize {
        match (self.framing, self.buf_end) {
            (Framing::File, Some(end)) => end.max(self.pos),
            _ => self.pos,
        }
    }

    fn pairs(&self, items: Vec<Value>) -> R<Vec<(Value, Value)>> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of dict items"));
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> R<()> {
        let d = match &self.top()? {
            Value::Dict(d) => d.clone(),
            other if self.log.is_none() => return Err(self.err(bad_arg("SETITEM(S)", other))),
            _ => return Ok(()),
        };
        let index = self
            .dict_keys
            .entry(Rc::as_ptr(&d).cast())
            .or_insert_with(|| DictIndex::new(&d));
        let mut entries = d.borrow_mut();
        index.sync(&entries);
        for (k, v) in pairs {
            // Python overwrites a repeated key; hashed, so that many
            // SETITEMs over many keys stay linear.
            match DictKey::of(&k).map(|key| index.slots.entry(key)) {
                Some(std::collections::hash_map::Entry::Occupied(slot)) => entries[*slot.get()].1 = v,
                Some(std::collections::hash_map::Entry::Vacant(slot)) => {
                    slot.insert(entries.len());
                    entries.push((k, v));
                }
                None => entries.push((k, v)),
            }
        }
        index.len = entries.len();
        Ok(())
    }

    fn persistent_load(&mut self, pid: &Value) -> R<Value> {
        if let Some(log) = self.log.as_mut() {
            log.ops.persistent_ids += 1;
            return Ok(Value::Opaque(Rc::new(("persistent".into(), "id".into()))));
        }
        let op_at = self.op_at;
        match self.persistent.as_mut() {
            Some(p) => p.load(pid).map_err(|msg| PickleError {
                offset: op_at,
                msg,
                kind: PickleErrorKind::Malformed,
            }),
            None => Err(self.err("persistent id outside a checkpoint container")),
        }
    }

    /// Calls an allowlisted constructor as a data builder (in scan mode:
    /// counts the call; whatever the callee, the result is opaque data).
    fn call(&mut self, f: &Value, args: Vec<Value>) -> R<Value> {
        if let Some(log) = self.log.as_mut() {
            log.ops.calls += 1;
            // Allowlisted constructors still build data (so containers fill
            // as in loading); anything else, or a failed build, is opaque.
            let name = match f {
                Value::Global(g) => g.clone(),
                _ => Rc::new(("?".into(), "?".into())),
            };
            if self.joblib && (name.0.as_str(), name.1.as_str()) == crate::joblib::DTYPE {
                if let Some(d) = crate::joblib::Dtype::value_of(&args) {
                    return Ok(d);
                }
            }
            if self.constructors.allows(&name.0, &name.1) {
                if let Ok(v) = self.call_builder(f, args) {
                    return Ok(v);
                }
            }
            return Ok(Value::Opaque(name));
        }
        self.call_builder(f, args)
    }

    fn call_builder(&mut self, f: &Value, args: Vec<Value>) -> R<Value> {
        let Value::Global(g) = f else {
            return Err(self.err(bad_arg("call of", f)));
        };
        match self.constructors.call(&g.0, &g.1, &args) {
            Some(built) => built.map_err(|msg| self.err(msg)),
            None => Ok(Value::Opaque(g.clone())),
        }
    }

    /// BUILD: an object a constructor made gets its state; others keep theirs opaque.
    fn build(&mut self, target: Value, state: Value) -> R<Value> {
        if let Some(log) = self.log.as_mut() {
            log.ops.builds += 1;
            if self.joblib {
                self.joblib_build(&target, &state)?;
            }
            return Ok(target);
        }
        if let Some(built) = self.constructors.build(&target, &state) {
            built.map_err(|msg| self.err(msg))?;
        }
        Ok(target)
    }
}

impl Vm<'_, '_> {
    /// joblib's reading of a BUILD: a dtype keeps its state; an array
    /// wrapper is followed by its data, skipped (raw) or scanned (a pickle
    /// of its own, by a plain unpickler from the same file).
    fn joblib_build(&mut self, target: &Value, state: &Value) -> R<()> {
        if let Some(d) = target.object::<crate::joblib::Dtype>() {
            d.set_state(state);
            return Ok(());
        }
        let Value::Opaque(g) = target else { return Ok(()) };
        if (g.0.as_str(), g.1.as_str()) != crate::joblib::WRAPPER {
            return Ok(());
        }
        // joblib writes the data after a committed frame, and reads it from
        // the file: array bytes inside a frame would be read from elsewhere.
        if let Some(end) = self.buf_end.take() {
            if self.pos < end {
                return Err(self.err("array data inside a frame (joblib reads it from after the frame)"));
            }
        }
        match crate::joblib::array_of(state).map_err(|m| self.err(m))? {
            crate::joblib::Array::Raw { align, bytes } => {
                if align {
                    let pad = self.u8()?;
                    self.take(u64::from(pad))?;
                }
                self.take(bytes)?;
            }
            crate::joblib::Array::Pickle => self.scan_inner_pickle()?,
        }
        Ok(())
    }

    /// An object array's own pickle, at the current position: its globals
    /// and opcodes join this stream's log; reading goes on after it.
    fn scan_inner_pickle(&mut self) -> R<()> {
        let start = self.pos;
        let mut inner = Vm::scanner(&self.data[start..], self.constructors).with_framing(Framing::File);
        let result = inner.run();
        let log = inner.log.take().unwrap_or_default();
        let end = inner.file_position();
        if let Some(own) = self.log.as_mut() {
            for ((m, n, at), uses) in log.globals.iter().zip(&log.uses) {
                own.record(m, n, start + at, *uses);
            }
            own.ops.calls += log.ops.calls;
            own.ops.builds += log.ops.builds;
            own.ops.persistent_ids += log.ops.persistent_ids;
            own.ops.ext += log.ops.ext;
            own.ops.buffers += log.ops.buffers;
            own.ops.frames += log.ops.frames;
        }
        if let Err(mut e) = result {
            e.offset += start;
            e.msg = format!("in an object array's pickle: {}", e.msg);
            return Err(e);
        }
        self.pos = start + end;
        Ok(())
    }
}

/// Dict keys compare as their Python values would (strings and ints).
/// A dict key the VM compares as Python does (strings and ints; other
/// keys are kept as given).
#[derive(Hash, PartialEq, Eq)]
enum DictKey {
    Str(Rc<str>),
    Int(i64),
}

impl DictKey {
    fn of(v: &Value) -> Option<DictKey> {
        match v {
            Value::Str(s) => Some(DictKey::Str(s.clone())),
            Value::Int(i) => Some(DictKey::Int(*i)),
            _ => None,
        }
    }
}

type DictEntries = RefCell<Vec<(Value, Value)>>;

/// Where each key of one dict sits. The weak reference keeps the dict's
/// allocation, so its address (the index's key) is never reused.
struct DictIndex {
    _alive: std::rc::Weak<DictEntries>,
    /// The dict's length when last indexed: a change elsewhere rebuilds.
    len: usize,
    slots: HashMap<DictKey, usize>,
}

impl DictIndex {
    fn new(d: &Rc<DictEntries>) -> DictIndex {
        DictIndex {
            _alive: Rc::downgrade(d),
            len: usize::MAX,
            slots: HashMap::new(),
        }
    }

    fn sync(&mut self, entries: &[(Value, Value)]) {
        if self.len == entries.len() {
            return;
        }
        self.slots.clear();
        for (i, (k, _)) in entries.iter().enumerate() {
            if let Some(key) = DictKey::of(k) {
                self.slots.insert(key, i);
            }
        }
        self.len = entries.len();
    }
}
