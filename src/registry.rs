//! The one place that lists the formats. Readers are picked by probing:
//! each format scores what the registry read of the input (head and tail
//! bytes, zip entry names, the path itself, which may be a folder or a
//! prefix naming no file); the extension only breaks ties (or names the
//! format of a file too damaged to recognise, so that its reader can say
//! what is wrong).

use anyhow::{anyhow, bail, Result};
use modelconv_ir::{Format, FormatOption, Model, OpenOptions, OptionValue, Options, Probe, Stage, HEAD_LEN};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub static FORMATS: &[&dyn Format] = &[
    &modelconv_safetensors::FORMAT,
    &modelconv_gguf::FORMAT,
    &modelconv_pytorch::FORMAT,
    &modelconv_pytorch::TORCHSCRIPT,
    &modelconv_paddle::FORMAT,
    &modelconv_onnx::FORMAT,
    &modelconv_numpy::FORMAT,
    &modelconv_flax::FORMAT,
    &modelconv_tf::FORMAT,
    &modelconv_hdf5::FORMAT,
];

pub use modelconv_ir::scan::{FileReport, Verdict};

/// The formats whose scanners `scan` asks, in order: the first whose
/// container a file is reports it (a `.keras` archive before any zip,
/// which torch.load reads), then every whole-file reading runs (torch.load
/// unpickles any file that is not a zip).
pub static SCAN_ORDER: &[&dyn Format] = &[
    &modelconv_hdf5::FORMAT,
    &modelconv_pytorch::FORMAT,
    &modelconv_numpy::FORMAT,
    &modelconv_gguf::FORMAT,
    &modelconv_onnx::FORMAT,
    &modelconv_tf::FORMAT,
    &modelconv_safetensors::FORMAT,
];

/// `scan` of one file's bytes, by every format's scanner.
pub fn scan_bytes(path: &Path, bytes: &[u8]) -> FileReport {
    // Then a Hugging Face folder's chat templates (JSON and .jinja side files).
    let mut scanners: Vec<&dyn modelconv_ir::scan::Scanner> = SCAN_ORDER.iter().filter_map(|f| f.scanner()).collect();
    scanners.push(&modelconv_jinja::SIDE_FILES);
    modelconv_ir::scan::scan_file(path, bytes, &scanners)
}

/// `ckpt-to-safetensors`'s input: the PyTorch checkpoint reader.
pub fn checkpoint_format() -> &'static dyn Format {
    &modelconv_pytorch::FORMAT
}

/// Whether `format` reads PyTorch checkpoints (pickled or TorchScript).
pub fn is_checkpoint(format: &dyn Format) -> bool {
    modelconv_pytorch::is_torch_format(format.name())
}

/// A checkpoint's values that are not tensors, by dotted path, for
/// `ckpt-to-safetensors --verbose` (empty when it cannot be read again).
pub fn checkpoint_leaves(path: &Path) -> Vec<(String, String)> {
    modelconv_pytorch::non_tensor_values(path).unwrap_or_default()
}

/// `ckpt-to-safetensors`'s output.
pub fn safetensors_format() -> &'static dyn Format {
    &modelconv_safetensors::FORMAT
}

/// The format whose writer follows llama.cpp's conventions: what
/// `quantize` writes.
pub fn llama_format() -> Result<&'static dyn Format> {
    FORMATS
        .iter()
        .copied()
        .find(|f| f.writer().is_some_and(|w| w.llama_conventions()))
        .ok_or_else(|| anyhow!("this build has no llama.cpp (GGUF) writer"))
}

/// Zip entry names listed for a probe.
const MAX_ZIP_ENTRIES: usize = 4096;

pub fn by_name(name: &str) -> Result<&'static dyn Format> {
    FORMATS
        .iter()
        .copied()
        .find(|f| f.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| anyhow!("unknown format '{name}' (known: {})", names()))
}

/// `--to hf`: a Hugging Face model folder rather than a format.
pub const HF_FOLDER: &str = "hf";

/// The format a Hugging Face folder's weights are written in, and the
/// weights file's name there.
pub fn hf_folder_format() -> Result<(&'static dyn Format, &'static str)> {
    FORMATS
        .iter()
        .find_map(|f| Some((*f, f.writer()?.hf_weights_file()?)))
        .ok_or_else(|| anyhow!("no format in this build writes Hugging Face model folders"))
}

pub fn names() -> String {
    FORMATS.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
}

fn ext_matches(f: &dyn Format, path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    f.extensions().iter().any(|e| name.ends_with(&format!(".{e}")))
}

/// What the probe reads of an input.
struct Probed {
    is_dir: bool,
    is_file: bool,
    len: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
    zip_entries: Vec<String>,
}

fn probe(path: &Path) -> Result<Probed> {
    let mut p = Probed {
        is_dir: false,
        is_file: false,
        len: 0,
        head: Vec::new(),
        tail: Vec::new(),
        zip_entries: Vec::new(),
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // A prefix naming no file (a TF checkpoint): formats look beside it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(p),
        Err(e) => bail!("{}: {e}", path.display()),
    };
    if meta.is_dir() {
        p.is_dir = true;
        return Ok(p);
    }
    // Never opened when not a regular file: a FIFO would block, a device
    // could be read forever.
    let mut f = modelconv_ir::open_regular(path)?;
    p.is_file = true;
    p.len = meta.len();
    f.by_ref()
        .take(HEAD_LEN as u64)
        .read_to_end(&mut p.head)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if p.len > HEAD_LEN as u64 {
        f.seek(SeekFrom::Start(p.len - HEAD_LEN as u64))
            .and_then(|_| f.by_ref().take(HEAD_LEN as u64).read_to_end(&mut p.tail))
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    } else {
        p.tail = p.head.clone();
    }
    if p.head.starts_with(b"PK\x03\x04") || p.tail.windows(4).any(|w| w == b"PK\x05\x06") {
        if let Ok(zip) = zip::ZipArchive::new(&f) {
            p.zip_entries = zip.file_names().take(MAX_ZIP_ENTRIES).map(str::to_string).collect();
        }
    }
    Ok(p)
}

/// What a file no reader claims looks like, when its magic is one we know
/// (so it is named, instead of failing in the reader its extension picks).
fn known_other(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0, b"lmgg") || at(0, b"fmgg") || at(0, b"tjgg") {
        Some("a legacy GGML/GGMF/GGJT model (llama.cpp before GGUF); llama.cpp's convert_llama_ggml_to_gguf.py turns it into GGUF")
    } else if at(4, b"TFL3") {
        Some("a TensorFlow Lite model (.tflite), which this build does not read")
    } else if at(4, &2u32.to_le_bytes()) && at(64, &0xDEAD_BEEFu32.to_le_bytes()) {
        Some("a Core ML weight blob (an .mlpackage's weight.bin), which this build does not read")
    } else {
        None
    }
}

/// The reader that claims the probed input with the best score (the
/// extension breaking ties), if any does.
fn best_claim(path: &Path, p: &Probed) -> Option<&'static dyn Format> {
    let view = Probe {
        path,
        is_dir: p.is_dir,
        is_file: p.is_file,
        len: p.len,
        head: &p.head,
        tail: &p.tail,
        zip_entries: &p.zip_entries,
    };
    let mut best: Option<(u8, bool, &'static dyn Format)> = None;
    for &f in FORMATS {
        let s = f.score(&view);
        let e = ext_matches(f, path);
        if s > 0 && best.is_none_or(|(bs, be, _)| (s, e) > (bs, be)) {
            best = Some((s, e, f));
        }
    }
    best.map(|(_, _, f)| f)
}

/// The format `path` is in, when a reader claims it (no extension
/// fallback): for commands that read one format and want to say so.
pub fn claimed_by(path: &Path) -> Option<&'static dyn Format> {
    best_claim(path, &probe(path).ok()?)
}

/// Picks the reader for `path`.
pub fn detect(path: &Path) -> Result<&'static dyn Format> {
    let p = probe(path)?;
    if let Some(f) = best_claim(path, &p) {
        return Ok(f);
    }
    if let Some(what) = known_other(&p.head) {
        return Err(at(path, format!("format not recognised: this looks like {what}")));
    }
    if let Some(&f) = FORMATS.iter().find(|f| ext_matches(**f, path)) {
        return Ok(f);
    }
    if p.is_dir {
        return Err(at(
            path,
            format!("no model files recognised in this folder (known formats: {})", names()),
        ));
    }
    if !p.is_file {
        return Err(modelconv_ir::Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file, and no model files with this prefix",
            ),
        )
        .into());
    }
    Err(at(
        path,
        format!(
            "not a recognised model file (first bytes {:02x?}; known formats: {})",
            &p.head[..p.head.len().min(16)],
            names()
        ),
    ))
}

/// An error about the file `path` (its path in `--json` errors too).
fn at(path: &Path, msg: String) -> anyhow::Error {
    modelconv_ir::Error::malformed(path, msg).into()
}

/// The format of `path`: `--from` if given, else by detection.
pub fn input_format(path: &Path, from: Option<&str>) -> Result<&'static dyn Format> {
    match from {
        Some(name) => by_name(name),
        None => detect(path),
    }
}

/// Flags that say how an input is read: `--all` and the formats' options
/// of the open stage.
#[derive(clap::Args, Debug, Default)]
pub struct OpenArgs {
    /// Every tensor the input holds, by dotted path: checkpoints beyond the state dict (optimizer state…),
    /// ONNX Constant values too. inspect, convert and ckpt-to-safetensors take the same names.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub formats: FormatFlags<{ Stage::Open.bit() }>,
}

impl OpenArgs {
    pub fn options(&self) -> OpenOptions {
        OpenOptions {
            all: self.all,
            options: self.formats.options.clone(),
        }
    }
}

/// The command-line flags of every option the formats declare for the
/// stages in `STAGES` (a union of [`Stage::bit`]s), built from those
/// declarations: `src/` writes none of them. A name several formats share
/// is one flag, its help naming each.
#[derive(Debug, Default, Clone)]
pub struct FormatFlags<const STAGES: u8> {
    /// What was given, as the formats read it.
    pub options: Options,
}

/// The options declared for `stages`, one per name, with every format
/// that declares it (in registry order).
fn declared(stages: u8) -> Vec<(FormatOption, Vec<&'static dyn Format>)> {
    let mut out: Vec<(FormatOption, Vec<&'static dyn Format>)> = Vec::new();
    for &f in FORMATS {
        for o in f.options().iter().filter(|o| o.at(stages)) {
            match out.iter_mut().find(|(d, _)| d.name == o.name) {
                Some((_, owners)) => owners.push(f),
                None => out.push((*o, vec![f])),
            }
        }
    }
    out
}

/// One flag (two for a switch) for a declared option.
fn flags_for(opt: &FormatOption, owners: &[&'static dyn Format]) -> Vec<clap::Arg> {
    use clap::{Arg, ArgAction};
    let declarations: Vec<(&str, &FormatOption)> = owners
        .iter()
        .filter_map(|f| f.options().iter().find(|o| o.name == opt.name).map(|o| (f.name(), o)))
        .collect();
    let arg = Arg::new(opt.name).long(opt.name).help(help_of(&declarations));
    match opt.value {
        OptionValue::Flag => vec![arg.action(ArgAction::SetTrue)],
        OptionValue::Bool => vec![arg
            .value_name("BOOL")
            .value_parser(clap::value_parser!(bool))
            .num_args(0..=1)
            .default_missing_value("true")
            .action(ArgAction::Set)],
        OptionValue::Switch(off) => vec![
            arg.action(ArgAction::SetTrue).overrides_with(off),
            Arg::new(off)
                .long(off)
                .help(format!("the opposite of --{}", opt.name))
                .action(ArgAction::SetTrue)
                .overrides_with(opt.name),
        ],
        OptionValue::Value(_) => {
            // Formats sharing a name may take different values: show all.
            let mut values: Vec<&str> = Vec::new();
            for (_, o) in &declarations {
                if let OptionValue::Value(v) = o.value {
                    if !values.contains(&v) {
                        values.push(v);
                    }
                }
            }
            vec![arg.value_name(values.join("|")).action(ArgAction::Set)]
        }
    }
}

/// The help of an option: each distinct declared sentence once, after the
/// names of the formats that declare it ("pytorch, torchscript: …").
fn help_of(declarations: &[(&str, &FormatOption)]) -> String {
    let mut by_text: Vec<(Vec<&str>, &str)> = Vec::new();
    for (format, o) in declarations {
        match by_text.iter_mut().find(|(_, text)| *text == o.help) {
            Some((formats, _)) => formats.push(format),
            None => by_text.push((vec![format], o.help)),
        }
    }
    by_text
        .iter()
        .map(|(formats, text)| format!("{}: {text}.", formats.join(", ")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl<const STAGES: u8> clap::Args for FormatFlags<STAGES> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        declared(STAGES)
            .iter()
            .flat_map(|(o, owners)| flags_for(o, owners))
            .fold(cmd, |cmd, arg| cmd.arg(arg))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl<const STAGES: u8> clap::FromArgMatches for FormatFlags<STAGES> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = FormatFlags::default();
        flags.update_from_arg_matches(m)?;
        Ok(flags)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        for (o, _) in declared(STAGES) {
            let value = match o.value {
                OptionValue::Flag => m.get_flag(o.name).then(|| "true".to_string()),
                OptionValue::Bool => m.get_one::<bool>(o.name).map(bool::to_string),
                OptionValue::Switch(off) if m.get_flag(off) => Some("false".to_string()),
                OptionValue::Switch(_) => m.get_flag(o.name).then(|| "true".to_string()),
                OptionValue::Value(_) => m.get_one::<String>(o.name).cloned(),
            };
            if let Some(v) = value {
                self.options.set(o.name, v);
            }
        }
        Ok(())
    }
}

/// Opens `path` as `format`, refusing open options the format does not take.
pub fn open_as(format: &dyn Format, path: &Path, opts: &OpenOptions) -> Result<Model> {
    check_options(&opts.options, format, &[Stage::Open], "input", path)?;
    Ok(format.open(path, opts)?)
}

/// Opens `path` with `--from` if given, else by detection.
pub fn open(path: &Path, from: Option<&str>, opts: &OpenOptions) -> Result<(&'static dyn Format, Model)> {
    let f = input_format(path, from)?;
    Ok((f, open_as(f, path, opts)?))
}

/// The format to write `dest` in: `--to`, else its extension.
pub fn output_format(dest: &Path, to: Option<&str>) -> Result<&'static dyn Format> {
    let f = match to {
        Some(name) => by_name(name)?,
        None => FORMATS.iter().copied().find(|f| ext_matches(*f, dest)).ok_or_else(|| {
            anyhow!(
                "{}: cannot tell the output format from the extension; use --to ({})",
                dest.display(),
                names()
            )
        })?,
    };
    if f.writer().is_none() {
        bail!("format {} can be read but not written", f.name());
    }
    // --to and an extension that names another format disagree: a file
    // named .gguf holding safetensors would mislead every later reader.
    let claimed: Vec<&str> = FORMATS
        .iter()
        .filter(|g| ext_matches(**g, dest))
        .map(|g| g.name())
        .collect();
    if !claimed.is_empty() && !claimed.contains(&f.name()) {
        bail!(
            "{}: the extension names {}, but --to asks for {}; give the output a matching name",
            dest.display(),
            claimed.join(" or "),
            f.name()
        );
    }
    Ok(f)
}

/// Refuses format options given on the command line that `format` does
/// not take at any of `stages`, naming the formats that do.
pub fn check_options(
    given: &modelconv_ir::Options,
    format: &dyn Format,
    stages: &[Stage],
    role: &str,
    path: &Path,
) -> Result<()> {
    for (name, _) in &given.0 {
        let takes = format
            .options()
            .iter()
            .any(|o| o.name == *name && o.stages.iter().any(|s| stages.contains(s)));
        if !takes {
            let owners: Vec<&str> = FORMATS
                .iter()
                .filter(|f| f.options().iter().any(|o| o.name == *name))
                .map(|f| f.name())
                .collect();
            bail!(
                "--{name} applies to {} {role}; {} is {}",
                owners.join("/"),
                path.display(),
                format.name()
            );
        }
    }
    Ok(())
}
