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
