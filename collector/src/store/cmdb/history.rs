//! History as steps: a computer's record is its newest state, each step keeps the undo of
//! what it changed, and every [`CHECKPOINT_EVERY`] steps a full state bounds how far a read
//! walks back. `as_of` and `history` rebuild versions from these; nothing else is kept.

use chrono::{DateTime, Utc};

use super::machine::Machine;
use super::*;
use crate::model::*;
use crate::store::codec::{self, *};

/// Whether a step gave `ci_id` a new version.
fn versions(undo: &Undo, ci_id: &str) -> bool {
    undo.created || undo.cis.iter().any(|(id, _)| id == ci_id)
}

impl Cmdb {
    /// The number of the record that holds `ci_id`, unless it is a shared CI (shared CIs
    /// keep no history: they are created once and never change).
    fn history_holder(&self, ci_id: &str) -> Result<Option<u32>, StoreError> {
        if crate::reconcile::class_of_id(ci_id).is_some_and(|c| c.is_shared()) {
            return Ok(None);
        }
        self.num_of(ci_id)
    }

    /// Steps `(after, upto]` of a computer, newest first.
    fn steps_back(
        &self,
        num: u32,
        after: u32,
        upto: u32,
        visit: &mut dyn FnMut(u32, StepRec) -> Result<Flow, StoreError>,
    ) -> Result<(), StoreError> {
        if upto <= after {
            return Ok(());
        }
        let from = step_key(num, after.saturating_add(1));
        let to = match upto.checked_add(1) {
            Some(end) => step_key(num, end).to_vec(),
            None => step_key(num.saturating_add(1), 0).to_vec(),
        };
        self.backend.scan(
            Space::Steps,
            Range {
                from: Some(&from),
                to: Some(&to),
                reverse: true,
            },
            &mut |k, v| {
                let Some((_, step)) = read_step_key(k) else {
                    return Ok(Flow::Continue);
                };
                visit(step, decode_packed(&shown(Space::Steps, k), v)?)
            },
        )
    }

    /// The state right after `step` (0: before the first), walking back from the nearest
    /// checkpoint at or after it, or from the newest state.
    fn state_after(&self, current: &Machine, step: u32) -> Result<Machine, StoreError> {
        let num = current.num;
        let mut start: Option<(u32, Machine)> = None;
        if step < current.rec.steps {
            let from = step_key(num, step);
            let to = step_key(num, current.rec.steps);
            self.backend.scan(
                Space::Checkpoints,
                Range {
                    from: Some(&from),
                    to: Some(&to),
                    reverse: false,
                },
                &mut |k, v| {
                    if let Some((_, at)) = read_step_key(k) {
                        let c: CheckpointRec = decode_packed(&shown(Space::Checkpoints, k), v)?;
                        start = Some((at, Machine::from_checkpoint(num, current.id.clone(), c)));
                    }
                    Ok(Flow::Stop)
                },
            )?;
        }
        let (from_step, mut state) = match start {
            Some(s) => s,
            None => (current.rec.steps, current.clone()),
        };
        self.steps_back(num, step, from_step, &mut |_, s| {
            state.undo(&s.undo);
            Ok(Flow::Continue)
        })?;
        state.rec.steps = step;
        Ok(state)
    }

    fn version_of(
        &self,
        state: &Machine,
        ci_id: &str,
        change_record: Option<String>,
    ) -> Result<Option<CiVersion>, StoreError> {
        let Some(rec) = state.ci(ci_id) else {
            return Ok(None);
        };
        let config = rec.configuration();
        // A version lists its edges in key order (the current state lists them by kind
        // name, as the detail view pages them).
        let mut relationships = self.edges_from(state, ci_id)?;
        relationships.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Some(CiVersion {
            ci_id: ci_id.to_string(),
            version: config.version,
            valid_from: codec::time(config.versioned_at),
            ci: config.to_ci(state.owner_of(ci_id)),
            relationships,
            change_record,
        }))
    }

    pub(crate) fn read_history(&self, ci_id: &str) -> Result<Vec<CiVersion>, StoreError> {
        let Some(num) = self.history_holder(ci_id)? else {
            return Ok(Vec::new());
        };
        let mut state = self.load_machine(num)?;
        let mut out = Vec::new();
        let newest = state.rec.steps;
        self.steps_back(num, 0, newest, &mut |_, s| {
            if versions(&s.undo, ci_id) {
                let record = if state.owner_of(ci_id).is_none() {
                    s.change_record.clone()
                } else {
                    None
                };
                out.extend(self.version_of(&state, ci_id, record)?);
            }
            state.undo(&s.undo);
            Ok(Flow::Continue)
        })?;
        out.reverse();
        Ok(out)
    }

    pub(crate) fn read_as_of(
        &self,
        ci_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<CiVersion>, StoreError> {
        let Some(num) = self.history_holder(ci_id)? else {
            return Ok(None);
        };
        let current = self.load_machine(num)?;
        let at = codec::micros(at);
        // The newest step that began at or before `at`, and the newest step at or before
        // that one that versioned this CI (its change record).
        let mut in_force: Option<u32> = None;
        let mut record: Option<Option<String>> = None;
        self.steps_back(num, 0, current.rec.steps, &mut |step, s| {
            if in_force.is_none() && s.valid_from <= at {
                in_force = Some(step);
            }
            if in_force.is_some() && versions(&s.undo, ci_id) {
                record = Some(s.change_record);
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        })?;
        let Some(step) = in_force else {
            return Ok(None);
        };
        let state = self.state_after(&current, step)?;
        let record = if state.owner_of(ci_id).is_none() {
            record.flatten()
        } else {
            None
        };
        self.version_of(&state, ci_id, record)
    }

    /// A computer and its components as of `at`: one walk back, not one per component.
    pub(crate) fn read_machine_as_of(
        &self,
        computer_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(CiVersion, Vec<Ci>)>, StoreError> {
        let Some(num) = self.history_holder(computer_id)? else {
            return Ok(None);
        };
        let Some(computer) = self.read_as_of(computer_id, at)? else {
            return Ok(None);
        };
        let current = self.load_machine(num)?;
        let at = codec::micros(at);
        let mut in_force = 0;
        self.steps_back(num, 0, current.rec.steps, &mut |step, s| {
            if s.valid_from <= at {
                in_force = step;
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        })?;
        let state = self.state_after(&current, in_force)?;
        let components = state
            .components
            .values()
            .filter(|c| c.status != CiStatus::Retired)
            .map(|c| c.configuration().to_ci(Some(computer_id)))
            .collect();
        Ok(Some((computer, components)))
    }
}
