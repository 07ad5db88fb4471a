//! Flows and the address index: who holds an IP address now (kept with each computer
//! record's components, see [`super::machine`]), each computer's reported flows, and who
//! reported a flow to an address. Flows are volatile: written by the inventory's own
//! transaction, outside history.

use super::*;
use crate::model::flows::FlowsRec;
use crate::store::backend::scan_prefix;

/// The meta key set once every computer record's addresses are in the address index.
const ADDRESS_INDEX_META_KEY: &[u8] = b"address_index";

/// A commit's flow writes, encoded before its transaction.
#[derive(Debug, Default)]
pub(crate) struct PreparedFlows {
    pub key: [u8; 4],
    pub record: Vec<u8>,
    pub targets_put: Vec<Vec<u8>>,
    pub targets_delete: Vec<Vec<u8>>,
}

fn address_prefix(address: &str) -> Vec<u8> {
    let mut p = address.as_bytes().to_vec();
    p.push(0);
    p
}

impl Cmdb {
    /// The numbers of the computers whose records hold `address` now.
    pub(crate) fn address_holder_nums(&self, address: &str) -> Result<Vec<u32>, StoreError> {
        self.numbers_under(Space::Addresses, address)
    }

    /// The computers that hold `address` now as far as flows are concerned: a retired
    /// computer holds nothing, and a silent (stale) one only when no active one reports it
    /// (an address a DHCP server gave to another machine since).
    pub(crate) fn current_holder_nums(&self, address: &str) -> Result<Vec<u32>, StoreError> {
        Ok(self
            .current_holders_of([address])?
            .remove(address)
            .unwrap_or_default())
    }

    /// [`Cmdb::current_holder_nums`] of several addresses, with one read of the holders'
    /// statuses (a database round trip on PostgreSQL).
    fn current_holders_of<'a>(
        &self,
        addresses: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, Vec<u32>>, StoreError> {
        let mut recorded: HashMap<String, Vec<u32>> = HashMap::new();
        for address in addresses {
            if !recorded.contains_key(address) {
                let nums = if crate::model::flows::resolvable(address) {
                    self.address_holder_nums(address)?
                } else {
                    Vec::new()
                };
                recorded.insert(address.to_string(), nums);
            }
        }
        let mut nums: Vec<u64> = recorded.values().flatten().map(|&n| u64::from(n)).collect();
        nums.sort_unstable();
        nums.dedup();
        if nums.is_empty() {
            return Ok(recorded);
        }
        let status: HashMap<u32, CiStatus> = nums
            .iter()
            .zip(self.read_computer_summaries(&nums)?)
            .filter_map(|(&n, s)| Some((u32::try_from(n).ok()?, s?.status)))
            .collect();
        Ok(recorded
            .into_iter()
            .map(|(address, held)| {
                let with_status: Vec<(u32, CiStatus)> = held
                    .iter()
                    .filter_map(|n| Some((*n, *status.get(n)?)))
                    .collect();
                (address, crate::model::flows::current_holders(&with_status))
            })
            .collect())
    }

    /// The numbers of the computers that reported a flow to `address`.
    pub(crate) fn flow_reporter_nums(&self, address: &str) -> Result<Vec<u32>, StoreError> {
        self.numbers_under(Space::FlowTargets, address)
    }

    fn numbers_under(&self, space: Space, address: &str) -> Result<Vec<u32>, StoreError> {
        let mut out = Vec::new();
        scan_prefix(
            self.backend.as_ref(),
            space,
            &address_prefix(address),
            &mut |k, _| {
                if let Some(n) = codec::address_key_num(k) {
                    out.push(n);
                }
                Ok(Flow::Continue)
            },
        )?;
        Ok(out)
    }

    /// Every (address, reporter id) pair in the reverse index, in address order.
    pub(crate) fn read_flow_targets(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut pairs = Vec::new();
        self.backend
            .scan(Space::FlowTargets, Range::all(), &mut |k, _| {
                let address = k
                    .len()
                    .checked_sub(5)
                    .and_then(|end| std::str::from_utf8(&k[..end]).ok());
                if let (Some(address), Some(num)) = (address, codec::address_key_num(k)) {
                    pairs.push((address.to_string(), num));
                }
                Ok(Flow::Continue)
            })?;
        let mut out = Vec::with_capacity(pairs.len());
        for (address, num) in pairs {
            if let Some(id) = self.id_of(num)? {
                out.push((address, id.to_string()));
            }
        }
        Ok(out)
    }

    /// The CI ids of `nums` (numbers no longer naming anything are left out).
    pub(crate) fn ids_of(&self, nums: &[u32]) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::with_capacity(nums.len());
        for &n in nums {
            if let Some(id) = self.id_of(n)? {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    pub(crate) fn read_flows_of(
        &self,
        id: &str,
    ) -> Result<Vec<crate::model::flows::Flow>, StoreError> {
        let Some(num) = self.num_of(id)? else {
            return Ok(Vec::new());
        };
        let Some(rec) = self.flows_record(num)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(rec.flows.len());
        for f in &rec.flows {
            let peer = match f.peer {
                Some(p) => self.id_of(p)?.map(|id| id.to_string()),
                None => None,
            };
            out.push(crate::model::flows::Flow::of(f, peer));
        }
        Ok(out)
    }

    pub(crate) fn read_addresses_of(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let Some(num) = self.num_of(id)? else {
            return Ok(Vec::new());
        };
        let key = codec::num_key(num);
        let Some(bytes) = self.backend.get(Space::Components, &key)? else {
            return Ok(Vec::new());
        };
        let comps: codec::ComponentsRec =
            codec::decode_packed(&shown(Space::Components, &key), &bytes)?;
        Ok(super::machine::live_addresses(&comps.components)
            .map(str::to_string)
            .collect())
    }

    /// The flows computer `num` reported.
    pub(crate) fn flows_record(&self, num: u32) -> Result<Option<FlowsRec>, StoreError> {
        let key = codec::num_key(num);
        self.backend
            .get(Space::Flows, &key)?
            .map(|b| codec::decode_packed(&shown(Space::Flows, &key), &b))
            .transpose()
    }

    /// What `update` does to computer `num`'s flows, encoded; `None` when it leaves them.
    pub(crate) fn prepare_flows(
        &self,
        num: u32,
        update: &FlowUpdate,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<PreparedFlows>, StoreError> {
        if *update == FlowUpdate::Keep {
            return Ok(None);
        }
        let old = self.flows_record(num)?;
        let new = match update {
            FlowUpdate::Report {
                flows,
                expire_before,
            } => {
                let holders =
                    self.current_holders_of(flows.iter().map(|f| f.remote_address.as_str()))?;
                FlowsRec::merged(old.as_ref(), flows, num, at, *expire_before, &|a| {
                    holders.get(a).cloned().unwrap_or_default()
                })
            }
            FlowUpdate::Stopped { expire_before } => match &old {
                Some(old) => FlowsRec::stopped(old, *expire_before),
                None => return Ok(None),
            },
            FlowUpdate::Keep => return Ok(None),
        };
        let before: std::collections::BTreeSet<Vec<u8>> = old
            .as_ref()
            .map(|o| {
                o.addresses()
                    .into_iter()
                    .map(|a| codec::address_key(a, num))
                    .collect()
            })
            .unwrap_or_default();
        let after: std::collections::BTreeSet<Vec<u8>> = new
            .addresses()
            .into_iter()
            .map(|a| codec::address_key(a, num))
            .collect();
        Ok(Some(PreparedFlows {
            key: codec::num_key(num),
            record: codec::encode_packed(&new)?,
            targets_put: after.difference(&before).cloned().collect(),
            targets_delete: before.difference(&after).cloned().collect(),
        }))
    }

    pub(crate) fn write_flows<E>(tx: &mut dyn Tx, f: &PreparedFlows) -> TxResult<(), E> {
        tx.put(Space::Flows, &f.key, &f.record)?;
        for k in &f.targets_delete {
            tx.delete(Space::FlowTargets, k)?;
        }
        for k in &f.targets_put {
            tx.put(Space::FlowTargets, k, &[])?;
        }
        Ok(())
    }

    /// Fills the address index from every computer record, once per store (stores made
    /// before it existed; a new store marks it at once). Idempotent, so collectors sharing
    /// a database may both run it.
    pub(crate) fn ensure_address_index(&self) -> Result<(), StoreError> {
        if self
            .backend
            .get(Space::Meta, ADDRESS_INDEX_META_KEY)?
            .is_some()
        {
            return Ok(());
        }
        let mut nums = Vec::new();
        self.backend
            .scan(Space::Computers, Range::all(), &mut |k, _| {
                if let Some(n) = codec::read_num(k) {
                    nums.push(n);
                }
                Ok(Flow::Continue)
            })?;
        if nums.is_empty() {
            // Every record written from now on maintains it; an empty store stays as a new
            // one is (a byte-for-byte copy wants its meta untouched).
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut entries = 0usize;
        for chunk in nums.chunks(256) {
            let mut keys = Vec::new();
            for &num in chunk {
                let m = self.load_machine(num)?;
                keys.extend(m.address_keys());
            }
            entries += keys.len();
            transact::<(), StoreError>(self.backend.as_ref(), |tx| {
                for k in &keys {
                    tx.put(Space::Addresses, k, &[])?;
                }
                Ok(())
            })?;
        }
        transact::<(), StoreError>(self.backend.as_ref(), |tx| {
            tx.put(Space::Meta, ADDRESS_INDEX_META_KEY, &[1])?;
            Ok(())
        })?;
        self.backend.flush()?;
        tracing::info!(
            computers = nums.len(),
            entries,
            ms = started.elapsed().as_millis() as u64,
            "address index built"
        );
        Ok(())
    }
}
