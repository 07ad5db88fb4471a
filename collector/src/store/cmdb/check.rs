//! `census-collector check`: every derived record against what it derives from — reverse
//! entries, summaries, id mappings, history steps, variants.

use std::collections::BTreeSet;

use super::*;
use crate::store::codec::{self, *};

impl Cmdb {
    pub(crate) fn do_check_consistency(&self) -> Result<ConsistencyReport, StoreError> {
        // Exclusive, like a backup: a commit between reading a record and what derives from
        // it would otherwise show as a disagreement that is not there.
        let _exclusive = self.exclusive();
        let mut report = ConsistencyReport::default();
        let mut nums: Vec<u32> = Vec::new();
        self.backend
            .scan(Space::Computers, Range::all(), &mut |k, _| {
                nums.extend(codec::read_num(k));
                Ok(Flow::Continue)
            })?;
        let mut expected_rev: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut expected_postings: BTreeSet<(u32, u32, u32)> = BTreeSet::new();
        let mut variants_present: std::collections::HashSet<u32> = Default::default();
        let mut expected_addresses: BTreeSet<Vec<u8>> = BTreeSet::new();
        for num in nums {
            let m = self.load_machine(num)?;
            expected_addresses.extend(m.address_keys());
            let holder = m.id.to_string();
            match self.backend.get(Space::Ids, holder.as_bytes())? {
                Some(v) if codec::read_num(&v) == Some(num) => {}
                _ => report.problem(format!("{}/{holder}: not record {num}", Space::Ids.name())),
            }
            if let Some(c) = m.computer() {
                report.cis += 1;
                let key = codec::num_key(num);
                let want = SummaryRec {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    status: c.status,
                };
                match self.backend.get(Space::Summaries, &key)? {
                    Some(v) if decode_packed::<SummaryRec>("summary", &v).ok() == Some(want) => {}
                    Some(_) => report.problem(format!(
                        "{}/{num}: not the name and status of {}",
                        Space::Summaries.name(),
                        c.id
                    )),
                    None => report.problem(format!("{}/{num}: missing", Space::Summaries.name())),
                }
            }
            // One read for all of a computer's component ids, and one for the variants
            // not seen on an earlier computer (a round trip each on a database server).
            let ids: Vec<&[u8]> = m.components.keys().map(|id| id.as_bytes()).collect();
            for (id, held) in m
                .components
                .keys()
                .zip(self.backend.get_many(Space::Ids, &ids)?)
            {
                report.cis += 1;
                match held {
                    Some(v) if codec::read_num(&v) == Some(num) => {}
                    _ => report.problem(format!(
                        "{}/{id}: does not point at its computer's record {num}",
                        Space::Ids.name()
                    )),
                }
            }
            let mut unseen: Vec<u32> = m
                .installs
                .values()
                .map(|i| i.variant)
                .filter(|v| !variants_present.contains(v))
                .collect();
            unseen.sort_unstable();
            unseen.dedup();
            let keys: Vec<[u8; 4]> = unseen.iter().map(|v| codec::num_key(*v)).collect();
            let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            for (variant, stored) in unseen
                .iter()
                .zip(self.backend.get_many(Space::Variants, &key_refs)?)
            {
                if stored.is_some() {
                    variants_present.insert(*variant);
                } else {
                    report.problem(format!(
                        "{}/{variant}: missing, installed on {holder}",
                        Space::Variants.name(),
                    ));
                }
            }
            report.edges += m.edges.len() + m.installs.len();
            let mut unknown_target = None;
            let keys = m.edge_reverse_keys(&mut |id| match self.num_of(id) {
                Ok(n) => n,
                Err(e) => {
                    unknown_target = Some(e);
                    None
                }
            });
            if let Some(e) = unknown_target {
                return Err(e);
            }
            expected_rev.extend(keys);
            expected_postings.extend(m.install_variants().into_iter().map(|(p, v)| (p, v, num)));
            // The newest step is the one the record counts; none lies beyond it.
            let steps = m.rec.steps;
            if steps > 0
                && self
                    .backend
                    .get(Space::Steps, &step_key(num, steps))?
                    .is_none()
            {
                report.problem(format!(
                    "{}/{num}/{steps}: the newest step of {holder} is missing",
                    Space::Steps.name()
                ));
            }
            let beyond = step_key(num, steps.saturating_add(1));
            let end = step_key(num.saturating_add(1), 0);
            let mut extra = 0usize;
            self.backend.scan(
                Space::Steps,
                Range {
                    from: Some(&beyond),
                    to: Some(&end),
                    reverse: false,
                },
                &mut |_, _| {
                    extra += 1;
                    Ok(Flow::Continue)
                },
            )?;
            if steps < u32::MAX && extra > 0 {
                report.problem(format!(
                    "{}/{num}: {extra} steps beyond the {steps} that {holder} counts",
                    Space::Steps.name()
                ));
            }
        }
        let layout = self.postings();
        let mut stored_rev: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut stored_postings: BTreeSet<(u32, u32, u32)> = BTreeSet::new();
        let mut unreadable = Vec::new();
        self.backend
            .scan(Space::Reverse, Range::all(), &mut |k, v| {
                match codec::read_rev_key(k) {
                    Some(RevEntry::Postings {
                        product,
                        variant,
                        chunk,
                    }) => match layout.decode("postings", v) {
                        Ok(offsets) => stored_postings.extend(
                            offsets
                                .into_iter()
                                .map(|o| (product, variant, layout.machine(chunk, o))),
                        ),
                        Err(e) => unreadable.push(format!("{:?}: {e}", codec::read_rev_key(k))),
                    },
                    _ => {
                        stored_rev.insert(k.to_vec());
                    }
                }
                Ok(Flow::Continue)
            })?;
        for u in unreadable {
            report.problem(format!("{}/{u}", Space::Reverse.name()));
        }
        for (p, v, m) in expected_postings.difference(&stored_postings) {
            report.problem(format!(
                "{}: computer {m} installs variant {v} of product {p} but is not in its postings",
                Space::Reverse.name()
            ));
        }
        for (p, v, m) in stored_postings.difference(&expected_postings) {
            report.problem(format!(
                "{}: computer {m} is in the postings of variant {v} of product {p} but does not install it",
                Space::Reverse.name()
            ));
        }
        let shown_rev =
            |k: &[u8]| format!("{}/{:?}", Space::Reverse.name(), codec::read_rev_key(k));
        for k in expected_rev.difference(&stored_rev) {
            report.problem(format!("{}: missing", shown_rev(k)));
        }
        for k in stored_rev.difference(&expected_rev) {
            report.problem(format!("{}: no such edge", shown_rev(k)));
        }
        let stored_addresses = self.keys_of(Space::Addresses)?;
        for k in expected_addresses.difference(&stored_addresses) {
            report.problem(format!("{}: missing", shown(Space::Addresses, k)));
        }
        for k in stored_addresses.difference(&expected_addresses) {
            report.problem(format!(
                "{}: the computer does not hold the address",
                shown(Space::Addresses, k)
            ));
        }
        // Who reported a flow to an address: exactly the addresses of each flows record.
        let mut expected_targets: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut flow_nums = Vec::new();
        self.backend.scan(Space::Flows, Range::all(), &mut |k, _| {
            flow_nums.extend(codec::read_num(k));
            Ok(Flow::Continue)
        })?;
        for num in flow_nums {
            if let Some(rec) = self.flows_record(num)? {
                expected_targets.extend(
                    rec.addresses()
                        .into_iter()
                        .map(|a| codec::address_key(a, num)),
                );
            }
        }
        let stored_targets = self.keys_of(Space::FlowTargets)?;
        for k in expected_targets.difference(&stored_targets) {
            report.problem(format!("{}: missing", shown(Space::FlowTargets, k)));
        }
        for k in stored_targets.difference(&expected_targets) {
            report.problem(format!("{}: no such flow", shown(Space::FlowTargets, k)));
        }
        report.cis += self.backend.count(Space::Shared)?;
        Ok(report)
    }

    fn keys_of(&self, space: Space) -> Result<BTreeSet<Vec<u8>>, StoreError> {
        let mut keys = BTreeSet::new();
        self.backend.scan(space, Range::all(), &mut |k, _| {
            keys.insert(k.to_vec());
            Ok(Flow::Continue)
        })?;
        Ok(keys)
    }
}
