//! The agent's configuration file (TOML). Every key has a default, so an empty file works.
//!
//! ```toml
//! schedule = "0 */4 * * *"   # standard 5-field cron, as users write it
//! splay_seconds = 900         # per-agent random offset so a fleet does not collect at once
//! spool_max_files = 100
//! spool_max_bytes = 104857600
//! backoff_max_seconds = 900
//! sections = []               # empty: all
//! connections_interval_seconds = 60  # sample network flows between inventories; 0: only at each
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::probe::SectionName;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub schedule: String,
    pub splay_seconds: u64,
    pub spool_max_files: usize,
    pub spool_max_bytes: u64,
    pub backoff_base_seconds: u64,
    pub backoff_max_seconds: u64,
    pub request_timeout_seconds: u64,
    pub sections: Vec<String>,
    /// How often the daemon samples network connections between inventories (0: only when
    /// an inventory is taken).
    pub connections_interval_seconds: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            schedule: "0 */4 * * *".into(),
            splay_seconds: 900,
            spool_max_files: 100,
            spool_max_bytes: 100 * 1024 * 1024,
            backoff_base_seconds: 5,
            backoff_max_seconds: 900,
            request_timeout_seconds: 60,
            sections: Vec::new(),
            connections_interval_seconds: 60,
        }
    }
}

/// Sampling more often than this costs CPU and tells the map nothing new.
pub const MIN_SAMPLE_SECONDS: u64 = 5;
pub const MAX_SAMPLE_SECONDS: u64 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl AgentConfig {
    /// Loads `path`; a missing file means defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AgentConfig::default()),
            Err(e) => return Err(invalid(e.to_string())),
        };
        let config: AgentConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        crate::schedule::Schedule::parse(&self.schedule)?;
        self.section_names()?;
        if self.spool_max_files == 0 {
            return Err("spool_max_files must be at least 1".into());
        }
        if self.backoff_base_seconds == 0 || self.backoff_max_seconds < self.backoff_base_seconds {
            return Err("backoff_base_seconds must be >= 1 and <= backoff_max_seconds".into());
        }
        if self.connections_interval_seconds != 0
            && !(MIN_SAMPLE_SECONDS..=MAX_SAMPLE_SECONDS)
                .contains(&self.connections_interval_seconds)
        {
            return Err(format!(
                "connections_interval_seconds must be 0 (off) or between {MIN_SAMPLE_SECONDS} and {MAX_SAMPLE_SECONDS}"
            ));
        }
        Ok(())
    }

    pub fn section_names(&self) -> Result<Vec<SectionName>, String> {
        if self.sections.is_empty() {
            return Ok(SectionName::ALL.to_vec());
        }
        self.sections.iter().map(|s| s.parse()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c: AgentConfig =
            toml::from_str("schedule = \"*/15 * * * *\"\nsections = [\"os\", \"software\"]")
                .unwrap();
        assert_eq!(c.splay_seconds, 900);
        assert!(c.validate().is_ok());
        assert_eq!(c.section_names().unwrap().len(), 2);
        assert!(
            toml::from_str::<AgentConfig>("shedule = \"x\"").is_err(),
            "typos are refused"
        );
        let bad = AgentConfig {
            schedule: "every tuesday".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn connection_sampling_is_every_minute_unless_told_and_bounded() {
        assert_eq!(AgentConfig::default().connections_interval_seconds, 60);
        for (seconds, ok) in [
            (0, true),
            (4, false),
            (5, true),
            (86_400, true),
            (86_401, false),
        ] {
            let c = AgentConfig {
                connections_interval_seconds: seconds,
                ..Default::default()
            };
            let result = c.validate();
            assert_eq!(result.is_ok(), ok, "{seconds}: {result:?}");
            if let Err(message) = result {
                assert!(
                    message.contains("connections_interval_seconds"),
                    "{message}"
                );
            }
        }
    }
}
