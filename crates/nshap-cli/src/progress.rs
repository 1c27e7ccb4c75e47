//! Progress: a bar on a terminal, plain log lines otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use nshap::estimate::Progress;
use nshap::model::Players;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Reporter {
    bar: Option<ProgressBar>,
    players: Players,
    last_log: Instant,
    started: Instant,
    /// Evaluations and time at the first update: the pace is measured from there (a resumed
    /// run starts above 0, and the first batch includes warm-up).
    first: Option<(u64, Instant)>,
    estimate_printed: bool,
}

/// After this long the run's pace is measured and its duration estimated...
const ESTIMATE_AFTER: Duration = Duration::from_millis(1500);
/// ... and printed when the whole budget would take at least this long.
const ESTIMATE_WORTH_PRINTING: f64 = 20.0;

/// `90 s`, `12 min`, `3.5 h`.
fn human_duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

impl Reporter {
    pub fn new(budget: u64, players: &Players) -> Reporter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(budget);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} evals  {msg}  [{elapsed_precise}, ETA {eta}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Reporter {
            bar,
            players: players.clone(),
            last_log: Instant::now(),
            started: Instant::now(),
            first: None,
            estimate_printed: false,
        }
    }

    /// Once, early in a long run: how long the whole budget will take at the pace so far.
    fn maybe_estimate(&mut self, p: &Progress) {
        let (first, since) = *self.first.get_or_insert((p.evaluations, Instant::now()));
        let elapsed = since.elapsed();
        if self.estimate_printed || p.done || elapsed < ESTIMATE_AFTER || p.evaluations <= first {
            return;
        }
        self.estimate_printed = true;
        let rate = (p.evaluations - first) as f64 / elapsed.as_secs_f64();
        let left = p.budget.saturating_sub(p.evaluations) as f64 / rate;
        if left < ESTIMATE_WORTH_PRINTING {
            return;
        }
        let line = format!(
            "estimated time for the whole budget: about {} more ({:.0} evaluations/s so far); a top-k method stops sooner once its rule holds, and Ctrl-C saves the state",
            human_duration(left),
            rate
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn top(&self, p: &Progress) -> String {
        p.top_k
            .iter()
            .take(5)
            .map(|&i| {
                let (n, c) = self.players.label(i);
                format!("{n}#{c}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn update(&mut self, p: &Progress) {
        self.maybe_estimate(p);
        let msg = format!("active {}  top: {}", p.active, self.top(p));
        match &self.bar {
            Some(bar) => {
                bar.set_position(p.evaluations.min(p.budget));
                bar.set_message(msg);
            }
            None if self.last_log.elapsed() >= Duration::from_secs(2) || p.done => {
                eprintln!(
                    "[{:6.1}s] evaluations {}/{}  {msg}",
                    self.started.elapsed().as_secs_f64(),
                    p.evaluations,
                    p.budget
                );
                self.last_log = Instant::now();
            }
            None => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Progress of a plain count (coalitions enumerated, evaluations spent): a bar on a terminal,
/// a log line every 2 s otherwise.
pub struct Counter {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    last_log: Instant,
    started: Instant,
}

impl Counter {
    pub fn new(total: u64, what: &'static str) -> Counter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{bar:30}} {{pos}}/{{len}} {what}  [{{elapsed_precise}}, ETA {{eta}}]"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Counter {
            bar,
            what,
            total,
            last_log: Instant::now(),
            started: Instant::now(),
        }
    }

    pub fn set(&mut self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done.min(self.total)),
            None if self.last_log.elapsed() >= Duration::from_secs(2) || done >= self.total => {
                eprintln!(
                    "[{:6.1}s] {done}/{} {}",
                    self.started.elapsed().as_secs_f64(),
                    self.total,
                    self.what
                );
                self.last_log = Instant::now();
            }
            None => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
