//! The agent's life: enroll once, then collect -> sign -> spool -> deliver, on a schedule.
//!
//! One run: collect the inventory; if the spool is empty and the content hash equals the
//! last acknowledged one, send a signed heartbeat; otherwise reserve a seq (durably), sign
//! the zstd body — a protocol-v2 delta against the latest inventory spooled (the tip),
//! or the whole snapshot when there is no tip or the collector speaks only v1 — put it in
//! the spool, and deliver the spool in seq order. A 429/503 or a network error stops
//! delivery until the back-off (full jitter, capped, or the collector's Retry-After)
//! expires; a final refusal (tampered file, revoked agent) is logged and the file dropped
//! so one bad snapshot never blocks the rest. A delta the collector cannot apply (its base
//! is not what the collector holds: 409 delta-base-mismatch; or no v2 route: 404) drops
//! the deltas chained on it and spools the tip as a full snapshot, without a person.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use census_shared::delta::Delta;
use census_shared::envelope;
use census_shared::protocol::{
    EnrollRequest, Heartbeat, IdentityFacts, DELTAS_PATH, HEARTBEAT_PATH,
    PROBLEM_DELTA_BASE_MISMATCH, SNAPSHOTS_PATH,
};
use chrono::Utc;

use crate::config::AgentConfig;
use crate::probe::{self, SectionName};
use crate::schedule::{splay_for, Schedule};
use crate::spool::{Spool, SpoolEntry, SpoolHeader, SpoolKind};
use crate::state::{Enrollment, LastAck, Protocol, Refusal, StateDir, Status, Tip};
use crate::transport::{self, Client, Delivery, Trust};

/// Where state lives unless `--state-dir` says otherwise.
pub fn default_state_dir() -> PathBuf {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/var/lib/census-agent");
        }
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(xdg).join("census-agent");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".local/state/census-agent");
    }
    PathBuf::from("census-agent-state")
}

fn facts_of(snap: &census_shared::Snapshot) -> IdentityFacts {
    let system = snap.system.data();
    let os = snap.os.data();
    IdentityFacts {
        hostname: os.map(|o| o.hostname.clone()).unwrap_or_default(),
        fqdn: os.and_then(|o| o.fqdn.clone()),
        machine_id: system.and_then(|s| s.machine_id.clone()),
        vendor: system.and_then(|s| s.vendor.clone()),
        serial: system.and_then(|s| s.serial.clone()),
        system_uuid: system.and_then(|s| s.uuid.clone()),
        macs: snap
            .network_interfaces
            .data()
            .map(|n| {
                n.iter()
                    .filter(|i| i.physical)
                    .filter_map(|i| i.mac.clone())
                    .collect()
            })
            .unwrap_or_default(),
        os: os.and_then(|o| o.name.clone()),
    }
}

/// Enrolls this machine: key pair (0600), token, pinned CA.
pub async fn enroll(
    state: &StateDir,
    server: &str,
    token: &str,
    trust: Trust,
    force: bool,
    timeout: Duration,
) -> Result<Enrollment> {
    let _lock = state.lock()?;
    if let Some(existing) = state.enrollment()? {
        if !force {
            bail!("already enrolled as {} with {}; pass --force to enroll again (a new key and agent id)", existing.agent_id, existing.server);
        }
        state.reset_key()?;
    }
    let client = Client::new(server, trust, timeout)?;
    let key = state.key_pair()?;
    let facts = facts_of(&probe::collect(&[
        SectionName::System,
        SectionName::Os,
        SectionName::Network,
    ]));
    let req = EnrollRequest {
        token: token.trim().to_string(),
        public_key: key.public().to_text(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        facts,
    };
    let resp = client.enroll(&req).await?;
    let ca = client
        .trusted_ca()
        .context("the handshake completed without a pinned CA")?;
    let enrollment = Enrollment {
        agent_id: resp.agent_id,
        server: client.server.clone(),
        ca_pem: transport::der_to_pem(ca.as_ref()),
        ca_fingerprint: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ca.as_ref())),
        enrolled_at: Utc::now(),
    };
    // A new identity starts a new seq line and a new content baseline.
    state.reset_seq()?;
    state.clear_last_ack()?;
    state.clear_tip()?;
    for p in Spool::new(&state.spool_dir(), usize::MAX, u64::MAX).paths()? {
        let _ = std::fs::remove_file(p);
    }
    state.save_enrollment(&enrollment)?;
    tracing::info!(agent_id = %enrollment.agent_id, server = %enrollment.server, ca_fingerprint = %enrollment.ca_fingerprint, "enrolled");
    Ok(enrollment)
}

/// The result of one collection-and-delivery run.
#[derive(Debug, Default)]
pub struct RunReport {
    pub heartbeat: bool,
    pub spooled_seq: Option<u64>,
    /// The spooled inventory went as a delta.
    pub spooled_delta: bool,
    /// Full snapshots spooled because a delta could not be applied: (its seq, why).
    pub resent_full: Vec<(u64, String)>,
    /// Seqs delivered, with what they were.
    pub delivered: Vec<(u64, SpoolKind)>,
    pub refused: Vec<(u64, u16, String)>,
    /// The collector refused the agent itself (401 or 403) and took nothing after that.
    pub standing_refusal: Option<Refusal>,
    pub retry: Option<(Option<Duration>, String)>,
    pub pending: usize,
}

impl RunReport {
    /// Records in `status` a run that did not end in "retry later".
    fn settle(&self, status: &mut Status) {
        match &self.standing_refusal {
            Some(refusal) => {
                status.consecutive_failures += 1;
                status.last_error = Some(refusal.to_string());
                status.refused = Some(refusal.clone());
            }
            None => {
                status.consecutive_failures = 0;
                status.last_error = None;
                if self.heartbeat || !self.delivered.is_empty() {
                    status.last_success = Some(Utc::now());
                    status.refused = None;
                }
            }
        }
    }
}

pub struct Agent {
    pub state: StateDir,
    /// Exclusive use of the state directory for as long as this agent lives.
    _lock: crate::state::StateLock,
    pub config: AgentConfig,
    pub enrollment: Enrollment,
    pub client: Client,
    /// Network flows sampled between inventories; each inventory drains it.
    pub sampler: Arc<probe::connections::Sampler>,
}

impl Agent {
    pub fn open(state_dir: &Path, config: AgentConfig) -> Result<Agent> {
        let state = StateDir::open(state_dir)?;
        let lock = state.lock()?;
        let enrollment = state.require_enrollment()?;
        let client = Client::new(
            &enrollment.server,
            Trust::CaPem(enrollment.ca_pem.clone()),
            Duration::from_secs(config.request_timeout_seconds),
        )?;
        Ok(Agent {
            state,
            _lock: lock,
            config,
            enrollment,
            client,
            sampler: Arc::default(),
        })
    }

    /// Applies a reloaded configuration without giving up the state directory.
    pub fn reconfigure(&mut self, config: AgentConfig) -> Result<()> {
        self.client = Client::new(
            &self.enrollment.server,
            Trust::CaPem(self.enrollment.ca_pem.clone()),
            Duration::from_secs(config.request_timeout_seconds),
        )?;
        self.config = config;
        Ok(())
    }

    fn spool(&self) -> Spool {
        Spool::new(
            &self.state.spool_dir(),
            self.config.spool_max_files,
            self.config.spool_max_bytes,
        )
    }

    /// Collects now and delivers what is waiting.
    pub async fn run_once(&self) -> Result<RunReport> {
        let sections = self.config.section_names().map_err(anyhow::Error::msg)?;
        let mut report = RunReport::default();
        let sampler = self.sampler.clone();
        let mut snap =
            tokio::task::spawn_blocking(move || probe::collect_with(&sections, &sampler)).await?;
        snap.canonicalize_order();
        let hash = snap.content_hash();
        let last = self.state.last_ack()?;
        let spool = self.spool();
        if spool.paths()?.is_empty() && !last.content_hash.is_empty() && last.content_hash == hash {
            match self.send_heartbeat(&hash).await? {
                HeartbeatOutcome::Done => {
                    report.heartbeat = true;
                    return Ok(report);
                }
                HeartbeatOutcome::ResendFull => {
                    tracing::info!("collector asked for a full snapshot");
                    self.state.clear_tip()?;
                }
                HeartbeatOutcome::Retry(after, reason) => {
                    report.retry = Some((after, reason));
                    return Ok(report);
                }
            }
        }
        let (seq, delta) = self.spool_inventory(snap, &hash)?;
        report.spooled_seq = Some(seq);
        report.spooled_delta = delta;
        self.deliver(&mut report).await?;
        Ok(report)
    }

    /// Whether to send deltas: the collector has not answered one with 404 in the last day.
    fn deltas_enabled(&self) -> Result<bool> {
        Ok(match self.state.protocol()?.deltas_unsupported_at {
            Some(at) => Utc::now() - at > chrono::Duration::days(1),
            None => true,
        })
    }

    /// Spools `snap` (canonical order) as a delta against the tip when there is one and
    /// deltas are enabled, whole otherwise; it becomes the tip. Returns (seq, was a delta).
    fn spool_inventory(
        &self,
        mut snap: census_shared::Snapshot,
        hash: &str,
    ) -> Result<(u64, bool)> {
        let seq = self.state.next_seq()?;
        snap.agent_id = self.enrollment.agent_id.clone();
        snap.seq = seq;
        snap.check_limits()
            .context("this machine's inventory exceeds the protocol limits")?;
        let delta = match self.state.tip() {
            Some(tip) if self.deltas_enabled()? && tip.seq < seq => {
                let d = Delta::between(&tip.snapshot, tip.seq, &snap);
                (d.ops() <= census_shared::delta::MAX_DELTA_OPS).then_some(d)
            }
            _ => None,
        };
        let key = self.state.key_pair()?;
        let (kind, base_seq, body, signature) = match &delta {
            Some(d) => {
                let body = census_shared::wire::encode_delta(d)?;
                let sig = envelope::sign(
                    key.signing_key(),
                    &envelope::delta_fields(&snap.agent_id, seq, &body),
                )?;
                (SpoolKind::Delta, Some(d.base_seq), body, sig)
            }
            None => {
                let body = census_shared::wire::encode_body(&snap)?;
                let sig = envelope::sign(
                    key.signing_key(),
                    &envelope::snapshot_fields(&snap.agent_id, seq, &body),
                )?;
                (SpoolKind::Snapshot, None, body, sig)
            }
        };
        let header = SpoolHeader {
            agent_id: snap.agent_id.clone(),
            seq,
            signature,
            content_hash: hash.to_string(),
            encoding: "zstd".into(),
            body_len: body.len() as u64,
            created_at: Utc::now(),
            kind,
            base_seq,
        };
        self.spool().push(&header, &body)?;
        self.state.save_tip(&Tip {
            seq,
            snapshot: snap,
        })?;
        tracing::info!(seq, kind = kind.as_str(), base_seq, bytes = body.len(), content_hash = %hash, "inventory spooled");
        Ok((seq, kind == SpoolKind::Delta))
    }

    /// A delta the collector cannot apply: every delta after it chains on it, so they go
    /// too, and the tip (the latest inventory) is spooled whole.
    fn resend_full(&self, refused: &SpoolEntry, why: String, report: &mut RunReport) -> Result<()> {
        let spool = self.spool();
        spool.remove(refused);
        for path in spool.paths()? {
            if let Some(later) = spool.load(&path) {
                if later.header.kind == SpoolKind::Delta && later.header.seq > refused.header.seq {
                    spool.remove(&later);
                }
            }
        }
        let Some(tip) = self.state.tip() else {
            // Without a tip the next run's inventory goes whole anyway.
            return Ok(());
        };
        let hash = tip.snapshot.content_hash();
        self.state.clear_tip()?;
        let (seq, _) = self.spool_inventory(tip.snapshot, &hash)?;
        tracing::warn!(refused_seq = refused.header.seq, seq, reason = %why, "delta not applicable; the inventory goes whole");
        report.resent_full.push((seq, why));
        Ok(())
    }

    async fn send_heartbeat(&self, hash: &str) -> Result<HeartbeatOutcome> {
        let seq = self.state.next_seq()?;
        let body = serde_json::to_vec(&Heartbeat {
            content_hash: hash.to_string(),
            sent_at: Utc::now(),
        })?;
        let key = self.state.key_pair()?;
        let sig = envelope::sign(
            key.signing_key(),
            &envelope::heartbeat_fields(&self.enrollment.agent_id, seq, &body),
        )?;
        match self
            .client
            .post_signed(
                HEARTBEAT_PATH,
                &self.enrollment.agent_id,
                seq,
                &sig,
                body,
                None,
            )
            .await
        {
            Delivery::Accepted(ack) if ack.resend_full => Ok(HeartbeatOutcome::ResendFull),
            Delivery::Accepted(_) => {
                tracing::info!(seq, "heartbeat accepted");
                Ok(HeartbeatOutcome::Done)
            }
            Delivery::Refused { status, detail, .. } => {
                tracing::warn!(
                    seq,
                    status,
                    detail,
                    "heartbeat refused; sending a full snapshot"
                );
                Ok(HeartbeatOutcome::ResendFull)
            }
            Delivery::RetryLater { after, reason } => Ok(HeartbeatOutcome::Retry(after, reason)),
        }
    }

    /// Delivers the spool in seq order until it is empty or the collector says wait.
    pub async fn deliver(&self, report: &mut RunReport) -> Result<()> {
        let spool = self.spool();
        // Re-read after each file: a refused delta rewrites the rest of the spool. A file
        // is tried once per delivery even if it could not be removed.
        let mut tried = std::collections::BTreeSet::new();
        while let Some(path) = spool.paths()?.into_iter().find(|p| !tried.contains(p)) {
            tried.insert(path.clone());
            let Some(entry) = spool.load(&path) else {
                continue;
            };
            let h = &entry.header;
            let route = match h.kind {
                SpoolKind::Snapshot => SNAPSHOTS_PATH,
                SpoolKind::Delta => DELTAS_PATH,
            };
            let outcome = self
                .client
                .post_signed(
                    route,
                    &h.agent_id,
                    h.seq,
                    &h.signature,
                    entry.body.clone(),
                    Some(&h.encoding),
                )
                .await;
            match outcome {
                Delivery::Accepted(ack) => {
                    self.state.save_last_ack(&LastAck {
                        seq: h.seq,
                        content_hash: h.content_hash.clone(),
                        at: Some(Utc::now()),
                        ci_id: ack.ci_id.clone(),
                    })?;
                    spool.remove(&entry);
                    tracing::info!(seq = h.seq, kind = h.kind.as_str(), ci_id = ?ack.ci_id, change_record = ?ack.change_record, "inventory delivered");
                    report.delivered.push((h.seq, h.kind));
                    report.standing_refusal = None;
                }
                Delivery::Refused {
                    status,
                    kind,
                    detail,
                } if h.kind == SpoolKind::Delta
                    && (kind == PROBLEM_DELTA_BASE_MISMATCH || status == 404 || status == 422) =>
                {
                    if status == 404 {
                        self.state.save_protocol(&Protocol {
                            deltas_unsupported_at: Some(Utc::now()),
                        })?;
                    }
                    report.refused.push((h.seq, status, detail.clone()));
                    self.resend_full(&entry, format!("{status}: {detail}"), report)?;
                }
                Delivery::Refused {
                    status,
                    kind,
                    detail,
                } => {
                    // 401 and 403 refuse the agent, not the file: say so until one is taken.
                    if matches!(status, 401 | 403) {
                        report.standing_refusal = Some(Refusal {
                            at: Utc::now(),
                            status,
                            problem: kind,
                            detail: detail.clone(),
                        });
                    }
                    // 409: this seq is at or below what the collector accepted (a retry of a
                    // delivered file). Anything else will never be accepted as it is.
                    if status == 409 {
                        tracing::warn!(
                            seq = h.seq,
                            detail,
                            "collector already has this seq; dropping it from the spool"
                        );
                    } else {
                        tracing::error!(
                            seq = h.seq,
                            status,
                            detail,
                            "collector refused a spooled inventory; dropping it"
                        );
                    }
                    spool.remove(&entry);
                    report.refused.push((h.seq, status, detail));
                }
                Delivery::RetryLater { after, reason } => {
                    tracing::warn!(seq = h.seq, reason, retry_after = ?after, "delivery postponed");
                    report.retry = Some((after, reason));
                    break;
                }
            }
        }
        report.pending = spool.paths()?.len();
        Ok(())
    }
}

impl Agent {
    /// Records a run's outcome in status.json (what `census-agent status` shows).
    pub fn record(&self, report: &Result<RunReport>) -> Result<()> {
        let mut status = self.state.status()?;
        status.last_attempt = Some(Utc::now());
        match report {
            Err(e) => status.last_error = Some(format!("{e:#}")),
            Ok(r) => match &r.retry {
                Some((_, reason)) => {
                    status.consecutive_failures += 1;
                    status.last_error = Some(reason.clone());
                }
                None => r.settle(&mut status),
            },
        }
        self.state.save_status(&status)?;
        Ok(())
    }
}

enum HeartbeatOutcome {
    Done,
    ResendFull,
    Retry(Option<Duration>, String),
}

/// Exponential back-off with full jitter: uniform in [0, min(cap, base * 2^attempt)].
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    let ceiling = exp.min(cap);
    let millis = ceiling.as_millis().max(1) as u64;
    Duration::from_millis(rand::random::<u64>() % millis)
}

pub fn status_text(state_dir: &Path, config: &AgentConfig) -> Result<String> {
    let state = StateDir::open(state_dir)?;
    let mut out = String::new();
    match state.enrollment()? {
        Some(e) => out.push_str(&format!(
            "enrolled:      yes, agent {} at {} (since {})\nca pin:        sha256 {}\n",
            e.agent_id, e.server, e.enrolled_at, e.ca_fingerprint
        )),
        None => out.push_str("enrolled:      no (run `census-agent enroll`)\n"),
    }
    let status: Status = state.status()?;
    let ack = state.last_ack()?;
    let (files, bytes) = Spool::new(
        &state.spool_dir(),
        config.spool_max_files,
        config.spool_max_bytes,
    )
    .depth()?;
    let fmt = |t: Option<chrono::DateTime<Utc>>| {
        t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into())
    };
    out.push_str(&format!("last success:  {}\n", fmt(status.last_success)));
    out.push_str(&format!("last attempt:  {}\n", fmt(status.last_attempt)));
    if let Some(e) = &status.last_error {
        out.push_str(&format!("last error:    {e}\n"));
    }
    if let Some(r) = &status.refused {
        out.push_str(&format!(
            "REFUSED:       since {} ({} {}): enroll this agent again\n",
            r.at.to_rfc3339(),
            r.status,
            r.problem
        ));
    }
    out.push_str(&format!(
        "last ack:      seq {} ci {}\n",
        ack.seq,
        ack.ci_id.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!("seq:           {}\n", state.current_seq()?));
    out.push_str(&format!(
        "spool:         {files} snapshot(s), {bytes} bytes (max {} / {} bytes)\n",
        config.spool_max_files, config.spool_max_bytes
    ));
    let agent_id = state.enrollment()?.map(|e| e.agent_id).unwrap_or_default();
    let next = Schedule::parse(&config.schedule)
        .ok()
        .and_then(|s| s.next_after(Utc::now(), splay_for(&agent_id, config.splay_seconds)));
    out.push_str(&format!(
        "schedule:      {} (splay {}s), next run {}\n",
        config.schedule,
        config.splay_seconds,
        fmt(next)
    ));
    Ok(out)
}

/// Seconds between two connection samples under `config` (0: none between inventories).
fn sample_interval(config: &AgentConfig) -> u64 {
    let wanted = config
        .section_names()
        .is_ok_and(|names| names.contains(&probe::SectionName::Connections));
    if wanted {
        config.connections_interval_seconds
    } else {
        0
    }
}

/// Samples network connections into `sampler` every `interval` seconds (read at each
/// turn, so a reload takes effect at the next one) until the daemon stops.
fn spawn_connection_sampler(
    sampler: Arc<probe::connections::Sampler>,
    interval: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let seconds = interval.load(Ordering::Relaxed);
            // Off: look again in a minute in case a reload turns it on.
            tokio::time::sleep(Duration::from_secs(if seconds == 0 { 60 } else { seconds })).await;
            if interval.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let sampler = sampler.clone();
            match tokio::task::spawn_blocking(move || sampler.sample()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "connection sample failed"),
                Err(e) => tracing::warn!(error = %e, "connection sample panicked"),
            }
        }
    })
}

/// The foreground daemon: collects on the schedule, retries deliveries with back-off,
/// reloads its config on SIGHUP and stops cleanly on SIGTERM / Ctrl-C.
pub async fn run(state_dir: PathBuf, config_path: PathBuf) -> Result<()> {
    let mut config = AgentConfig::load(&config_path)?;
    let mut agent = Agent::open(&state_dir, config.clone())?;
    let mut schedule = Schedule::parse(&config.schedule).map_err(anyhow::Error::msg)?;
    let mut attempt: u32 = 0;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut next_collect = schedule.next_after(
        Utc::now(),
        splay_for(&agent.enrollment.agent_id, config.splay_seconds),
    );
    let interval = Arc::new(AtomicU64::new(sample_interval(&config)));
    let sampling = spawn_connection_sampler(agent.sampler.clone(), interval.clone());
    tracing::info!(agent_id = %agent.enrollment.agent_id, schedule = %schedule.text, next = ?next_collect, connections_interval_seconds = interval.load(Ordering::Relaxed), "agent running");

    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    // Deliver anything left from before a restart, then follow the schedule.
    let mut deliver_now = true;
    loop {
        let mut status = agent.state.status()?;
        status.next_run = next_collect;
        agent.state.save_status(&status)?;

        let until_collect = next_collect
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        let until_retry =
            retry_at.map(|t| t.saturating_duration_since(tokio::time::Instant::now()));
        let wait = if deliver_now {
            Duration::ZERO
        } else {
            until_retry.map_or(until_collect, |r| r.min(until_collect))
        };

        #[cfg(unix)]
        let event = tokio::select! {
            _ = tokio::time::sleep(wait) => Event::Timer,
            _ = hup.recv() => Event::Reload,
            _ = term.recv() => Event::Stop,
            _ = tokio::signal::ctrl_c() => Event::Stop,
        };
        #[cfg(not(unix))]
        let event = tokio::select! {
            _ = tokio::time::sleep(wait) => Event::Timer,
            _ = tokio::signal::ctrl_c() => Event::Stop,
        };
        match event {
            Event::Stop => {
                tracing::info!("stopping");
                sampling.abort();
                return Ok(());
            }
            Event::Reload => {
                match AgentConfig::load(&config_path).and_then(|c| {
                    Ok((
                        Schedule::parse(&c.schedule).map_err(|m| {
                            crate::config::ConfigError::Invalid {
                                path: config_path.display().to_string(),
                                message: m,
                            }
                        })?,
                        c,
                    ))
                }) {
                    Ok((s, c)) => {
                        config = c;
                        schedule = s;
                        agent.reconfigure(config.clone())?;
                        interval.store(sample_interval(&config), Ordering::Relaxed);
                        next_collect = schedule.next_after(
                            Utc::now(),
                            splay_for(&agent.enrollment.agent_id, config.splay_seconds),
                        );
                        tracing::info!(schedule = %schedule.text, next = ?next_collect, "configuration reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "configuration reload failed; keeping the previous one")
                    }
                }
                continue;
            }
            Event::Timer => {}
        }

        let due = next_collect.is_some_and(|t| t <= Utc::now());
        let mut report = RunReport::default();
        let mut status = agent.state.status()?;
        status.last_attempt = Some(Utc::now());
        let result = if due {
            next_collect = schedule.next_after(
                Utc::now(),
                splay_for(&agent.enrollment.agent_id, config.splay_seconds),
            );
            agent.run_once().await.map(|r| report = r)
        } else {
            agent.deliver(&mut report).await
        };
        deliver_now = false;
        match result {
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "run failed");
                status.last_error = Some(format!("{e:#}"));
            }
            Ok(()) => match &report.retry {
                Some((after, reason)) => {
                    attempt += 1;
                    let delay = after.unwrap_or_else(|| {
                        backoff(
                            attempt,
                            Duration::from_secs(config.backoff_base_seconds),
                            Duration::from_secs(config.backoff_max_seconds),
                        )
                    });
                    retry_at = Some(tokio::time::Instant::now() + delay);
                    status.consecutive_failures = attempt;
                    status.last_error = Some(reason.clone());
                    tracing::warn!(
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        pending = report.pending,
                        "will retry delivery"
                    );
                }
                None => {
                    attempt = 0;
                    retry_at = None;
                    report.settle(&mut status);
                    if let Some(r) = &report.standing_refusal {
                        tracing::error!(
                            status = r.status,
                            problem = %r.problem,
                            detail = %r.detail,
                            "the collector refuses this agent; nothing is taken until it is enrolled again"
                        );
                    }
                }
            },
        }
        agent.state.save_status(&status)?;
    }
}

enum Event {
    Timer,
    #[cfg_attr(not(unix), allow(dead_code))]
    Reload,
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_with_full_jitter() {
        let base = Duration::from_secs(5);
        let cap = Duration::from_secs(900);
        for attempt in 0..40 {
            let d = backoff(attempt, base, cap);
            assert!(d <= cap, "attempt {attempt}: {d:?}");
            assert!(d <= base.saturating_mul(1 << attempt.min(20)));
        }
        let samples: std::collections::BTreeSet<u128> = (0..50)
            .map(|_| backoff(10, base, cap).as_millis())
            .collect();
        assert!(samples.len() > 10, "jitter spreads retries");
    }
}
