//! Ingest pacing after a restart: the collector remembers its steady accepted rate and,
//! when it comes back, admits at most `factor` times that; the excess (every agent that
//! failed during the outage coming back at once) gets 429 and a Retry-After spread
//! uniformly over `spread` seconds, so the backlog drains at a bounded rate instead of in
//! one spike. Recovery ends once `spread` seconds pass without a paced refusal; in steady
//! operation nothing is paced (the admission queue's 429 covers saturation), so a growing
//! fleet or a discovery wave is never held to a lagging average.
//!
//! Agents cannot do this alone: each sees only its own failures, and those that failed
//! just before the collector returned retry within seconds whatever their back-off. The
//! collector sees the aggregate. The steady rate is an exponentially weighted mean of
//! accepted submissions per second (time constant [`EWMA_SECONDS`]) kept in
//! `DATA_DIR/pace.json`, so a restarted collector paces from its first second.
//!
//! Architecture Invariant: pacing refuses before the body is read or any signature is
//! checked (a refusal costs no ingest work), and it never refuses while the collector has
//! no steady rate yet (a new fleet's discovery wave is not throttled).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const PACE_FILE: &str = "pace.json";
/// Time constant of the steady-rate mean.
pub const EWMA_SECONDS: f64 = 300.0;
/// Below this steady rate (submissions/s) nothing is paced: too little history to trust.
pub const MIN_STEADY_PER_SECOND: f64 = 0.5;
/// A remembered rate older than this is not trusted after a restart.
pub const MAX_REMEMBERED_AGE_HOURS: i64 = 24;

#[derive(Debug, Clone, Copy)]
pub struct PaceConfig {
    /// Admit at most this many times the steady rate; 0 switches pacing off.
    pub factor: f64,
    /// Paced submissions are told to come back uniformly within 1..=spread seconds.
    pub spread_seconds: u64,
}

impl Default for PaceConfig {
    fn default() -> Self {
        PaceConfig {
            factor: 2.0,
            spread_seconds: 30,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    steady_per_second: f64,
    at: DateTime<Utc>,
}

#[derive(Debug)]
struct State {
    steady: f64,
    /// Accepted in the current one-second bin.
    accepted_this_second: u64,
    bin_started: Instant,
    /// Token bucket of admissions at `factor * steady` per second.
    tokens: f64,
    refilled: Instant,
    /// Pacing applies from start until recovery ends.
    recovering: bool,
    started: Instant,
    last_paced: Option<Instant>,
}

#[derive(Debug)]
pub struct Pacer {
    config: PaceConfig,
    file: Option<PathBuf>,
    state: Mutex<State>,
}

/// Why a submission was not admitted, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paced {
    pub retry_after_seconds: u64,
}

impl Pacer {
    /// A pacer that remembers its rate in `data_dir` (and starts from what is there).
    pub fn open(data_dir: &Path, config: PaceConfig, now: DateTime<Utc>) -> Pacer {
        let file = data_dir.join(PACE_FILE);
        let steady = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Remembered>(&b).ok())
            .filter(|r| {
                r.steady_per_second.is_finite()
                    && r.steady_per_second >= 0.0
                    && now - r.at < chrono::Duration::hours(MAX_REMEMBERED_AGE_HOURS)
            })
            .map(|r| r.steady_per_second)
            .unwrap_or(0.0);
        Pacer::with(config, Some(file), steady)
    }

    pub fn with(config: PaceConfig, file: Option<PathBuf>, steady: f64) -> Pacer {
        let now = Instant::now();
        Pacer {
            config,
            file,
            state: Mutex::new(State {
                steady,
                accepted_this_second: 0,
                bin_started: now,
                tokens: (config.factor * steady).max(1.0),
                refilled: now,
                // Only a collector that remembers a rate is coming back from an outage;
                // a new one (or one without history) paces nothing.
                recovering: steady >= MIN_STEADY_PER_SECOND,
                started: now,
                last_paced: None,
            }),
        }
    }

    pub fn steady_per_second(&self) -> f64 {
        self.state.lock().map(|s| s.steady).unwrap_or(0.0)
    }

    /// The admission limit now (submissions/s), or None when not pacing.
    pub fn limit(&self) -> Option<f64> {
        let Ok(s) = self.state.lock() else {
            return None;
        };
        (s.recovering && self.config.factor > 0.0 && s.steady >= MIN_STEADY_PER_SECOND)
            .then_some(self.config.factor * s.steady)
    }

    /// Admits one submission or says when to come back.
    pub fn admit(&self) -> Result<(), Paced> {
        self.admit_at(Instant::now(), rand::random::<u64>())
    }

    fn admit_at(&self, now: Instant, random: u64) -> Result<(), Paced> {
        let Ok(mut s) = self.state.lock() else {
            return Ok(());
        };
        if !s.recovering || self.config.factor <= 0.0 || s.steady < MIN_STEADY_PER_SECOND {
            return Ok(());
        }
        let spread = Duration::from_secs(self.config.spread_seconds.max(1));
        let quiet_since = s.last_paced.unwrap_or(s.started);
        if now.saturating_duration_since(s.started) >= spread
            && now.saturating_duration_since(quiet_since) >= spread
        {
            s.recovering = false;
            tracing::info!(
                steady_per_second = s.steady,
                "ingest pacing ends: the backlog after the restart has drained"
            );
            return Ok(());
        }
        let rate = self.config.factor * s.steady;
        let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
        // One second of burst: the limit is a rate, not a queue.
        s.tokens = (s.tokens + elapsed * rate).min(rate.max(1.0));
        s.refilled = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            return Ok(());
        }
        s.last_paced = Some(now);
        Err(Paced {
            retry_after_seconds: 1 + random % self.config.spread_seconds.max(1),
        })
    }

    /// Counts one accepted submission into the steady rate.
    pub fn accepted(&self) {
        self.accepted_at(Instant::now());
    }

    fn accepted_at(&self, now: Instant) {
        if let Ok(mut s) = self.state.lock() {
            Self::roll(&mut s, now);
            s.accepted_this_second += 1;
        }
    }

    /// Folds finished one-second bins into the mean (empty seconds count as zero).
    fn roll(s: &mut State, now: Instant) {
        let elapsed = now.saturating_duration_since(s.bin_started).as_secs();
        if elapsed == 0 {
            return;
        }
        let alpha = 1.0 / EWMA_SECONDS;
        s.steady += alpha * (s.accepted_this_second as f64 - s.steady);
        // Whole empty seconds after the bin, at most one time constant's worth folded.
        let empty = (elapsed - 1).min((EWMA_SECONDS * 5.0) as u64);
        s.steady *= (1.0 - alpha).powi(empty as i32);
        s.accepted_this_second = 0;
        s.bin_started += Duration::from_secs(elapsed);
    }

    /// Rolls the bins and writes the steady rate (atomically: temp file + rename).
    pub fn remember(&self, now: DateTime<Utc>) -> std::io::Result<()> {
        let steady = match self.state.lock() {
            Ok(mut s) => {
                Self::roll(&mut s, Instant::now());
                s.steady
            }
            Err(_) => return Ok(()),
        };
        metrics::gauge!("census_ingest_steady_per_second").set(steady);
        let Some(file) = &self.file else {
            return Ok(());
        };
        let tmp = file.with_extension("json.tmp");
        let body = serde_json::to_vec(&Remembered {
            steady_per_second: steady,
            at: now,
        })
        .map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, file)
    }
}

/// Remembers the rate every `every` until the process ends.
pub async fn run(pacer: std::sync::Arc<Pacer>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = pacer.remember(Utc::now()) {
            tracing::warn!(error = %e, "could not remember the ingest rate");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_history_nothing_is_paced() {
        let p = Pacer::with(PaceConfig::default(), None, 0.0);
        let t = Instant::now();
        for i in 0..10_000 {
            assert!(p.admit_at(t, i).is_ok());
        }
        assert_eq!(p.limit(), None);
    }

    #[test]
    fn a_collector_without_history_never_paces_even_once_it_has_a_rate() {
        let p = Pacer::with(PaceConfig::default(), None, 0.0);
        let t0 = Instant::now();
        for sec in 0..600u64 {
            for _ in 0..30 {
                p.accepted_at(t0 + Duration::from_secs(sec));
            }
        }
        assert!(p.steady_per_second() > 10.0);
        let later = t0 + Duration::from_secs(601);
        assert!(
            (0..5000).all(|i| p.admit_at(later, i).is_ok()),
            "a discovery wave is not paced"
        );
    }

    #[test]
    fn admits_at_most_factor_times_steady_per_second_and_spreads_the_rest() {
        let p = Pacer::with(PaceConfig::default(), None, 10.0);
        let t0 = Instant::now();
        let mut admitted = 0;
        let mut waits = std::collections::BTreeSet::new();
        // 1,000 submissions at once, then 10 more seconds of 100/s.
        for i in 0..1000u64 {
            match p.admit_at(t0, i * 7919) {
                Ok(()) => admitted += 1,
                Err(paced) => {
                    assert!((1..=30).contains(&paced.retry_after_seconds));
                    waits.insert(paced.retry_after_seconds);
                }
            }
        }
        assert!(
            admitted <= 20,
            "burst of one second at 2 x 10/s: {admitted}"
        );
        assert!(waits.len() > 10, "Retry-After is spread: {waits:?}");
        let mut later = 0;
        for ms in (10..10_000).step_by(10) {
            if p.admit_at(t0 + Duration::from_millis(ms), ms).is_ok() {
                later += 1;
            }
        }
        assert!((190..=210).contains(&later), "~20/s over 10 s: {later}");
    }

    #[test]
    fn pacing_ends_once_a_spread_passes_without_a_refusal() {
        let p = Pacer::with(PaceConfig::default(), None, 10.0);
        let t0 = Instant::now();
        assert!(
            (0..100).any(|i| p.admit_at(t0, i).is_err()),
            "paced at first"
        );
        // Within the rate for 40 s: the last refusal was at t0, so recovery ends at 30 s.
        for ms in (100..40_000).step_by(100) {
            assert!(p.admit_at(t0 + Duration::from_millis(ms), ms).is_ok());
        }
        assert_eq!(p.limit(), None);
        assert!(
            (0..1000).all(|i| p.admit_at(t0 + Duration::from_secs(41), i).is_ok()),
            "steady operation is not paced"
        );
    }

    #[test]
    fn factor_zero_switches_pacing_off() {
        let p = Pacer::with(
            PaceConfig {
                factor: 0.0,
                spread_seconds: 30,
            },
            None,
            100.0,
        );
        let t = Instant::now();
        assert!((0..10_000).all(|i| p.admit_at(t, i).is_ok()));
    }

    #[test]
    fn steady_rate_follows_accepted_submissions() {
        let p = Pacer::with(PaceConfig::default(), None, 0.0);
        let t0 = Instant::now();
        // 20 accepted per second for 20 minutes.
        for sec in 0..1200u64 {
            for _ in 0..20 {
                p.accepted_at(t0 + Duration::from_secs(sec));
            }
        }
        p.accepted_at(t0 + Duration::from_secs(1200));
        let steady = p.steady_per_second();
        assert!((19.0..=20.5).contains(&steady), "{steady}");
        // Ten silent minutes pull it down.
        p.accepted_at(t0 + Duration::from_secs(1800));
        assert!(
            p.steady_per_second() < steady * 0.2,
            "{}",
            p.steady_per_second()
        );
    }

    #[test]
    fn the_rate_survives_a_restart_but_not_a_day() {
        let dir = std::env::temp_dir().join(format!("census-pace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let now = Utc::now();
        let p = Pacer::with(PaceConfig::default(), Some(dir.join(PACE_FILE)), 12.5);
        p.remember(now).unwrap();
        let again = Pacer::open(&dir, PaceConfig::default(), now);
        assert!((again.steady_per_second() - 12.5).abs() < 0.5);
        let stale = Pacer::open(
            &dir,
            PaceConfig::default(),
            now + chrono::Duration::hours(25),
        );
        assert_eq!(stale.steady_per_second(), 0.0);
        std::fs::write(dir.join(PACE_FILE), b"{not json").unwrap();
        assert_eq!(
            Pacer::open(&dir, PaceConfig::default(), now).steady_per_second(),
            0.0
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
