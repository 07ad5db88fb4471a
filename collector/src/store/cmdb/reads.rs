//! Reading CIs and edges back in the shape the rest of the collector uses.

use std::collections::HashMap;

use super::machine;
use super::*;
use crate::model::*;
use crate::parallel::in_parallel;
use crate::reconcile::class_of_id;
use crate::store::codec::{self, *};

/// Positions in a list of ids: computers holding their own record (with their numbers),
/// and other CIs that have a number.
struct Among {
    computers: Vec<(usize, u32)>,
    others: Vec<usize>,
}

/// Below this many computers per worker, reading their installs stays on one thread.
const MIN_PARALLEL_MACHINES: usize = 500;

impl Cmdb {
    /// A computer's last heartbeat, when later than what its record says.
    fn overlay_seen(&self, num: u32, ci: &mut Ci) -> Result<(), StoreError> {
        if ci.class != CiClass::Computer {
            return Ok(());
        }
        if let Some(v) = self.backend.get(Space::Seen, &codec::num_key(num))? {
            overlay_seen_bytes(num, &v, ci)?;
        }
        Ok(())
    }

    fn shared_record(&self, class: CiClass, num: u32) -> Result<Option<CiRec>, StoreError> {
        let key = codec::shared_key(class, num);
        match self.backend.get(Space::Shared, &key)? {
            Some(v) => Ok(Some(decode_packed(&shown(Space::Shared, &key), &v)?)),
            None => Ok(None),
        }
    }

    fn computer_record(&self, num: u32) -> Result<Option<ComputerRec>, StoreError> {
        let key = codec::num_key(num);
        match self.backend.get(Space::Computers, &key)? {
            Some(v) => Ok(Some(decode_packed(&shown(Space::Computers, &key), &v)?)),
            None => Ok(None),
        }
    }

    /// Whether `id` names a record of its own (a computer, a shared CI) rather than a
    /// component inside its computer's record.
    fn is_holder(&self, id: &str, num: u32) -> Result<bool, StoreError> {
        Ok(self.id_of(num)?.is_some_and(|h| *h == *id))
    }

    pub(crate) fn read_ci(&self, id: &str) -> Result<Option<Ci>, StoreError> {
        let Some(num) = self.num_of(id)? else {
            return Ok(None);
        };
        if let Some(class) = class_of_id(id).filter(|c| c.is_shared()) {
            if let Some(rec) = self.shared_record(class, num)? {
                return Ok(Some(rec.into_ci(None)));
            }
        }
        if self.is_holder(id, num)? {
            let Some(rec) = self.computer_record(num)? else {
                return Ok(None);
            };
            let Some(ci) = rec.ci.filter(|c| c.id == id) else {
                return Ok(None);
            };
            let mut ci = ci.into_ci(None);
            self.overlay_seen(num, &mut ci)?;
            return Ok(Some(ci));
        }
        let m = self.load_machine(num)?;
        Ok(m.components.get(id).map(|c| c.to_ci(m.owner_of(id))))
    }

    /// Which of `ids` name computers holding their own record, and which name another CI
    /// with a number (a component, a shared CI).
    fn computers_among(&self, ids: &[&str]) -> Result<Among, StoreError> {
        let mut computers = Vec::new();
        let mut others = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let Some(num) = self.num_of(id)? else {
                continue;
            };
            if class_of_id(id) == Some(CiClass::Computer) && self.is_holder(id, num)? {
                computers.push((i, num));
            } else {
                others.push(i);
            }
        }
        Ok(Among { computers, others })
    }

    /// [`Cmdb::read_ci`] for many ids: the computers among them (the holders of their
    /// numbers) are read with one statement for their records and one for their last-seen
    /// times; any other CI as `read_ci` reads it.
    pub(crate) fn read_cis(&self, ids: &[&str]) -> Result<Vec<Option<Ci>>, StoreError> {
        let mut out: Vec<Option<Ci>> = vec![None; ids.len()];
        let Among { computers, others } = self.computers_among(ids)?;
        for i in others {
            out[i] = self.read_ci(ids[i])?;
        }
        let keys: Vec<[u8; 4]> = computers.iter().map(|(_, n)| codec::num_key(*n)).collect();
        let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let records = self.backend.get_many(Space::Computers, &key_refs)?;
        let seen = self.backend.get_many(Space::Seen, &key_refs)?;
        let read = computers.into_iter().zip(&keys).zip(records).zip(seen);
        for ((((i, num), key), record), seen) in read {
            let Some(bytes) = record else { continue };
            let rec: ComputerRec = decode_packed(&shown(Space::Computers, key), &bytes)?;
            let Some(ci) = rec.ci.filter(|c| c.id == ids[i]) else {
                continue;
            };
            let mut ci = ci.into_ci(None);
            if let Some(v) = seen {
                overlay_seen_bytes(num, &v, &mut ci)?;
            }
            out[i] = Some(ci);
        }
        Ok(out)
    }

    /// A digest of each computer's stored record, in the order of `ids` (None for an id
    /// that holds no computer record): one read of the raw bytes, nothing decoded.
    pub(crate) fn read_computer_digests(
        &self,
        ids: &[&str],
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let mut out: Vec<Option<u64>> = vec![None; ids.len()];
        let computers = self.computers_among(ids)?.computers;
        let keys: Vec<[u8; 4]> = computers.iter().map(|(_, n)| codec::num_key(*n)).collect();
        let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let records = self.backend.get_many(Space::Computers, &key_refs)?;
        for ((i, _), record) in computers.iter().zip(records) {
            out[*i] = record.map(|bytes| bytes_digest(&bytes));
        }
        Ok(out)
    }

    pub(crate) fn read_summary(&self, id: &str) -> Result<Option<CiSummary>, StoreError> {
        let Some(num) = self.num_of(id)? else {
            return Ok(None);
        };
        if self.is_holder(id, num)? {
            let key = codec::num_key(num);
            if let Some(v) = self.backend.get(Space::Summaries, &key)? {
                let s: SummaryRec = decode_packed(&shown(Space::Summaries, &key), &v)?;
                return Ok(Some(CiSummary {
                    name: s.name,
                    status: s.status,
                }));
            }
        }
        Ok(self.read_ci(id)?.map(|ci| CiSummary {
            name: ci.name,
            status: ci.status,
        }))
    }

    pub(crate) fn scan_class(
        &self,
        class: CiClass,
        visit: &mut dyn FnMut(Ci) -> bool,
    ) -> Result<(), StoreError> {
        if class.is_shared() {
            let prefix = [codec::class_tag(class)];
            return scan_prefix(
                self.backend.as_ref(),
                Space::Shared,
                &prefix,
                &mut |k, v| {
                    let rec: CiRec = decode_packed(&shown(Space::Shared, k), v)?;
                    Ok(if visit(rec.into_ci(None)) {
                        Flow::Continue
                    } else {
                        Flow::Stop
                    })
                },
            );
        }
        if class == CiClass::Computer {
            let mut pending: Option<(u32, Ci)> = None;
            let mut stop = false;
            self.backend
                .scan(Space::Computers, Range::all(), &mut |k, v| {
                    let rec: ComputerRec = decode_packed(&shown(Space::Computers, k), v)?;
                    if let Some(ci) = rec.ci.filter(|c| c.class == CiClass::Computer) {
                        pending = Some((codec::read_num(k).unwrap_or(0), ci.into_ci(None)));
                    }
                    if let Some((num, mut ci)) = pending.take() {
                        self.overlay_seen(num, &mut ci)?;
                        if !visit(ci) {
                            stop = true;
                            return Ok(Flow::Stop);
                        }
                    }
                    Ok(Flow::Continue)
                })?;
            let _ = stop;
            return Ok(());
        }
        self.backend
            .scan(Space::Components, Range::all(), &mut |k, v| {
                let rec: ComponentsRec = decode_packed(&shown(Space::Components, k), v)?;
                let owner = codec::read_num(k)
                    .map(|n| self.id_of(n))
                    .transpose()?
                    .flatten();
                for c in rec.components.into_iter().filter(|c| c.class == class) {
                    if !visit(c.into_ci(owner.as_deref())) {
                        return Ok(Flow::Stop);
                    }
                }
                Ok(Flow::Continue)
            })
    }

    pub(crate) fn read_owned_state(&self, computer_id: &str) -> Result<OwnedState, StoreError> {
        let Some(num) = self.num_of(computer_id)? else {
            return Ok(OwnedState::default());
        };
        if !self.is_holder(computer_id, num)? {
            return Ok(OwnedState::default());
        }
        // The last-seen record in the same round trip as the three records.
        let (m, raws, seen) = self.load_machine_reading(num, true)?;
        let Some(computer) = m.computer() else {
            return Ok(OwnedState::default());
        };
        let mut computer = computer.to_ci(None);
        if let Some(v) = seen {
            overlay_seen_bytes(num, &v, &mut computer)?;
        }
        let mut relationships: Vec<Relationship> = m
            .edges
            .iter()
            .map(|(k, a)| Relationship {
                key: k.rel_key(),
                attributes: codec::attributes(a),
            })
            .collect();
        let mut installs = Vec::with_capacity(m.installs.len());
        self.warm_installs(m.installs.values())?;
        for i in m.installs.values() {
            match self.install_of(i)? {
                Some(install) => installs.push(install),
                None => relationships.push(self.install_edge(computer_id, i)?),
            }
        }
        let state = OwnedState {
            installs,
            computer: Some(computer),
            components: m
                .components
                .values()
                .map(|c| c.to_ci(Some(computer_id)))
                .collect(),
            relationships,
        };
        // The ingest that planned against this state commits next and decodes it again.
        self.lend(m, raws);
        Ok(state)
    }

    pub(crate) fn read_relationships_from(
        &self,
        id: &str,
    ) -> Result<Vec<Relationship>, StoreError> {
        let Some(num) = self.num_of(id)? else {
            return Ok(Vec::new());
        };
        if class_of_id(id).is_some_and(|c| c.is_shared()) && self.is_holder(id, num)? {
            // Shared CIs have no outgoing edges of their own.
            let m = self.load_machine(num)?;
            return self.edges_from(&m, id);
        }
        let m = self.load_machine(num)?;
        self.edges_from(&m, id)
    }

    pub(crate) fn read_relationships_to(&self, id: &str) -> Result<Vec<Relationship>, StoreError> {
        let Some(num) = self.num_of(id)? else {
            return Ok(Vec::new());
        };
        if !self.is_holder(id, num)? {
            // A component: its incoming edges are in its computer's record.
            let m = self.load_machine(num)?;
            return Ok(m
                .edges
                .iter()
                .filter(|(k, _)| k.to == id)
                .map(|(k, a)| Relationship {
                    key: k.rel_key(),
                    attributes: codec::attributes(a),
                })
                .collect());
        }
        let mut edges: Vec<Relationship> = Vec::new();
        let mut install_machines: Vec<u32> = Vec::new();
        let mut loaded: Option<(u32, EdgeMap)> = None;
        let layout = self.postings();
        scan_prefix(
            self.backend.as_ref(),
            Space::Reverse,
            &codec::num_key(num),
            &mut |k, v| {
                match codec::read_rev_key(k) {
                    Some(RevEntry::Postings { chunk, .. }) => {
                        for offset in layout.decode(&shown(Space::Reverse, k), v)? {
                            install_machines.push(layout.machine(chunk, offset));
                        }
                    }
                    Some(RevEntry::Edge { machine, edge, .. }) => {
                        // Entries of one computer are adjacent: read its record once.
                        if loaded.as_ref().is_none_or(|(n, _)| *n != machine) {
                            let edges: EdgeMap =
                                self.load_components(machine)?.edges.into_iter().collect();
                            loaded = Some((machine, edges));
                        }
                        if let Some(a) = loaded.as_ref().and_then(|(_, m)| m.get(&edge)) {
                            edges.push(Relationship {
                                key: edge.rel_key(),
                                attributes: codec::attributes(a),
                            });
                        }
                    }
                    None => {}
                }
                Ok(Flow::Continue)
            },
        )?;
        // Installs are grouped by variant: a computer can appear under several.
        install_machines.sort_unstable();
        install_machines.dedup();
        // A popular product is on every computer: read their installs over all cores.
        let parts = in_parallel(&install_machines, MIN_PARALLEL_MACHINES, |part| {
            let mut out = Vec::new();
            for &machine in part {
                let Some(from) = self.id_of(machine)? else {
                    continue;
                };
                let m = self.load_installs(machine)?;
                for i in m.iter().filter(|i| i.product == num) {
                    out.push(self.install_edge(&from, i)?);
                }
            }
            Ok::<_, StoreError>(out)
        });
        for part in parts {
            edges.extend(part?);
        }
        Ok(edges)
    }

    pub(crate) fn read_relationships_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<Relationship>, StoreError> {
        let Some(num) = self.num_of(from)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if self.is_holder(from, num)? {
            if let Some(product) = self.num_of(to)? {
                let installs = self.load_installs(num)?;
                self.warm_installs(installs.iter().filter(|i| i.product == product))?;
                for i in installs.iter().filter(|i| i.product == product) {
                    out.push(self.install_edge(from, i)?);
                }
            }
        }
        for (k, a) in self.load_components(num)?.edges {
            if k.from == from && k.to == to {
                out.push(Relationship {
                    key: k.rel_key(),
                    attributes: codec::attributes(&a),
                });
            }
        }
        Ok(out)
    }

    fn load_components(&self, num: u32) -> Result<ComponentsRec, StoreError> {
        let key = codec::num_key(num);
        Ok(match self.backend.get(Space::Components, &key)? {
            Some(b) => decode_packed(&shown(Space::Components, &key), &b)?,
            None => ComponentsRec::default(),
        })
    }

    fn load_installs(&self, num: u32) -> Result<Vec<InstallRec>, StoreError> {
        let key = codec::num_key(num);
        Ok(match self.backend.get(Space::Installs, &key)? {
            Some(b) => decode_packed::<InstallsRec>(&shown(Space::Installs, &key), &b)?.installs,
            None => Vec::new(),
        })
    }

    pub(crate) fn read_installs_of(&self, product_id: &str) -> Result<ProductInstalls, StoreError> {
        let Some(product) = self.num_of(product_id)? else {
            return Ok(ProductInstalls::default());
        };
        let mut prefix = codec::num_key(product).to_vec();
        prefix.push(codec::kind_tag(RelKind::Installs));
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        let layout = self.postings();
        scan_prefix(
            self.backend.as_ref(),
            Space::Reverse,
            &prefix,
            &mut |k, v| {
                if let Some(RevEntry::Postings { variant, chunk, .. }) = codec::read_rev_key(k) {
                    for offset in layout.decode(&shown(Space::Reverse, k), v)? {
                        pairs.push((layout.machine(chunk, offset), variant));
                    }
                }
                Ok(Flow::Continue)
            },
        )?;
        let mut out = ProductInstalls::default();
        let mut index: HashMap<u32, usize> = HashMap::new();
        for &(_, variant) in &pairs {
            if let std::collections::hash_map::Entry::Vacant(e) = index.entry(variant) {
                let (_, package) = self.variant(variant)?;
                out.variants
                    .push(codec::edge_attributes(&package, None, &Vec::new()));
                e.insert(out.variants.len() - 1);
            }
        }
        pairs.sort_unstable();
        out.installs = pairs
            .into_iter()
            .map(|(machine, variant)| (machine as u64, index[&variant]))
            .collect();
        Ok(out)
    }

    /// Loads every computer's summary once; later writes keep the table.
    fn summary_table(&self) -> Result<(), StoreError> {
        if self.cache.summaries.read().is_ok_and(|t| t.table.is_some()) {
            return Ok(());
        }
        let _one_loader = self
            .cache
            .summaries_loading
            .lock()
            .map_err(|_| io("summary loader poisoned"))?;
        if let Ok(mut slot) = self.cache.summaries.write() {
            if slot.table.is_some() {
                return Ok(());
            }
            slot.loading = true;
        }
        let mut table: SummaryTable = HashMap::default();
        let scanned = self
            .backend
            .scan(Space::Summaries, Range::all(), &mut |k, v| {
                let s: SummaryRec = decode_packed(&shown(Space::Summaries, k), v)?;
                if let Some(num) = codec::read_num(k) {
                    table.insert(num, (0, summary_of(s)));
                }
                Ok(Flow::Continue)
            });
        let mut slot = self
            .cache
            .summaries
            .write()
            .map_err(|_| io("summary table poisoned"))?;
        slot.loading = false;
        let pending = std::mem::take(&mut slot.pending);
        scanned?;
        // Commits that landed while the scan ran may not be in what it read.
        for (num, revision, summary) in pending {
            table.insert(num, (revision, summary));
        }
        slot.table = Some(table);
        Ok(())
    }

    /// Keeps the summary table up to date after a commit (or remembers the write while
    /// the table loads).
    pub(crate) fn remember_summaries(&self, written: &[machine::Encoded]) {
        let Ok(mut slot) = self.cache.summaries.write() else {
            return;
        };
        for e in written {
            let Some(s) = &e.summary_rec else {
                continue;
            };
            let summary = ComputerSummary {
                id: s.id.as_str().into(),
                name: s.name.as_str().into(),
                status: s.status,
            };
            if let Some(table) = slot.table.as_mut() {
                let newer = table.get(&e.num).is_none_or(|(rev, _)| *rev < e.revision);
                if newer {
                    table.insert(e.num, (e.revision, summary));
                }
            } else if slot.loading {
                slot.pending.push((e.num, e.revision, summary));
            }
        }
    }

    pub(crate) fn read_computer_summaries(
        &self,
        keys: &[u64],
    ) -> Result<Vec<Option<ComputerSummary>>, StoreError> {
        if self.backend.shared() {
            return self.read_shared_summaries(keys);
        }
        self.summary_table()?;
        let table = self
            .cache
            .summaries
            .read()
            .map_err(|_| io("summary table poisoned"))?;
        let Some(table) = table.table.as_ref() else {
            return Ok(vec![None; keys.len()]);
        };
        Ok(keys
            .iter()
            .map(|k| {
                u32::try_from(*k)
                    .ok()
                    .and_then(|n| table.get(&n))
                    .map(|(_, s)| s.clone())
            })
            .collect())
    }
}

impl Cmdb {
    /// Summaries on a shared store: other collectors create, rename and retire computers,
    /// so each read first takes what was written since the last one (one indexed
    /// statement, usually no rows), then answers from the table. As fresh as reading each
    /// summary anew, without reading tens of thousands of rows per query.
    fn read_shared_summaries(
        &self,
        keys: &[u64],
    ) -> Result<Vec<Option<ComputerSummary>>, StoreError> {
        let mut cached = self
            .cache
            .shared_summaries
            .lock()
            .map_err(|_| io("shared summary table poisoned"))?;
        let Some(written) = self.backend.summaries_since(cached.horizon)? else {
            return Err(io(
                "a shared store must report the summaries written since a horizon",
            ));
        };
        for (k, v) in &written.rows {
            let s: SummaryRec = decode_packed(&shown(Space::Summaries, k), v)?;
            if let Some(num) = codec::read_num(k) {
                cached.table.insert(num, summary_of(s));
            }
        }
        cached.horizon = Some(written.horizon);
        Ok(keys
            .iter()
            .map(|k| {
                u32::try_from(*k)
                    .ok()
                    .and_then(|n| cached.table.get(&n))
                    .cloned()
            })
            .collect())
    }
}

/// A heartbeat's last-seen time (`Space::Seen`) over the record's, when later.
fn overlay_seen_bytes(num: u32, v: &[u8], ci: &mut Ci) -> Result<(), StoreError> {
    if ci.class != CiClass::Computer {
        return Ok(());
    }
    let micros = i64::from_be_bytes(v.try_into().map_err(|_| StoreError::Corrupt {
        key: format!("{}/{num}", Space::Seen.name()),
        message: "not an i64".into(),
    })?);
    if let Some(at) = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros) {
        if at > ci.last_seen {
            ci.last_seen = at;
        }
    }
    Ok(())
}

/// What a package query shows of a computer, from its stored summary.
fn summary_of(s: SummaryRec) -> ComputerSummary {
    ComputerSummary {
        id: s.id.into(),
        name: s.name.into(),
        status: s.status,
    }
}

/// A digest of stored bytes: equal digests mean the same bytes, so what was derived from
/// them (or computed against them) still holds.
pub(crate) fn bytes_digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}
