//! The configuration view of a snapshot and its content hash.
//!
//! Volatile facts (uptime, boot time, free space, available memory, process ids, the
//! collection time and the envelope's seq) are cleared, and every list is sorted, so two
//! inventories of an unchanged machine hash the same whatever order the OS listed things in.
//! The agent compares this hash with the last acknowledged one to send a heartbeat instead
//! of a full body; the collector uses the same view to decide whether anything drifted.

use sha2::{Digest, Sha256};

use crate::schema::{Section, Snapshot};

/// A SHA-256 over the canonical configuration view, hex encoded.
pub type ContentHash = String;

fn sort_section<T: Ord>(section: &mut Section<Vec<T>>) {
    if let Some(items) = section.data.as_mut() {
        items.sort();
    }
}

impl Snapshot {
    /// Clears volatile facts in place.
    pub fn clear_volatile(&mut self) {
        self.seq = 0;
        self.agent_id.clear();
        self.collected_at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        if let Some(os) = self.os.data.as_mut() {
            os.boot_time = None;
            os.uptime_seconds = None;
        }
        if let Some(memory) = self.memory.data.as_mut() {
            memory.available_bytes = None;
            memory.swap_free_bytes = None;
        }
        if let Some(filesystems) = self.filesystems.data.as_mut() {
            for fs in filesystems {
                fs.free_bytes = None;
            }
        }
        if let Some(ports) = self.listening_ports.data.as_mut() {
            for port in ports {
                port.pid = None;
            }
        }
        // A flow's counts and times move with every sample; which flows there are is the
        // content (so an agent whose flows are the same sends a heartbeat).
        if let Some(flows) = self.connections.data.as_mut() {
            for flow in flows {
                flow.samples = 0;
                flow.peak_connections = 0;
                flow.first_seen = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
                flow.last_seen = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
            }
        }
    }

    /// Sorts every list (and nested list) into one canonical order.
    pub fn canonicalize_order(&mut self) {
        if let Some(system) = self.system.data.as_mut() {
            system.restricted.sort();
        }
        if let Some(os) = self.os.data.as_mut() {
            os.id_like.sort();
        }
        sort_section(&mut self.cpus);
        sort_section(&mut self.disks);
        sort_section(&mut self.filesystems);
        if let Some(nics) = self.network_interfaces.data.as_mut() {
            for nic in nics.iter_mut() {
                nic.addresses.sort();
            }
        }
        sort_section(&mut self.network_interfaces);
        sort_section(&mut self.software);
        sort_section(&mut self.services);
        sort_section(&mut self.users);
        sort_section(&mut self.listening_ports);
        sort_section(&mut self.connections);
        // Identical lines in one list are one fact (two package DBs may list one package).
        dedup(&mut self.software);
        dedup(&mut self.listening_ports);
    }

    /// The configuration view: no volatile facts, canonical order.
    pub fn configuration(&self) -> Snapshot {
        let mut view = self.clone();
        view.clear_volatile();
        view.canonicalize_order();
        view
    }

    /// SHA-256 of the configuration view's JSON. Serialisation of these types is
    /// deterministic: struct fields in declaration order, no maps, no floats.
    pub fn content_hash(&self) -> ContentHash {
        let view = self.configuration();
        let mut hasher = Sha256::new();
        // Writing into a hasher cannot fail and these types have no fallible serialisers.
        if serde_json::to_writer(HashWriter(&mut hasher), &view).is_err() {
            unreachable_serialisation();
        }
        hex::encode(hasher.finalize())
    }
}

fn dedup<T: PartialEq>(section: &mut Section<Vec<T>>) {
    if let Some(items) = section.data.as_mut() {
        items.dedup();
    }
}

#[cold]
fn unreachable_serialisation() {
    // The schema has no map keys or custom serialisers that could fail; reaching this is a
    // programming error, and a hash over a partial write would still be deterministic.
    log_to_stderr("snapshot serialisation failed while hashing");
}

fn log_to_stderr(message: &str) {
    // shared has no logging dependency on purpose; stderr is the honest fallback.
    eprintln!("census-shared: {message}");
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use crate::schema::{Connection, FlowDirection, Section, Snapshot};

    fn flow(samples: u32, at: i64) -> Connection {
        Connection {
            direction: FlowDirection::Outbound,
            protocol: "tcp".into(),
            port: 5432,
            remote_address: "10.0.0.7".into(),
            process: Some("/usr/bin/app".into()),
            samples,
            peak_connections: samples,
            first_seen: Utc.timestamp_opt(at, 0).single().unwrap_or_default(),
            last_seen: Utc.timestamp_opt(at + 60, 0).single().unwrap_or_default(),
        }
    }

    #[test]
    fn a_snapshot_without_flows_reads_and_hashes_as_before_the_section_existed() {
        let snap = Snapshot::empty("a", 1, Utc::now());
        let json = serde_json::to_string(&snap).unwrap();
        assert!(!json.contains("connections"), "{json}");
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert!(back.connections.is_default());
        assert_eq!(back.content_hash(), snap.content_hash());
    }

    #[test]
    fn flow_counts_and_times_are_volatile_but_the_set_of_flows_is_content() {
        let mut a = Snapshot::empty("a", 1, Utc::now());
        a.connections = Section::collected(vec![flow(3, 1_000)]);
        let mut b = a.clone();
        b.connections = Section::collected(vec![flow(40, 9_000)]);
        assert_eq!(a.content_hash(), b.content_hash());
        let mut c = a.clone();
        let mut other = flow(3, 1_000);
        other.port = 6432;
        c.connections = Section::collected(vec![other]);
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
