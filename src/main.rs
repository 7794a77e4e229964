//! modelconv: read, inspect, convert and compare model files without running
//! code they carry. This binary is thin: flags, output and exit codes; the
//! formats live in their own crates under `formats/`.

mod ckpt;
mod convert;
mod diff;
mod inspect;
mod meta;
mod progress;
mod quantize;
use modelconv::registry;
mod report;
mod scan;
mod util;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes (DESIGN.md, CLI contract).
pub const EXIT_CHECK_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
/// A broken invariant of modelconv's own code (error kind `internal`): a
/// bug to report, never a verdict on the input.
const EXIT_INTERNAL: u8 = 3;
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "modelconv",
    version,
    about = "Read, inspect, convert, quantize and compare ML model files (safetensors, GGUF, PyTorch, ONNX) without running code they carry"
)]
struct Cli {
    /// No progress bars and no informational messages on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show metadata and tensors (names, dtypes, shapes, sizes) without reading tensor data.
    #[command(
        after_help = "Examples:\n  modelconv inspect model.safetensors\n  modelconv inspect shards/ --json | jq '.tensors[].name'"
    )]
    Inspect(inspect::Args),
    /// Convert between formats, optionally selecting, renaming and casting tensors.
    #[command(after_help = "Examples:\n  modelconv convert model.safetensors model.gguf\n  \
                            modelconv convert model.gguf out.safetensors --dtype BF16 --exclude '^rope\\.'\n  \
                            modelconv convert big.safetensors out/model.safetensors --max-shard-size 5GB\n  \
                            modelconv convert model.onnx weights.safetensors\n  \
                            modelconv convert model.onnx model-fp16.onnx --dtype F16")]
    Convert(convert::Args),
    /// Compare two models tensor by tensor: max |a-b|, RMSE, cosine similarity.
    #[command(after_help = "Exit 0 when every tensor is present in both, same shape, and within\n\
                            |a-b| <= atol + rtol*|b|; 1 otherwise.\n\nExamples:\n  \
                            modelconv diff a.safetensors b.gguf\n  modelconv diff model.safetensors model-f16.safetensors --atol 1e-3 --json")]
    Diff(diff::Args),
    /// Quantize to GGUF with llama.cpp's quantizers and mixes (byte-identical to llama-quantize), or an ONNX
    /// model's weights to INT8/INT4 with DequantizeLinear.
    #[command(
        after_help = "Examples:\n  modelconv quantize model.safetensors -o model-Q4_K_M.gguf --type Q4_K_M\n  \
                            modelconv quantize model-f16.gguf --q8_0\n  \
                            modelconv quantize model.onnx -o model-int4.onnx --type INT4\n  \
                            modelconv quantize model.gguf -o out.gguf --type Q4_K_S --pure --tensor-type 'attn_v=Q8_0' --json"
    )]
    Quantize(quantize::Args),
    /// Scan files for pickles that would run code: every global each pickle names, with a verdict.
    #[command(
        after_help = "Verdicts: safe (only tensor/container constructors), suspicious (other globals,\n\
                            unreadable streams, data hidden after STOP), dangerous (code execution or system access:\n\
                            os, subprocess, builtins.eval/exec, …, EXT opcodes).\n\
                            Exit 0 when every file is safe, 1 otherwise, 2 when a path cannot be read.\n\nExamples:\n  \
                            modelconv scan model.ckpt\n  modelconv scan -r downloads/ --json | jq '.files[] | select(.verdict != \"safe\")'"
    )]
    Scan(scan::Args),
    /// Convert a PyTorch checkpoint to safetensors without running code it carries.
    #[command(
        name = "ckpt-to-safetensors",
        after_help = "Examples:\n  modelconv ckpt-to-safetensors model.ckpt                 # writes model.safetensors (the state dict)\n  \
                            modelconv ckpt-to-safetensors pytorch_model.bin -o model.safetensors\n  \
                            modelconv ckpt-to-safetensors last.ckpt --all -o everything.safetensors"
    )]
    CkptToSafetensors(ckpt::Args),
    /// Print or edit a file's metadata (GGUF keys, safetensors __metadata__) without touching its tensors.
    #[command(
        after_help = "In place when the new header ends where the old one did (only the header is\n\
                            rewritten); otherwise a copy renamed over the file. Either way an interrupted\n\
                            edit leaves the original as it was.\n\nExamples:\n  \
                            modelconv meta model.gguf\n  \
                            modelconv meta model.gguf --set general.name=Tiny --set tokenizer.ggml.eos_token_id=2\n  \
                            modelconv meta model.gguf --chat-template-file template.jinja -o fixed.gguf\n  \
                            modelconv meta model.safetensors --set format=pt --remove note --json"
    )]
    Meta(meta::Args),
    /// List the formats this build reads and writes.
    #[command(after_help = "Example:\n  modelconv formats --json")]
    Formats {
        /// Print one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script on stdout.
    #[command(
        after_help = "Examples:\n  modelconv completions bash > /etc/bash_completion.d/modelconv\n  \
                            modelconv completions zsh > \"${fpath[1]}/_modelconv\"\n  \
                            modelconv completions fish > ~/.config/fish/completions/modelconv.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout: modelconv(1), or one command's.
    #[command(
        after_help = "Examples:\n  modelconv man > /usr/local/share/man/man1/modelconv.1\n  \
                            modelconv man convert > /usr/local/share/man/man1/modelconv-convert.1"
    )]
    Man {
        /// A command (convert, quantize, …) for its own page.
        command: Option<String>,
    },
}

/// The signal that interrupted us (0: none yet).
static SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, std::sync::atomic::Ordering::SeqCst);
    modelconv_ir::request_interrupt();
}

/// Exit status for an interrupt: 128 + the signal (130 for SIGINT, 143 for SIGTERM).
fn interrupted_code() -> u8 {
    let sig = SIGNAL.load(std::sync::atomic::Ordering::SeqCst);
    if sig == 0 {
        return EXIT_INTERRUPTED;
    }
    u8::try_from(128 + sig).unwrap_or(EXIT_INTERRUPTED)
}

/// Every phase checks for an interrupt often; should one not notice within
/// a second (a long system call, a phase without checks), this ends the
/// process anyway, removing the temporary files being written.
fn start_watchdog() {
    std::thread::spawn(|| loop {
        std::thread::sleep(std::time::Duration::from_millis(25));
        if SIGNAL.load(std::sync::atomic::Ordering::SeqCst) != 0 {
            std::thread::sleep(std::time::Duration::from_millis(800));
            modelconv_ir::remove_live_temps();
            eprintln!("modelconv: interrupted; no output was written");
            std::process::exit(i32::from(interrupted_code()));
        }
    });
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        // Like other Unix tools: a closed pipe (`| head`) ends us quietly.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// The text after `--help`: exit codes and the formats in the registry.
fn after_help() -> String {
    let mut s = String::from("Exit codes: 0 ok, 1 a check failed (diff over tolerance, scan finding), 2 bad input or usage.\n\nFormats (detected from magic bytes; `modelconv formats --json` for scripts):\n");
    for f in registry::FORMATS {
        let rw = if f.writer().is_some() { "read/write" } else { "read" };
        s.push_str(&format!(
            "  {:<12} {:<10} .{}\n",
            f.name(),
            rw,
            f.extensions().join(", .")
        ));
    }
    s
}

/// The subcommand named on the command line, for error documents.
fn command_name() -> String {
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    std::env::args().skip(1).find(|a| names.contains(a)).unwrap_or_default()
}

/// Prints an error: a JSON document on stdout with `--json`, and always
/// the `modelconv: error:` line on stderr.
fn print_error(json: bool, body: report::ErrorBody) {
    if json {
        report::emit(&command_name(), &report::ErrorDoc { error: body });
        return;
    }
    eprintln!("modelconv: error: {}", util::printable(&body.message));
}

fn main() -> ExitCode {
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    let matches = match Cli::command().after_help(after_help()).try_get_matches() {
        Ok(m) => m,
        Err(e) if json && e.use_stderr() => {
            let message = e.render().to_string();
            let first = message
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_string();
            print_error(
                true,
                report::ErrorBody {
                    kind: "usage",
                    message: first,
                    path: None,
                    tensor: None,
                    offset: None,
                },
            );
            eprint!("{message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        // Usage errors start like every other error.
        Err(e) if e.use_stderr() => {
            let text = e.render().to_string();
            eprint!(
                "modelconv: {}",
                text.strip_prefix("error: ")
                    .map_or(text.clone(), |t| format!("error: {t}"))
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        Err(e) => e.exit(),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    install_signal_handlers();
    start_watchdog();
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Convert(a) => convert::run(a, cli.quiet),
        Command::Diff(a) => diff::run(a, cli.quiet),
        Command::Meta(a) => meta::run(a, cli.quiet),
        Command::Quantize(a) => quantize::run(a, cli.quiet),
        Command::CkptToSafetensors(a) => ckpt::run(a, cli.quiet),
        Command::Scan(a) => scan::run(a),
        Command::Formats { json } => formats(json),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "modelconv", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man { command } => man(command),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if matches!(
                e.downcast_ref::<modelconv_ir::Error>(),
                Some(modelconv_ir::Error::Interrupted)
            ) {
                if json {
                    print_error(true, report::ErrorBody::of(&e));
                }
                eprintln!("modelconv: interrupted; no output was written");
                return ExitCode::from(interrupted_code());
            }
            let body = report::ErrorBody::of(&e);
            if json {
                eprintln!("modelconv: error: {}", util::printable(&body.message));
            }
            let internal = body.kind == "internal";
            print_error(json, body);
            ExitCode::from(if internal { EXIT_INTERNAL } else { EXIT_BAD_INPUT })
        }
    }
}

/// The man page, from the same definition as `--help`: modelconv(1), or
/// modelconv-COMMAND(1).
fn man(command: Option<String>) -> anyhow::Result<u8> {
    let cmd = Cli::command().after_help(after_help());
    let page = match &command {
        None => clap_mangen::Man::new(cmd),
        Some(name) => {
            let sub = cmd
                .find_subcommand(name)
                .ok_or_else(|| anyhow::anyhow!("no command '{name}' (see `modelconv --help`)"))?
                .clone()
                // The page's NAME (clap names take a 'static str; this runs once).
                .name(&*Box::leak(format!("modelconv-{name}").into_boxed_str()))
                .bin_name(format!("modelconv {name}"));
            clap_mangen::Man::new(sub).title(format!("modelconv-{name}"))
        }
    };
    let mut out = Vec::new();
    page.render(&mut out)?;
    use std::io::Write;
    let _ = std::io::stdout().write_all(&out);
    Ok(0)
}

fn formats(json: bool) -> anyhow::Result<u8> {
    if json {
        let formats = registry::FORMATS
            .iter()
            .map(|f| report::FormatEntry {
                name: f.name(),
                extensions: f.extensions(),
                read: true,
                write: f.writer().is_some(),
                description: f.description(),
                options: f.options().iter().map(report::OptionEntry::of).collect(),
            })
            .collect();
        report::emit("formats", &report::FormatsDoc { formats });
        return Ok(0);
    }
    let exts: Vec<String> = registry::FORMATS
        .iter()
        .map(|f| format!(".{}", f.extensions().join(", .")))
        .collect();
    let name_w = registry::FORMATS.iter().map(|f| f.name().len()).max().unwrap_or(4);
    let ext_w = exts.iter().map(|e| e.chars().count()).max().unwrap_or(4);
    println!(
        "{:<name_w$}  {:<10}  {:<ext_w$}  DESCRIPTION",
        "FORMAT", "SUPPORT", "EXTENSIONS"
    );
    for (f, ext) in registry::FORMATS.iter().zip(&exts) {
        let rw = if f.writer().is_some() { "read/write" } else { "read" };
        println!(
            "{:<name_w$}  {:<10}  {:<ext_w$}  {}",
            f.name(),
            rw,
            ext,
            f.description()
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
