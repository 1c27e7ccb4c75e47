//! Batched permutation walks, shared by permutation sampling and TMAB.
//!
//! A walk draws a permutation and removes players from the full coalition in that order; the
//! marginal of player `order[p]` is `v(after removing p players) - v(after removing p + 1)`.
//! Evaluating one prefix per game call would starve a GPU, so the engine keeps a set of walks in
//! flight and hands the game the next `chunk` prefixes of every one of them in one call, then
//! applies the truncation rule to the values in walk order. A walk that truncates mid-chunk
//! wastes at most the rest of its chunk.
//!
//! Every walk has its own draw id, so the two coalitions behind each marginal are evaluated on
//! the same examples (common random numbers). With `antithetic` on, a walk is paired with the
//! reversed permutation and one *sample* is the pair's average marginal: the pair is the
//! independent unit, so the variance (and the confidence interval) is computed on the averages.
//!
//! TMAB passes a *tracked* set: only tracked players need exact marginals, so a walk evaluates
//! just the prefixes right before and right after each tracked player's removal; untracked
//! players are still removed in order, unevaluated.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::batch::{clear_bit, full_row, CoalitionBatch};
use crate::config::Truncation;
use crate::game::{evaluate_unique, Game, GameError};
use crate::stats::Welford;

/// How the engine schedules walks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct WalkSettings {
    pub antithetic: bool,
    pub truncation: Option<Truncation>,
    pub batch_size: usize,
    /// Prefixes per walk per call; 0 = `ceil(batch_size / walks in flight)`.
    pub chunk_len: usize,
    /// Walks kept in flight at least (bounds truncation waste per call: one chunk each).
    pub min_walks: usize,
    /// Walks in flight at most (bounds memory: each holds a permutation of n players).
    pub max_walks: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Walk {
    /// Removal order.
    order: Vec<u32>,
    draw: u64,
    /// Prefix lengths (players removed) to evaluate, ascending.
    points: Vec<u32>,
    /// How many points have been evaluated and processed.
    next: usize,
    /// Value at `points[next - 1]`.
    prev: f64,
    /// Current run of at-chance steps.
    below: usize,
    truncated: bool,
    /// Marginals of the group's tracked players (0 for those cut off by truncation).
    marginals: Vec<f64>,
    /// `v(N)` and `v(empty)` on this walk's draw, when evaluated.
    first: Option<f64>,
    last: Option<f64>,
}

impl Walk {
    fn finished(&self) -> bool {
        self.truncated || self.next >= self.points.len()
    }
    fn pending(&self) -> usize {
        if self.truncated {
            0
        } else {
            self.points.len() - self.next
        }
    }
}

/// One permutation, or an antithetic pair, sharing a tracked set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Group {
    /// Sorted tracked players; `None` = every player.
    tracked: Option<Vec<u32>>,
    walks: Vec<Walk>,
}

impl Group {
    fn index_of(&self, player: u32) -> Option<usize> {
        match &self.tracked {
            None => Some(player as usize),
            Some(t) => t.binary_search(&player).ok(),
        }
    }
    fn finished(&self) -> bool {
        self.walks.iter().all(Walk::finished)
    }
}

/// The walk engine and its per-player statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct WalkEngine {
    n: usize,
    settings: WalkSettings,
    rng: ChaCha12Rng,
    groups: Vec<Group>,
    next_draw: u64,
    /// Per-player statistics of samples (pair averages when antithetic).
    pub stats: Vec<Welford>,
    /// `v(N)` over the draws of completed groups.
    pub grand: Welford,
    /// `v(empty)` over the draws of completed, untruncated walks.
    pub empty: Welford,
    pub evaluations: u64,
    pub truncated_walks: u64,
    /// Completed groups (samples per tracked player).
    pub groups_done: u64,
}

impl WalkEngine {
    pub fn new(n: usize, settings: WalkSettings, rng: ChaCha12Rng) -> Self {
        Self {
            n,
            settings,
            rng,
            groups: Vec::new(),
            next_draw: 0,
            stats: vec![Welford::default(); n],
            grand: Welford::default(),
            empty: Welford::default(),
            evaluations: 0,
            truncated_walks: 0,
            groups_done: 0,
        }
    }

    /// Walks per group.
    fn group_size(&self) -> usize {
        if self.settings.antithetic {
            2
        } else {
            1
        }
    }

    fn new_walk(&mut self, order: Vec<u32>, tracked: Option<&[u32]>) -> Walk {
        let n = self.n;
        let (points, n_tracked) = match tracked {
            None => ((0..=n as u32).collect(), n),
            Some(t) => {
                let mut pos = vec![0u32; n];
                for (p, &player) in order.iter().enumerate() {
                    pos[player as usize] = p as u32;
                }
                let mut pts: Vec<u32> = t
                    .iter()
                    .flat_map(|&player| {
                        let p = pos[player as usize];
                        [p, p + 1]
                    })
                    .collect();
                pts.sort_unstable();
                pts.dedup();
                (pts, t.len())
            }
        };
        let draw = self.next_draw;
        self.next_draw += 1;
        Walk {
            order,
            draw,
            points,
            next: 0,
            prev: 0.0,
            below: 0,
            truncated: false,
            marginals: vec![0.0; n_tracked],
            first: None,
            last: None,
        }
    }

    fn start_group(&mut self, tracked: Option<&[u32]>) {
        let mut order: Vec<u32> = (0..self.n as u32).collect();
        order.shuffle(&mut self.rng);
        let mut walks = Vec::with_capacity(2);
        if self.settings.antithetic {
            let reversed: Vec<u32> = order.iter().rev().copied().collect();
            walks.push(self.new_walk(order, tracked));
            walks.push(self.new_walk(reversed, tracked));
        } else {
            walks.push(self.new_walk(order, tracked));
        }
        self.groups.push(Group {
            tracked: tracked.map(<[u32]>::to_vec),
            walks,
        });
    }

    /// Tops up the walks in flight: at least `min_walks`, and enough pending prefixes to fill a
    /// batch, up to `max_walks`. `tracked = Some(&[])` starts nothing (nothing left to learn).
    ///
    /// A group is started only when the `remaining` budget can finish it after the walks
    /// already in flight (or when none is in flight): samples are recorded per finished group,
    /// so a walk the budget cannot finish is evaluations thrown away. Without this rule a
    /// budget of 20 n on n players started 32 walks and finished none of them.
    fn refill(&mut self, tracked: Option<&[u32]>, remaining: usize) {
        if matches!(tracked, Some(t) if t.is_empty()) {
            return;
        }
        let gs = self.group_size();
        // prefixes a new walk evaluates at most: all n + 1, or two per tracked player
        let walk_cost = match tracked {
            None => self.n + 1,
            Some(t) => (2 * t.len()).min(self.n + 1),
        };
        loop {
            let walks = self.groups.len() * gs;
            let pending: usize = self
                .groups
                .iter()
                .flat_map(|g| g.walks.iter())
                .map(Walk::pending)
                .sum();
            let enough = walks >= self.settings.min_walks && pending >= self.settings.batch_size;
            let affordable = walks == 0 || pending + gs * walk_cost <= remaining;
            if enough || !affordable || walks + gs > self.settings.max_walks.max(gs) {
                break;
            }
            self.start_group(tracked);
        }
    }

    /// One game call: advance every walk in flight by up to one chunk of prefixes, within the
    /// remaining budget. Returns the number of groups completed (samples recorded).
    pub fn step(
        &mut self,
        game: &mut dyn Game,
        budget: u64,
        tracked: Option<&[u32]>,
    ) -> Result<usize, GameError> {
        let remaining = budget.saturating_sub(self.evaluations) as usize;
        if remaining == 0 {
            return Ok(0);
        }
        self.refill(tracked, remaining);
        let unfinished = self
            .groups
            .iter()
            .flat_map(|g| g.walks.iter())
            .filter(|w| !w.finished())
            .count();
        if unfinished == 0 {
            return Ok(0);
        }
        let chunk = if self.settings.chunk_len > 0 {
            self.settings.chunk_len
        } else {
            self.settings.batch_size.div_ceil(unfinished).max(1)
        };

        // Build the batch: (group, walk, rows) in order, rows of one walk contiguous.
        let mut batch = CoalitionBatch::with_capacity(self.n, self.settings.batch_size);
        let mut plan: Vec<(usize, usize, usize)> = Vec::new();
        let mut rows_left = remaining;
        for (gi, g) in self.groups.iter().enumerate() {
            for (wi, w) in g.walks.iter().enumerate() {
                if w.finished() || rows_left == 0 {
                    continue;
                }
                let take = chunk.min(w.pending()).min(rows_left);
                rows_left -= take;
                let pts = &w.points[w.next..w.next + take];
                let mut row = full_row(self.n);
                let mut removed = 0usize;
                for &l in pts {
                    let l = l as usize;
                    for &player in &w.order[removed..l] {
                        clear_bit(&mut row, player as usize);
                    }
                    removed = l;
                    batch.push_row_unchecked(&row, w.draw);
                }
                plan.push((gi, wi, take));
            }
        }
        let evaluated = evaluate_unique(game, &batch)?;
        self.evaluations += evaluated.evaluations;

        let n = self.n;
        let truncation = self.settings.truncation;
        let mut at = 0usize;
        for (gi, wi, take) in plan {
            let values = &evaluated.values[at..at + take];
            at += take;
            let group = &mut self.groups[gi];
            for &v in values {
                let w = &group.walks[wi];
                if w.finished() {
                    break; // truncated mid-chunk: the rest of the chunk is waste
                }
                let l = w.points[w.next] as usize;
                let marginal_of = if w.next > 0 && w.points[w.next - 1] as usize + 1 == l {
                    let player = w.order[l - 1];
                    group.index_of(player).map(|j| (j, w.prev - v))
                } else {
                    None
                };
                let w = &mut group.walks[wi];
                if let Some((j, m)) = marginal_of {
                    w.marginals[j] = m;
                }
                if l == 0 {
                    w.first = Some(v);
                }
                if l == n {
                    w.last = Some(v);
                }
                if let (Some(t), true) = (truncation, l >= 1) {
                    if v - t.chance_level <= t.tolerance {
                        w.below += 1;
                    } else {
                        w.below = 0;
                    }
                    if w.below > t.patience {
                        w.truncated = true;
                    }
                }
                w.prev = v;
                w.next += 1;
            }
        }
        Ok(self.collect_finished())
    }

    /// Records the samples of every completed group, in start order, and drops those groups.
    fn collect_finished(&mut self) -> usize {
        let mut done = 0;
        let mut kept = Vec::with_capacity(self.groups.len());
        for g in std::mem::take(&mut self.groups) {
            if !g.finished() {
                kept.push(g);
                continue;
            }
            done += 1;
            let scale = 1.0 / g.walks.len() as f64;
            let n_tracked = g.walks[0].marginals.len();
            for j in 0..n_tracked {
                let player = match &g.tracked {
                    None => j,
                    Some(t) => t[j] as usize,
                };
                let sample = g.walks.iter().map(|w| w.marginals[j]).sum::<f64>() * scale;
                self.stats[player].push(sample);
            }
            for w in &g.walks {
                if let Some(v) = w.first {
                    self.grand.push(v);
                }
                if let Some(v) = w.last {
                    self.empty.push(v);
                }
                if w.truncated {
                    self.truncated_walks += 1;
                }
            }
        }
        self.groups = kept;
        self.groups_done += done as u64;
        done
    }

    /// Walks currently in flight.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.groups.iter().map(|g| g.walks.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::games::Additive;
    use rand::SeedableRng;

    fn settings(antithetic: bool, truncation: Option<Truncation>) -> WalkSettings {
        WalkSettings {
            antithetic,
            truncation,
            batch_size: 64,
            chunk_len: 0,
            min_walks: 4,
            max_walks: 16,
        }
    }

    #[test]
    fn additive_game_gives_exact_marginals() {
        let w = vec![0.5, -1.0, 2.0, 0.25, 0.0];
        let mut g = Additive::new(w.clone());
        let mut e = WalkEngine::new(5, settings(true, None), ChaCha12Rng::seed_from_u64(1));
        while e.groups_done < 10 {
            e.step(&mut g, u64::MAX, None).unwrap();
        }
        for (s, wi) in e.stats.iter().zip(&w) {
            assert!((s.mean - wi).abs() < 1e-12);
            assert!(s.variance() < 1e-20);
        }
        assert!(e.in_flight() <= 16);
    }

    #[test]
    fn tracked_walks_skip_untracked_players() {
        let w: Vec<f64> = (0..40).map(|i| i as f64).collect();
        let mut g = Additive::new(w);
        let mut e = WalkEngine::new(40, settings(false, None), ChaCha12Rng::seed_from_u64(2));
        let tracked = [3u32, 17];
        let before = e.evaluations;
        e.step(&mut g, u64::MAX, Some(&tracked)).unwrap();
        // at most 4 points per walk (2 per tracked player), deduped
        assert!(e.evaluations - before <= 16 * 4);
        while e.groups_done < 3 {
            e.step(&mut g, u64::MAX, Some(&tracked)).unwrap();
        }
        assert_eq!(e.stats[3].mean, 3.0);
        assert_eq!(e.stats[17].mean, 17.0);
        assert_eq!(e.stats[5].count, 0);
    }

    #[test]
    fn truncation_stops_walks_and_zeroes_the_rest() {
        // value = number of players present; chance 0, tolerance 2.5: after the value drops to
        // 2 the walk counts at-chance steps; patience 0 stops at the first one.
        let mut g = Additive::new(vec![1.0; 10]);
        let t = Truncation {
            chance_level: 0.0,
            tolerance: 2.5,
            patience: 0,
        };
        let mut e = WalkEngine::new(10, settings(false, Some(t)), ChaCha12Rng::seed_from_u64(3));
        while e.groups_done < 8 {
            e.step(&mut g, u64::MAX, None).unwrap();
        }
        assert!(e.truncated_walks >= 8);
        // each walk records 8 marginals of 1 and two zeros: mean 0.8 for every player
        let total: f64 = e.stats.iter().map(|s| s.mean * s.count as f64).sum();
        let count: u64 = e.stats.iter().map(|s| s.count).sum();
        assert!((total / count as f64 - 0.8).abs() < 1e-12);
    }
}
