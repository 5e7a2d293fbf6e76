//! The terminal progress bar: bytes, rate and ETA of the current attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_engine::Progress;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Bar {
    bar: ProgressBar,
    source: Arc<Mutex<Option<Arc<Progress>>>>,
}

impl Bar {
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {bytes:>10}/{total_bytes:<10} {bar:30} {binary_bytes_per_sec:>12}  ETA {eta:<5} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let source: Arc<Mutex<Option<Arc<Progress>>>> = Arc::default();
        let (b, s) = (bar.clone(), source.clone());
        // Redraw from the counters ten times a second.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if b.is_finished() {
                    return;
                }
                let p = s.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(p) = p {
                    let snap = p.snapshot();
                    b.set_length(snap.bytes_total);
                    b.set_position(snap.bytes_done());
                    b.set_message(format!("{}/{} files", snap.files_done, snap.files_total));
                }
            }
        });
        Bar { bar, source }
    }

    /// Follows the counters of a new attempt.
    pub fn watch(&self, p: Arc<Progress>) {
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// Bytes in human units.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// One bar per job for the agent, over the lines it prints.
pub struct Bars {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::HashMap<i64, ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Bars {
            multi: indicatif::MultiProgress::new(),
            bars: Default::default(),
        }
    }

    /// A bar for a job, following its attempts' counters.
    pub fn add(&self, job: i64, name: &str, slot: ferry_client::agent::ProgressSlot) {
        let bar = self.multi.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} {bytes:>10}/{total_bytes:<10} {bar:30} {binary_bytes_per_sec:>12}  ETA {eta:<5} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("job {job} {name}"));
        let b = bar.clone();
        tokio::spawn(async move {
            while !b.is_finished() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let p = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(p) = p {
                    let s = p.snapshot();
                    b.set_length(s.bytes_total);
                    b.set_position(s.bytes_done());
                    b.set_message(format!("{}/{} files", s.files_done, s.files_total));
                }
            }
        });
        self.bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job, bar);
    }

    pub fn remove(&self, job: i64) {
        if let Some(b) = self
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job)
        {
            b.finish_and_clear();
        }
    }

    pub fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }
}
