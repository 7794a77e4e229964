//! What `scan` says of a global a pickle names, and why: taken from what
//! CPython would call when it unpickles the file.
//!
//! - **safe**: what the reading format's constructors build as data, and everything
//!   `torch.load(weights_only=True)` accepts (its allowlist, listed in
//!   `weights_only.txt`: tensors, storages, every dtype, sparse and
//!   quantized tensors, `torch.device`, layouts, qschemes).
//! - **dangerous**: known code execution, file, network, import and
//!   pickle-loading entries, wherever reached: a module on the list (any
//!   submodule too), a listed function, or a protocol-4 dotted name whose
//!   attribute chain passes through a listed module or ends at a listed
//!   function (`torch.serialization.os.system`).
//! - **suspicious**: anything else: an unknown class or function runs its
//!   own code when called or built.

use crate::constructors::Constructors;
use modelconv_ir::scan::Verdict;
use std::collections::HashSet;
use std::sync::OnceLock;

/// Whole modules (and their submodules) whose globals reach code, files,
/// the network, imports or other unpicklers, with why.
const DANGEROUS_MODULES: &[(&str, &str)] = &[
    ("os", "runs commands and touches files"),
    ("posix", "runs commands and touches files"),
    ("nt", "runs commands and touches files"),
    ("subprocess", "runs commands"),
    ("_posixsubprocess", "runs commands"),
    ("pty", "runs commands"),
    ("commands", "runs commands"),
    ("platform", "runs commands (popen)"),
    ("multiprocessing", "runs code in processes"),
    ("concurrent", "runs code in workers"),
    ("asyncio", "runs commands and opens connections"),
    ("signal", "changes process signal handling"),
    ("sys", "reaches the interpreter's state and modules"),
    ("ctypes", "calls native code"),
    ("_ctypes", "calls native code"),
    ("cffi", "calls native code"),
    ("runpy", "runs code"),
    ("code", "runs code"),
    ("codeop", "compiles code"),
    ("timeit", "runs a code string"),
    ("pdb", "runs code"),
    ("bdb", "runs code"),
    ("trace", "runs code"),
    ("profile", "runs code"),
    ("cProfile", "runs code"),
    ("doctest", "runs code"),
    ("types", "builds functions and code objects"),
    ("importlib", "imports modules"),
    ("imp", "imports modules"),
    ("pkgutil", "imports modules"),
    ("zipimport", "imports modules"),
    ("pydoc", "imports modules by name"),
    ("pickle", "unpickles more data"),
    ("_pickle", "unpickles more data"),
    ("cPickle", "unpickles more data"),
    ("pickletools", "unpickles more data"),
    ("copyreg", "reaches the pickle extension registry"),
    ("copy_reg", "reaches the pickle extension registry"),
    ("dill", "unpickles more data"),
    ("cloudpickle", "unpickles more data"),
    ("joblib", "unpickles more data"),
    ("jsonpickle", "unpickles more data"),
    ("marshal", "loads code objects"),
    ("shelve", "unpickles more data"),
    ("shutil", "copies, moves and deletes files"),
    ("tempfile", "creates files"),
    ("glob", "lists files"),
    ("pathlib", "reads and writes files"),
    ("fileinput", "reads files"),
    ("io", "opens files"),
    ("_io", "opens files"),
    ("socket", "opens network connections"),
    ("ssl", "opens network connections"),
    ("urllib", "opens network connections"),
    ("urllib2", "opens network connections"),
    ("urllib3", "opens network connections"),
    ("http", "opens network connections"),
    ("httplib", "opens network connections"),
    ("requests", "opens network connections"),
    ("ftplib", "opens network connections"),
    ("smtplib", "opens network connections"),
    ("telnetlib", "opens network connections"),
    ("xmlrpc", "opens network connections"),
    ("webbrowser", "opens URLs"),
    ("pip", "installs packages"),
    ("setuptools", "runs setup code"),
    ("distutils", "runs setup code"),
    ("ensurepip", "installs packages"),
    ("venv", "creates environments"),
    ("torch.hub", "downloads and runs code"),
    ("torch.package", "loads packaged code"),
    ("torch.jit", "loads TorchScript programs"),
    ("torch.serialization", "loads further checkpoints"),
    ("torch._C", "calls native torch internals"),
    ("torch._dynamo", "compiles and runs code"),
    ("torch.utils.cpp_extension", "compiles and loads native code"),
    ("numpy.lib.npyio", "loads files that may hold pickles"),
    ("numpy.f2py", "compiles and runs code"),
    ("numpy.testing", "runs commands"),
    ("numpy.distutils", "runs setup code"),
    ("pandas.io.pickle", "unpickles more data"),
    ("keras.models", "loads models that may run code"),
    // From the peer scanners' published bypasses (picklescan 1.0.5's
    // `_unsafe_globals`, modelscan's and modelaudit's lists) and beyond.
    ("aiohttp", "opens network connections"),
    ("idlelib", "runs code (IDLE's interpreter)"),
    ("imaplib", "runs commands (IMAP4_stream) and opens connections"),
    ("poplib", "opens network connections"),
    ("nntplib", "opens network connections"),
    ("smtpd", "opens network connections"),
    ("socketserver", "opens network connections"),
    ("asyncore", "opens network connections"),
    ("asynchat", "opens network connections"),
    ("lib2to3", "unpickles grammar files"),
    ("test", "spawns Python subprocesses (test.support)"),
    ("mailcap", "runs commands (findmatch)"),
    ("_osx_support", "runs commands"),
    ("_aix_support", "runs commands"),
    ("_pyrepl", "runs code and commands (pagers)"),
    ("_sitebuiltins", "reads files and runs a pager"),
    ("site", "runs .pth code and alters imports"),
    ("_frozen_importlib", "imports modules"),
    ("_frozen_importlib_external", "imports modules and loads files"),
    ("_imp", "imports modules"),
    ("_thread", "runs code in threads"),
    ("threading", "runs code in threads"),
    ("atexit", "runs code at exit"),
    ("sched", "runs code on a schedule"),
    ("gc", "reaches every object in the interpreter"),
    ("linecache", "reads files"),
    ("tarfile", "reads and writes files"),
    ("zipfile", "reads and writes files"),
    ("sqlite3", "creates and reads database files"),
    ("dbm", "creates and reads database files"),
    ("mmap", "maps files into memory"),
    ("tkinter", "runs Tcl code (which runs commands)"),
    ("_tkinter", "runs Tcl code (which runs commands)"),
    ("logging.config", "listens on a socket and evaluates configuration"),
    ("torch._inductor", "compiles and runs code (codecache.compile_file)"),
    (
        "torch.fx",
        "generates and runs code (symbolic_shapes guards, graph modules)",
    ),
    ("torch.utils._config_module", "unpickles embedded configuration"),
    ("torch.utils.bottleneck", "runs code under profilers"),
    ("torch.utils.collect_env", "runs commands"),
    ("torch.utils.data.datapipes.utils.decoder", "unpickles embedded data"),
    ("torch.testing", "runs code"),
];

/// Single functions (module, name) that run or load code.
const DANGEROUS_FUNCTIONS: &[(&str, &str, &str)] = &[
    ("builtins", "eval", "evaluates code"),
    ("builtins", "exec", "runs code"),
    ("builtins", "execfile", "runs a file"),
    ("builtins", "compile", "compiles code"),
    ("builtins", "__import__", "imports modules"),
    ("builtins", "breakpoint", "starts a debugger"),
    ("builtins", "input", "reads the terminal"),
    ("builtins", "open", "opens files"),
    ("builtins", "file", "opens files"),
    ("builtins", "getattr", "reaches any attribute (any function)"),
    ("builtins", "setattr", "changes any attribute"),
    ("builtins", "delattr", "deletes any attribute"),
    ("builtins", "globals", "reaches the interpreter's state"),
    ("builtins", "locals", "reaches the interpreter's state"),
    ("builtins", "vars", "reaches any object's state"),
    ("builtins", "apply", "calls any function"),
    ("builtins", "memoryview", "exposes raw memory"),
    ("builtins", "type", "builds classes"),
    ("builtins", "object.__reduce_ex__", "reaches pickling internals"),
    ("operator", "attrgetter", "reaches any attribute"),
    ("operator", "methodcaller", "calls any method"),
    ("_operator", "attrgetter", "reaches any attribute"),
    ("_operator", "methodcaller", "calls any method"),
    ("functools", "partial", "calls any function"),
    ("functools", "reduce", "calls any function"),
    ("_functools", "partial", "calls any function"),
    ("_functools", "reduce", "calls any function"),
    ("torch", "load", "unpickles more data"),
    ("torch", "hub", "downloads and runs code"),
    ("torch", "compile", "compiles and runs code"),
    (
        "torch.storage",
        "_load_from_bytes",
        "calls torch.load on embedded bytes",
    ),
    ("numpy", "load", "loads files that may hold pickles"),
    ("numpy", "loads", "unpickles more data"),
    ("numpy", "fromfile", "reads files"),
    ("numpy.core.multiarray", "fromfile", "reads files"),
    ("pandas", "read_pickle", "unpickles more data"),
    ("pandas", "eval", "evaluates code"),
    ("builtins", "help", "starts a pager (which runs commands)"),
    ("operator", "itemgetter", "reaches items of any object (globals dicts)"),
    ("_operator", "itemgetter", "reaches items of any object (globals dicts)"),
    ("operator", "call", "calls any function"),
    ("_operator", "call", "calls any function"),
    ("logging", "FileHandler", "creates files"),
    ("codecs", "open", "opens files"),
    ("gzip", "open", "opens files"),
    ("bz2", "open", "opens files"),
    ("lzma", "open", "opens files"),
    ("weakref", "finalize", "calls any function when an object is freed"),
    ("uuid", "getnode", "runs commands (ifconfig, arp, netstat)"),
];

/// Last attributes of a dotted name that run or load code whatever object
/// they are reached through.
const DANGEROUS_ATTRIBUTES: &[&str] = &[
    "system",
    "popen",
    "Popen",
    "spawn",
    "spawnl",
    "spawnv",
    "execl",
    "execv",
    "execve",
    "execvp",
    "fork",
    "eval",
    "exec",
    "compile",
    "__import__",
    "import_module",
    "getattr",
    "setattr",
    "load",
    "loads",
    "open",
    "run",
    "call",
    "check_call",
    "check_output",
    "remove",
    "unlink",
    "rmtree",
    "write_text",
    "write_bytes",
    "urlopen",
    "_load_from_bytes",
    "__reduce__",
    "__reduce_ex__",
    "__getattribute__",
    "__globals__",
    "__builtins__",
    "__subclasses__",
    "__code__",
];

fn weights_only() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        include_str!("weights_only.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Python 2 names that Python 3's unpickler maps (protocol < 3).
fn python3_module(module: &str) -> &str {
    match module {
        "__builtin__" | "exceptions" => "builtins",
        "copy_reg" => "copyreg",
        "cPickle" => "pickle",
        "commands" => "subprocess",
        "urllib2" => "urllib.request",
        "httplib" => "http.client",
        other => other,
    }
}

fn module_reason(module: &str) -> Option<&'static str> {
    DANGEROUS_MODULES
        .iter()
        .find(|(m, _)| module == *m || module.strip_prefix(m).is_some_and(|rest| rest.starts_with('.')))
        .map(|(_, why)| *why)
}

fn function_reason(module: &str, name: &str) -> Option<&'static str> {
    DANGEROUS_FUNCTIONS
        .iter()
        .find(|(m, n, _)| *m == module && *n == name)
        .map(|(_, _, why)| *why)
}

/// The verdict for one global, and the reason; what `data` builds is data.
pub fn classify(module: &str, name: &str, data: &dyn Constructors) -> (Verdict, &'static str) {
    if data.allows(module, name) || weights_only().contains(format!("{module}.{name}").as_str()) {
        return (
            Verdict::Safe,
            "data: tensors, storages, dtypes and containers (torch's weights_only allowlist)",
        );
    }
    // TorchScript's typed-list builders and type tags build data only.
    if module == "torch.jit._pickle"
        && (name == "restore_type_tag" || name.starts_with("build_") && !name.contains('.'))
    {
        return (Verdict::Safe, "data: TorchScript's typed lists and type tags");
    }
    // The classes of a TorchScript module: records whose methods are the
    // archive's code/ (torch.jit.load compiles and runs it).
    if module == "__torch__" || module.starts_with("__torch__.") {
        return (
            Verdict::Suspicious,
            "a TorchScript class: torch.jit.load runs the archive's code for it",
        );
    }
    let m3 = python3_module(module);
    // uuid's private helpers run ifconfig, arp and netstat (`_get_command_stdout`).
    if m3 == "uuid" && name.starts_with('_') {
        return (Verdict::Dangerous, "runs commands (uuid's private helpers)");
    }
    if let Some(why) = module_reason(module).or_else(|| module_reason(m3)) {
        return (Verdict::Dangerous, why);
    }
    if let Some(why) = function_reason(m3, name) {
        return (Verdict::Dangerous, why);
    }
    if name.contains('.') {
        // Protocol 4 resolves a dotted name attribute by attribute: any
        // module or function along the chain is reached.
        let parts: Vec<&str> = m3.split('.').chain(name.split('.')).collect();
        for i in 1..parts.len() {
            let (head, next) = (parts[..i].join("."), parts[i]);
            let reached = format!("{head}.{next}");
            if let Some(why) = function_reason(&head, next)
                .or_else(|| module_reason(next))
                .or_else(|| module_reason(&reached))
            {
                return (Verdict::Dangerous, why);
            }
        }
        if parts.last().is_some_and(|last| DANGEROUS_ATTRIBUTES.contains(last)) {
            return (
                Verdict::Dangerous,
                "an attribute chain ending at a function that runs or loads code",
            );
        }
        return (
            Verdict::Suspicious,
            "an attribute chain through an object that is not data",
        );
    }
    (
        Verdict::Suspicious,
        "not data: a class or function that runs its own code when called or built",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constructors::PYTHON;

    #[test]
    fn verdicts_by_what_python_would_call() {
        for (m, n) in [
            ("torch.storage", "_load_from_bytes"),
            ("timeit", "timeit"),
            ("torch", "load"),
            ("torch.serialization", "load"),
            ("__builtin__", "eval"),
            ("builtins", "getattr"),
            ("torch", "serialization.os.system"),
            ("builtins", "__import__.__self__"),
            ("collections", "OrderedDict.__reduce__"),
            ("copy_reg", "_reconstructor"),
            ("os.path", "join"),
            ("pydoc", "locate"),
            ("numpy.lib.npyio", "load"),
        ] {
            assert_eq!(classify(m, n, &PYTHON).0, Verdict::Dangerous, "{m}.{n}");
        }
        for (m, n) in [
            ("torch.serialization", "_get_layout"),
            ("torch._utils", "_rebuild_sparse_tensor"),
            ("torch._utils", "_rebuild_qtensor"),
            ("torch", "device"),
            ("torch", "float8_e4m3fnuz"),
            ("torch", "per_channel_affine"),
            ("torch", "QUInt8Storage"),
            ("collections", "Counter"),
            ("collections", "OrderedDict"),
            ("torch.nn.parameter", "Parameter"),
        ] {
            assert_eq!(classify(m, n, &PYTHON).0, Verdict::Safe, "{m}.{n}");
        }
        assert_eq!(classify("__main__", "Net", &PYTHON).0, Verdict::Suspicious);
        assert_eq!(classify("uuid", "UUID", &PYTHON).0, Verdict::Suspicious);
        assert_eq!(classify("mylib", "Thing.attr", &PYTHON).0, Verdict::Suspicious);
    }

    /// Every global picklescan 1.0.5 denies (its `_unsafe_globals`, one
    /// name for each whole module), the gadgets of its GHSA advisories and
    /// of modelscan's and modelaudit's lists: dangerous here, where a
    /// global on no list would still be suspicious.
    #[test]
    fn the_peer_scanners_denylists_are_dangerous() {
        for g in [
            "__builtin__.eval",
            "__builtin__.compile",
            "__builtin__.getattr",
            "__builtin__.apply",
            "__builtin__.exec",
            "__builtin__.open",
            "__builtin__.breakpoint",
            "builtins.eval",
            "builtins.__import__",
            "cloudpickle.cloudpickle._builtin_type",
            "cloudpickle.cloudpickle._make_function",
            "cloudpickle.cloudpickle.subimport",
            "types.CodeType",
            "types.FunctionType",
            "aiohttp.ClientSession",
            "asyncio.subprocess.create_subprocess_shell",
            "bdb.Bdb.run",
            "commands.getoutput",
            "ctypes.CDLL",
            "functools.partial",
            "httplib.HTTPSConnection",
            "logging.FileHandler",
            "_io.FileIO",
            "numpy.f2py.crackfortran._eval_length",
            "numpy.testing._private.utils.runstring",
            "nt.system",
            "posix.system",
            "_operator.attrgetter",
            "_operator.itemgetter",
            "_operator.methodcaller",
            "operator.attrgetter",
            "operator.itemgetter",
            "operator.methodcaller",
            "os.system",
            "requests.api.get",
            "runpy._run_code",
            "shutil.rmtree",
            "socket.create_connection",
            "ssl.get_server_certificate",
            "subprocess.Popen",
            "sys.modules",
            "code.InteractiveInterpreter.runcode",
            "cProfile.run",
            "distutils.file_util.write_file",
            "doctest.debug_script",
            "ensurepip._run_pip",
            "idlelib.autocomplete.AutoComplete.get_entity",
            "idlelib.calltip.get_entity",
            "idlelib.debugobj.ObjectTreeItem.SetText",
            "idlelib.pyshell.ModifiedInterpreter.runcode",
            "idlelib.run.Executive.runcode",
            "imaplib.IMAP4_stream",
            "lib2to3.pgen2.grammar.Grammar.loads",
            "lib2to3.pgen2.pgen.ParserGenerator.make_label",
            "pdb.run",
            "pickle.loads",
            "_pickle.loads",
            "pip.main",
            "pkgutil.resolve_name",
            "pty.spawn",
            "profile.run",
            "pydoc.locate",
            "pydoc.pipepager",
            "test.support.script_helper.assert_python_ok",
            "timeit.timeit",
            "torch._dynamo.guards.GuardBuilder.get",
            "torch._inductor.codecache.compile_file",
            "torch.fx.experimental.symbolic_shapes.ShapeEnv.evaluate_guards_expression",
            "torch.jit.unsupported_tensor_ops.execWrapper",
            "torch.serialization.load",
            "torch.utils._config_module.ConfigModule.load_config",
            "torch.utils.bottleneck.__main__.run_cprofile",
            "torch.utils.collect_env.run",
            "torch.utils.data.datapipes.utils.decoder.basichandlers",
            "trace.Trace.run",
            "urllib.request.urlopen",
            "uuid._get_command_stdout",
            "venv.create",
            "webbrowser.open",
            "_osx_support._read_output",
            "_aix_support._read_cmd_output",
            "_pyrepl.pager.pipe_pager",
            "importlib.import_module",
            "marshal.loads",
            "mailcap.findmatch",
            "builtins.help",
            "operator.call",
            "_sitebuiltins._Printer",
            "_thread.start_new_thread",
            "weakref.finalize",
            "codecs.open",
            "tarfile.open",
            "zipfile.ZipFile",
            "gc.get_objects",
        ] {
            // However a pickle splits it into module and (protocol-4
            // dotted) name.
            for cut in 1..=g.matches('.').count() {
                let (m, n) = split_at_dot(g, cut);
                assert_eq!(classify(m, n, &PYTHON).0, Verdict::Dangerous, "{m} {n}");
            }
        }
    }

    /// `g` cut at its `cut`-th dot: (module, name).
    fn split_at_dot(g: &str, cut: usize) -> (&str, &str) {
        let at = g.match_indices('.').nth(cut - 1).map_or(0, |(i, _)| i);
        (&g[..at], &g[at + 1..])
    }
}
