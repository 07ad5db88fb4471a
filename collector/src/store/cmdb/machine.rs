//! A computer as stored: its own record, its components and edges, its installs, and how a
//! commit's CI and edge writes become new records, reverse-index changes and one history
//! step (the undo of what changed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::*;
use crate::model::*;
use crate::store::codec::*;

/// The bytes of a computer's components and installs records (its computer record's are
/// [`Machine::raw`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LentRaws {
    pub components: Option<Vec<u8>>,
    pub installs: Option<Vec<u8>>,
}

/// A decoded computer waiting for the commit that follows its read.
#[derive(Debug)]
pub struct Lent {
    pub machine: Machine,
    pub raws: LentRaws,
}

/// A computer's records, decoded. Also the state history walks back through.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub num: u32,
    /// The id the number was given to (the computer's).
    pub id: Arc<str>,
    /// The computer record's bytes as read: a commit applies only if they are unchanged.
    pub raw: Option<Vec<u8>>,
    pub rec: ComputerRec,
    pub components: BTreeMap<String, CiRec>,
    pub edges: EdgeMap,
    pub installs: BTreeMap<(u32, String), InstallRec>,
}

impl Machine {
    pub fn computer(&self) -> Option<&CiRec> {
        self.rec.ci.as_ref()
    }

    /// A CI of this record by id: the computer or a component.
    pub fn ci(&self, id: &str) -> Option<&CiRec> {
        match &self.rec.ci {
            Some(c) if c.id == id => Some(c),
            _ => self.components.get(id),
        }
    }

    /// Whether `id` is held in this record (so an edge to it needs no reverse entry).
    pub fn holds(&self, id: &str) -> bool {
        *self.id == *id || self.components.contains_key(id)
    }

    pub fn owner_of(&self, id: &str) -> Option<&str> {
        (*self.id != *id).then_some(&*self.id)
    }

    fn is_empty(&self) -> bool {
        self.rec.ci.is_none()
            && self.components.is_empty()
            && self.edges.is_empty()
            && self.installs.is_empty()
    }

    /// Goes one step back: everything the step changed, as it was before.
    pub fn undo(&mut self, undo: &Undo) {
        if undo.created {
            self.rec.ci = None;
            self.components.clear();
            self.edges.clear();
            self.installs.clear();
            return;
        }
        for (id, before) in &undo.cis {
            let is_computer = *self.id == **id;
            match before {
                CiBefore::Absent if is_computer => self.rec.ci = None,
                CiBefore::Absent => {
                    self.components.remove(id);
                }
                CiBefore::Changed(delta) => {
                    let rec = if is_computer {
                        self.rec.ci.as_mut()
                    } else {
                        self.components.get_mut(id)
                    };
                    if let Some(rec) = rec {
                        delta.apply(rec);
                    }
                }
            }
        }
        for (key, before) in &undo.edges {
            match before {
                Some(a) => {
                    self.edges.insert(key.clone(), a.clone());
                }
                None => {
                    self.edges.remove(key);
                }
            }
        }
        for (key, before) in &undo.installs {
            match before {
                Some(i) => {
                    self.installs.insert(key.clone(), i.clone());
                }
                None => {
                    self.installs.remove(key);
                }
            }
        }
    }

    pub fn checkpoint(&self) -> CheckpointRec {
        CheckpointRec {
            computer: self.rec.ci.as_ref().map(CiRec::configuration),
            components: self.components.values().map(CiRec::configuration).collect(),
            edges: self
                .edges
                .iter()
                .map(|(k, a)| (k.clone(), a.clone()))
                .collect(),
            installs: self.installs.values().cloned().collect(),
        }
    }

    pub fn from_checkpoint(num: u32, id: Arc<str>, c: CheckpointRec) -> Machine {
        Machine {
            num,
            id,
            raw: None,
            rec: ComputerRec {
                ci: c.computer,
                revision: 0,
                steps: 0,
            },
            components: c
                .components
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect(),
            edges: c.edges.into_iter().collect(),
            installs: c
                .installs
                .into_iter()
                .map(|i| ((i.product, i.disc.clone()), i))
                .collect(),
        }
    }

    /// The (product, variant) pairs this computer installs: its share of the postings.
    pub fn install_variants(&self) -> BTreeSet<(u32, u32)> {
        self.installs
            .values()
            .map(|i| (i.product, i.variant))
            .collect()
    }

    /// The IP addresses this record holds now (its live IP address components).
    pub fn addresses(&self) -> BTreeSet<&str> {
        live_addresses(self.components.values()).collect()
    }

    /// The address index's keys for this record.
    pub fn address_keys(&self) -> BTreeSet<Vec<u8>> {
        self.addresses()
            .into_iter()
            .map(|a| codec::address_key(a, self.num))
            .collect()
    }

    /// The reverse entries of every edge to a CI held elsewhere (not installs: those are
    /// postings).
    pub fn edge_reverse_keys(
        &self,
        target_num: &mut dyn FnMut(&str) -> Option<u32>,
    ) -> BTreeSet<Vec<u8>> {
        let mut keys = BTreeSet::new();
        for k in self.edges.keys() {
            if self.holds(&k.to) {
                continue;
            }
            if let Some(to) = target_num(&k.to) {
                keys.insert(rev_edge_key(to, self.num, k));
            }
        }
        keys
    }
}

/// The addresses of the live IP address components among `components` (what the address
/// index holds for a record).
pub(crate) fn live_addresses<'a>(
    components: impl IntoIterator<Item = &'a CiRec>,
) -> impl Iterator<Item = &'a str> {
    components
        .into_iter()
        .filter(|c| c.class == CiClass::IpAddress && c.status != CiStatus::Retired)
        .map(|c| c.name.as_str())
}

/// One record's writes, encoded and ready for a transaction.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    pub num: u32,
    /// The computer record's bytes this write was computed against.
    pub expect: Option<Vec<u8>>,
    pub computer: Vec<u8>,
    pub components: Option<Vec<u8>>,
    pub installs: Option<Vec<u8>>,
    pub summary: Option<Vec<u8>>,
    pub summary_rec: Option<SummaryRec>,
    /// The record's revision after this write.
    pub revision: u64,
    /// Component ids this record holds for the first time.
    pub new_ids: Vec<String>,
    pub rev_put: Vec<Vec<u8>>,
    pub rev_delete: Vec<Vec<u8>>,
    /// Address index entries this record gains and loses.
    pub addr_put: Vec<Vec<u8>>,
    pub addr_delete: Vec<Vec<u8>>,
    /// (product, variant, add?) for the postings of this computer.
    pub postings: Vec<(u32, u32, bool)>,
    pub step: Option<([u8; 8], Vec<u8>)>,
    pub checkpoint: Option<([u8; 8], Vec<u8>)>,
    /// Bytes in history written by this step (for the log and the benchmarks).
    pub history_bytes: usize,
}

impl Encoded {
    /// The posting keys writing this record reads and rewrites.
    pub(crate) fn posting_keys(&self, layout: Postings) -> Vec<[u8; 13]> {
        let (chunk, _) = layout.chunk_of(self.num);
        self.postings
            .iter()
            .map(|&(product, variant, _)| postings_key(product, variant, chunk))
            .collect()
    }
}

/// What one commit writes into one computer's record.
#[derive(Debug, Default)]
pub(crate) struct RecordChange<'a> {
    pub puts: Vec<&'a Ci>,
    pub edge_puts: Vec<&'a Relationship>,
    pub edge_deletes: Vec<&'a RelKey>,
    pub install_puts: Vec<&'a Install>,
    pub install_deletes: Vec<&'a (String, String)>,
    /// Variant numbers of the `installs` edges among `edge_puts`, in their order, then of
    /// `install_puts`.
    pub variants: Vec<u32>,
}

/// A commit's writes through computer records, before they are grouped by record.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Writes<'a> {
    pub puts: &'a [Ci],
    pub edge_puts: &'a [Relationship],
    pub edge_deletes: &'a [RelKey],
    pub installs: Option<TypedInstalls<'a>>,
}

/// Typed installs of one computer: its id, installs written, and the (product,
/// discriminator) of installs it no longer has.
pub(crate) type TypedInstalls<'a> = (&'a str, &'a [Install], &'a [(String, String)]);

fn install_date(t: Option<chrono::DateTime<Utc>>) -> Option<(i64, u32)> {
    t.map(|t| (t.timestamp(), t.timestamp_subsec_nanos()))
}

impl Cmdb {
    pub(crate) fn load_machine(&self, num: u32) -> Result<Machine, StoreError> {
        Ok(self.load_machine_lending(num)?.0)
    }

    /// Gives a machine [`Self::load_machine_lending`] decoded back, for the next load of
    /// the same records (an ingest's commit after its plan) to take instead of decoding.
    pub(crate) fn lend(&self, machine: Machine, raws: LentRaws) {
        const MAX_LENT: usize = 32;
        let mut lent = self.cache.lent.lock().unwrap_or_else(|p| p.into_inner());
        lent.retain(|l| l.machine.num != machine.num);
        if lent.len() >= MAX_LENT {
            lent.pop_front();
        }
        lent.push_back(Lent { machine, raws });
    }

    /// [`Self::load_machine`], with the bytes of the components and installs records it
    /// was decoded from. A lent machine is taken only when all three records still have
    /// the bytes it was decoded from, so it is exactly what decoding would give.
    pub(crate) fn load_machine_lending(&self, num: u32) -> Result<(Machine, LentRaws), StoreError> {
        self.load_machine_reading(num, false)
            .map(|(m, raws, _)| (m, raws))
    }

    /// [`Cmdb::load_machine_lending`], with the computer's last-seen record read in the same
    /// round trip when `with_seen`.
    pub(crate) fn load_machine_reading(
        &self,
        num: u32,
        with_seen: bool,
    ) -> Result<(Machine, LentRaws, Option<Vec<u8>>), StoreError> {
        let key = codec::num_key(num);
        let mut wanted: Vec<(Space, &[u8])> = vec![
            (Space::Computers, &key),
            (Space::Components, &key),
            (Space::Installs, &key),
        ];
        if with_seen {
            wanted.push((Space::Seen, &key));
        }
        let mut three = self.backend.get_each(&wanted)?.into_iter();
        let raw = three.next().flatten();
        let raws = LentRaws {
            components: three.next().flatten(),
            installs: three.next().flatten(),
        };
        let seen = three.next().flatten();
        {
            let mut lent = self.cache.lent.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = lent.iter().position(|l| l.machine.num == num) {
                if let Some(l) = lent.remove(at) {
                    if l.machine.raw == raw && l.raws == raws {
                        return Ok((l.machine, raws, seen));
                    }
                }
            }
        }
        let rec: ComputerRec = match &raw {
            Some(b) => decode_packed(&shown(Space::Computers, &key), b)?,
            None => ComputerRec::default(),
        };
        let comps: ComponentsRec = match &raws.components {
            Some(b) => decode_packed(&shown(Space::Components, &key), b)?,
            None => ComponentsRec::default(),
        };
        let installs: InstallsRec = match &raws.installs {
            Some(b) => decode_packed(&shown(Space::Installs, &key), b)?,
            None => InstallsRec::default(),
        };
        let id = match self.id_of(num)? {
            Some(id) => id,
            None => Arc::from(rec.ci.as_ref().map(|c| c.id.as_str()).unwrap_or("")),
        };
        let machine = Machine {
            num,
            id,
            raw,
            rec,
            components: comps
                .components
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
            edges: comps.edges.into_iter().collect(),
            installs: installs
                .installs
                .into_iter()
                .map(|i| ((i.product, i.disc.clone()), i))
                .collect(),
        };
        Ok((machine, raws, seen))
    }

    /// An install back as the edge people and drift see.
    pub(crate) fn install_edge(
        &self,
        from: &str,
        i: &InstallRec,
    ) -> Result<Relationship, StoreError> {
        let (_, package) = self.variant(i.variant)?;
        let to = self
            .id_of(i.product)?
            .map(|s| s.to_string())
            .unwrap_or_default();
        Ok(Relationship {
            key: RelKey {
                from: from.to_string(),
                kind: RelKind::Installs,
                to,
                discriminator: i.disc.clone(),
            },
            attributes: edge_attributes(&package, i.install_date, &i.extra),
        })
    }

    /// An install as the plan reads it; `None` when the stored edge holds more than a
    /// package (then it is read as an edge).
    pub(crate) fn install_of(&self, i: &InstallRec) -> Result<Option<Install>, StoreError> {
        if !i.extra.is_empty() {
            return Ok(None);
        }
        let (_, package) = self.variant(i.variant)?;
        let product = self
            .id_of(i.product)?
            .map(|s| s.to_string())
            .unwrap_or_default();
        let installed_at = match i.install_date {
            Some((secs, nanos)) => match chrono::DateTime::<Utc>::from_timestamp(secs, nanos) {
                Some(t) => Some(t),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(Install {
            product,
            discriminator: i.disc.clone(),
            package,
            installed_at,
        }))
    }

    /// Edges leaving `from` (the computer or one of its components) in key order.
    pub(crate) fn edges_from(
        &self,
        m: &Machine,
        from: &str,
    ) -> Result<Vec<Relationship>, StoreError> {
        let mut out: Vec<Relationship> = m
            .edges
            .iter()
            .filter(|(k, _)| k.from == from)
            .map(|(k, a)| Relationship {
                key: k.rel_key(),
                attributes: codec::attributes(a),
            })
            .collect();
        if *m.id == *from {
            self.warm_installs(m.installs.values())?;
            for i in m.installs.values() {
                out.push(self.install_edge(from, i)?);
            }
        }
        out.sort_by(|a, b| {
            (a.key.kind.as_str(), &a.key.to, &a.key.discriminator).cmp(&(
                b.key.kind.as_str(),
                &b.key.to,
                &b.key.discriminator,
            ))
        });
        Ok(out)
    }

    /// Applies one record's share of a commit and encodes the result. `nums` holds the
    /// number of every edge target held elsewhere and of every installed product.
    pub(crate) fn encode_change(
        &self,
        mut m: Machine,
        change: &RecordChange<'_>,
        nums: &HashMap<String, u32>,
        at: DateTime<Utc>,
        change_record: Option<&str>,
    ) -> Result<Encoded, StoreError> {
        let mut variants = change.variants.iter().copied();
        let mut next_variant = || variants.next().ok_or_else(|| io("variant not interned"));
        let target = |id: &str| nums.get(id).copied();
        let before_rev = m.edge_reverse_keys(&mut |id| target(id));
        let before_addresses = m.address_keys();
        let before_installs = m.install_variants();
        let created = m.is_empty();
        let had_components: BTreeSet<String> = m.components.keys().cloned().collect();
        let old_summary = m.rec.ci.as_ref().map(|c| (c.name.clone(), c.status));
        let mut undo = Undo::default();
        let mut components_changed = false;
        let mut installs_changed = false;

        for ci in &change.puts {
            let old = m.ci(&ci.id).cloned();
            let config_changed = match &old {
                None => true,
                Some(o) => {
                    o.version != ci.version
                        || o.name != ci.name
                        || o.status != ci.status
                        || o.attributes != codec::attr_list(&ci.attributes)
                }
            };
            let versioned_at = match (&old, config_changed) {
                (Some(o), false) => time(o.versioned_at),
                _ => at,
            };
            let rec = CiRec::from_ci(ci, versioned_at);
            if config_changed {
                let before = match &old {
                    Some(o) => CiBefore::Changed(CiDelta::between(o, &rec)),
                    None => CiBefore::Absent,
                };
                undo.cis.push((ci.id.clone(), before));
            }
            if *m.id == *ci.id {
                m.rec.ci = Some(rec);
            } else {
                m.components.insert(ci.id.clone(), rec);
                components_changed = true;
            }
        }
        for r in &change.edge_puts {
            if r.key.kind == RelKind::Installs {
                let product = target(&r.key.to)
                    .ok_or_else(|| io(format!("no number for product {}", r.key.to)))?;
                let (_, install_date, extra) = VariantRec::split(product, &r.attributes);
                let variant = next_variant()?;
                let rec = InstallRec {
                    product,
                    disc: r.key.discriminator.clone(),
                    variant,
                    install_date,
                    extra,
                };
                let key = (product, rec.disc.clone());
                let old = m.installs.insert(key.clone(), rec.clone());
                if old.as_ref() != Some(&rec) {
                    undo.installs.push((key, old));
                    installs_changed = true;
                }
            } else {
                let key = EdgeKey::of(&r.key);
                let attrs = codec::attr_list(&r.attributes);
                let old = m.edges.insert(key.clone(), attrs.clone());
                if old.as_ref() != Some(&attrs) {
                    undo.edges.push((key, old));
                    components_changed = true;
                }
            }
        }
        for i in &change.install_puts {
            let product = target(&i.product)
                .ok_or_else(|| io(format!("no number for product {}", i.product)))?;
            let rec = InstallRec {
                product,
                disc: i.discriminator.clone(),
                variant: next_variant()?,
                install_date: install_date(i.installed_at),
                extra: Vec::new(),
            };
            let key = (product, rec.disc.clone());
            let old = m.installs.insert(key.clone(), rec.clone());
            if old.as_ref() != Some(&rec) {
                undo.installs.push((key, old));
                installs_changed = true;
            }
        }
        for (product, disc) in change.install_deletes.iter().copied() {
            let Some(product) = target(product) else {
                continue;
            };
            let key = (product, disc.clone());
            if let Some(old) = m.installs.remove(&key) {
                undo.installs.push((key, Some(old)));
                installs_changed = true;
            }
        }
        for k in &change.edge_deletes {
            if k.kind == RelKind::Installs {
                let Some(product) = target(&k.to) else {
                    continue;
                };
                let key = (product, k.discriminator.clone());
                if let Some(old) = m.installs.remove(&key) {
                    undo.installs.push((key, Some(old)));
                    installs_changed = true;
                }
            } else {
                let key = EdgeKey::of(k);
                if let Some(old) = m.edges.remove(&key) {
                    undo.edges.push((key, Some(old)));
                    components_changed = true;
                }
            }
        }

        if created && !undo.is_empty() {
            undo = Undo {
                created: true,
                ..Undo::default()
            };
        }
        let after_rev = m.edge_reverse_keys(&mut |id| target(id));
        let after_addresses = m.address_keys();
        let after_installs = m.install_variants();
        let mut out = Encoded {
            num: m.num,
            expect: m.raw.take(),
            rev_put: after_rev.difference(&before_rev).cloned().collect(),
            rev_delete: before_rev.difference(&after_rev).cloned().collect(),
            addr_put: after_addresses
                .difference(&before_addresses)
                .cloned()
                .collect(),
            addr_delete: before_addresses
                .difference(&after_addresses)
                .cloned()
                .collect(),
            postings: after_installs
                .difference(&before_installs)
                .map(|&(p, v)| (p, v, true))
                .chain(
                    before_installs
                        .difference(&after_installs)
                        .map(|&(p, v)| (p, v, false)),
                )
                .collect(),
            new_ids: m
                .components
                .keys()
                .filter(|id| !had_components.contains(*id))
                .cloned()
                .collect(),
            ..Default::default()
        };
        m.rec.revision += 1;
        if !undo.is_empty() {
            m.rec.steps += 1;
            let step = StepRec {
                valid_from: micros(at),
                change_record: change_record.map(str::to_string),
                undo,
            };
            let bytes = encode_packed(&step)?;
            out.history_bytes += bytes.len();
            out.step = Some((step_key(m.num, m.rec.steps), bytes));
            if m.rec.steps.is_multiple_of(CHECKPOINT_EVERY) {
                let bytes = encode_packed(&m.checkpoint())?;
                out.history_bytes += bytes.len();
                out.checkpoint = Some((step_key(m.num, m.rec.steps), bytes));
            }
        }
        let new_summary = m.rec.ci.as_ref().map(|c| (c.name.clone(), c.status));
        if new_summary != old_summary {
            if let Some(c) = &m.rec.ci {
                let rec = SummaryRec {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    status: c.status,
                };
                out.summary = Some(encode_packed(&rec)?);
                out.summary_rec = Some(rec);
            }
        }
        out.revision = m.rec.revision;
        out.computer = encode_packed(&m.rec)?;
        if components_changed {
            out.components = Some(encode_packed(&ComponentsRec {
                components: m.components.into_values().collect(),
                edges: m.edges.into_iter().collect(),
            })?);
        }
        if installs_changed {
            out.installs = Some(encode_packed(&InstallsRec {
                installs: m.installs.into_values().collect(),
            })?);
        }
        Ok(out)
    }

    /// Writes an encoded record change inside a transaction, after checking that the
    /// computer record is still the one it was computed against.
    pub(crate) fn write_encoded<E>(
        tx: &mut dyn Tx,
        layout: Postings,
        e: &Encoded,
        moved: impl Fn() -> E,
    ) -> TxResult<(), E> {
        let key = codec::num_key(e.num);
        let current = tx.get(Space::Computers, &key)?;
        if current != e.expect {
            return Err(Fail::Abort(moved()));
        }
        tx.put(Space::Computers, &key, &e.computer)?;
        if let Some(c) = &e.components {
            tx.put(Space::Components, &key, c)?;
        }
        if let Some(i) = &e.installs {
            tx.put(Space::Installs, &key, i)?;
        }
        if let Some(s) = &e.summary {
            tx.put(Space::Summaries, &key, s)?;
        }
        // What vulnerability matching reads changed: the exposure tracker re-matches it.
        if e.expect.is_none()
            || e.installs.is_some()
            || e.components.is_some()
            || e.summary.is_some()
        {
            tx.put(Space::Rematch, &key, &e.revision.to_be_bytes())?;
        }
        for id in &e.new_ids {
            tx.put(Space::Ids, id.as_bytes(), &key)?;
        }
        for k in &e.rev_delete {
            tx.delete(Space::Reverse, k)?;
        }
        for k in &e.rev_put {
            tx.put(Space::Reverse, k, &[])?;
        }
        for k in &e.addr_delete {
            tx.delete(Space::Addresses, k)?;
        }
        for k in &e.addr_put {
            tx.put(Space::Addresses, k, &[])?;
        }
        let (_, offset) = layout.chunk_of(e.num);
        let keys = e.posting_keys(layout);
        let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let stored = tx.get_many(Space::Reverse, &key_refs)?;
        // Read once, then kept here: a key named twice sees its first update.
        let mut current: std::collections::HashMap<&[u8], Option<Vec<u8>>> =
            std::collections::HashMap::with_capacity(keys.len());
        for (key, stored) in key_refs.iter().zip(stored) {
            current.entry(key).or_insert(stored);
        }
        for (&(_, _, add), key) in e.postings.iter().zip(&key_refs) {
            let stored = current.get(key).cloned().flatten();
            match layout.update(&shown(Space::Reverse, key), stored.as_deref(), offset, add)? {
                None => {}
                Some(None) => {
                    tx.delete(Space::Reverse, key)?;
                    current.insert(key, None);
                }
                Some(Some(bytes)) => {
                    tx.put(Space::Reverse, key, &bytes)?;
                    current.insert(key, Some(bytes));
                }
            }
        }
        if let Some((k, v)) = &e.step {
            tx.put(Space::Steps, k, v)?;
        }
        if let Some((k, v)) = &e.checkpoint {
            tx.put(Space::Checkpoints, k, v)?;
        }
        Ok(())
    }

    /// Groups a commit's CI and edge writes by the record that holds them, gives numbers
    /// to what needs one, interns variants, and encodes every record's change.
    pub(crate) fn prepare_records(
        &self,
        w: Writes<'_>,
        at: DateTime<Utc>,
        change_record: Option<(&str, &str)>,
    ) -> Result<Vec<Encoded>, StoreError> {
        self.prepare_records_numbering(w, at, change_record, None)
    }

    /// [`Cmdb::prepare_records`]; with `deferred`, variants new to the fleet get provisional
    /// numbers that the commit itself writes (see [`PendingVariant`]) instead of being
    /// interned in a transaction of their own.
    pub(crate) fn prepare_records_numbering(
        &self,
        w: Writes<'_>,
        at: DateTime<Utc>,
        change_record: Option<(&str, &str)>,
        deferred: Option<&mut Vec<PendingVariant>>,
    ) -> Result<Vec<Encoded>, StoreError> {
        let typed = w
            .installs
            .filter(|(_, p, d)| !p.is_empty() || !d.is_empty());
        if w.puts.is_empty()
            && w.edge_puts.is_empty()
            && w.edge_deletes.is_empty()
            && typed.is_none()
        {
            return Ok(Vec::new());
        }
        // Which record holds what: a computer (or any unowned CI) is its own record; a
        // component is in its owner's; an edge is in the record of the CI it leaves.
        let mut holder_of: HashMap<&str, String> = HashMap::new();
        for ci in w.puts {
            let holder = ci.owner.clone().unwrap_or_else(|| ci.id.clone());
            holder_of.insert(ci.id.as_str(), holder);
        }
        let holder_for = |from: &str| -> Result<String, StoreError> {
            if let Some(h) = holder_of.get(from) {
                return Ok(h.clone());
            }
            let h = match self.num_of(from)? {
                Some(n) => match self.id_of(n)? {
                    Some(id) => id.to_string(),
                    None => from.to_string(),
                },
                None => from.to_string(),
            };
            Ok(h)
        };
        let mut groups: BTreeMap<String, RecordChange<'_>> = BTreeMap::new();
        for ci in w.puts {
            let h = ci.owner.clone().unwrap_or_else(|| ci.id.clone());
            groups.entry(h).or_default().puts.push(ci);
        }
        for r in w.edge_puts {
            let h = holder_for(&r.key.from)?;
            groups.entry(h).or_default().edge_puts.push(r);
        }
        for k in w.edge_deletes {
            let h = holder_for(&k.from)?;
            groups.entry(h).or_default().edge_deletes.push(k);
        }
        if let Some((computer, puts, deletes)) = typed {
            let g = groups.entry(computer.to_string()).or_default();
            g.install_puts.extend(puts.iter());
            g.install_deletes.extend(deletes.iter());
        }
        let holders: Vec<&str> = groups.keys().map(String::as_str).collect();
        let holder_nums = self.ensure_nums(&holders)?;
        let mut machines = Vec::with_capacity(holders.len());
        for (h, n) in holders.iter().zip(&holder_nums) {
            let mut m = self.load_machine(*n)?;
            m.id = Arc::from(*h);
            machines.push(m);
        }
        // Numbers of everything edges point at outside their record, before and after.
        let mut targets: BTreeSet<&str> = BTreeSet::new();
        for (m, change) in machines.iter().zip(groups.values()) {
            let new_components: BTreeSet<&str> = change
                .puts
                .iter()
                .filter(|c| *c.id != *m.id)
                .map(|c| c.id.as_str())
                .collect();
            let outside = |id: &str| !m.holds(id) && !new_components.contains(id);
            targets.extend(m.edges.keys().map(|k| k.to.as_str()).filter(|t| outside(t)));
            targets.extend(
                change
                    .edge_puts
                    .iter()
                    .map(|r| r.key.to.as_str())
                    .filter(|t| outside(t)),
            );
            targets.extend(change.edge_deletes.iter().map(|k| k.to.as_str()));
            targets.extend(change.install_puts.iter().map(|i| i.product.as_str()));
            targets.extend(change.install_deletes.iter().map(|(p, _)| p.as_str()));
        }
        let targets: Vec<&str> = targets.into_iter().collect();
        let target_nums = self.ensure_nums(&targets)?;
        let nums: HashMap<String, u32> = targets
            .iter()
            .zip(target_nums)
            .map(|(t, n)| (t.to_string(), n))
            .collect();
        // Variants of the installs written, in the order `encode_change` takes them.
        let product_num = |id: &str| {
            nums.get(id)
                .copied()
                .ok_or_else(|| io(format!("no number for {id}")))
        };
        let mut wanted: Vec<(u32, SharedPackage)> = Vec::new();
        let mut counts: Vec<usize> = Vec::with_capacity(groups.len());
        for change in groups.values() {
            let before = wanted.len();
            for r in change
                .edge_puts
                .iter()
                .filter(|r| r.key.kind == RelKind::Installs)
            {
                let product = product_num(&r.key.to)?;
                let v = VariantRec::split(product, &r.attributes).0;
                wanted.push((product, Arc::new(v.package)));
            }
            for i in &change.install_puts {
                wanted.push((product_num(&i.product)?, i.package.clone()));
            }
            counts.push(wanted.len() - before);
        }
        let mut interned = match deferred {
            Some(pending) => self.number_variants_deferred(&wanted, pending)?,
            None => self.intern_variants(&wanted)?,
        }
        .into_iter();
        for (change, n) in groups.values_mut().zip(counts) {
            change.variants = interned.by_ref().take(n).collect();
        }
        let mut out = Vec::with_capacity(machines.len());
        for (m, (holder, change)) in machines.into_iter().zip(&groups) {
            let record = change_record
                .filter(|(ci, _)| *ci == holder.as_str())
                .map(|(_, r)| r);
            out.push(self.encode_change(m, change, &nums, at, record)?);
        }
        Ok(out)
    }
}
