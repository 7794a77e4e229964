//! A progress bar on stderr, only when stderr is a terminal, and only once
//! the job has run for a second.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use modelconv_ir::Progress;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Bar {
    bar: Option<ProgressBar>,
    start: Instant,
    shown: std::sync::atomic::AtomicBool,
}

impl Bar {
    pub fn new(total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
            if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            {
                b.set_style(style);
            }
            b
        });
        Bar {
            bar,
            start: Instant::now(),
            shown: false.into(),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn advance(&self, bytes: u64) {
        let Some(b) = &self.bar else { return };
        b.inc(bytes);
        if self.start.elapsed() > Duration::from_secs(1) && !self.shown.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            b.set_draw_target(ProgressDrawTarget::stderr());
        }
    }
}
