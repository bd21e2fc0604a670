//! The in-memory index of keys: which are in progress, which completed and with what item
//! code. The draft's decision table lives here.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Mutex, MutexGuard};

use super::key::IdempotencyKey;
use super::record::Record;
use crate::error::StoreError;
use item_code::ItemCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    /// A submit of this store with this key is doing the work.
    InProgress,
    /// The order line was written but could not be synced, so whether it is on disk is
    /// unknown until recovery reads the file. Answers like `InProgress`, and a record of
    /// it read back from the shared journal does not make it completed.
    InDoubt,
    Completed,
}

#[derive(Debug)]
struct KeyEntry {
    code: ItemCode,
    state: KeyState,
}

/// What a submit with a key should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Begin {
    /// The key is now marked in progress: do the work, then settle the key.
    DoTheWork,
    /// The key completed with the same item code: answer at once, write nothing.
    Replay,
}

/// Key → (item code, state). Only ever locked briefly and never while the append lock is
/// being acquired, so it cannot deadlock with it.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    entries: Mutex<HashMap<IdempotencyKey, KeyEntry>>,
}

impl KeyIndex {
    fn entries(&self) -> MutexGuard<'_, HashMap<IdempotencyKey, KeyEntry>> {
        // Every update is a single insert, remove or assignment, so a panic elsewhere
        // while the lock was held cannot have left the map half-changed.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The draft's decision table, taken atomically so two submits with one key cannot
    /// both start the work.
    pub(crate) fn begin(&self, key: &IdempotencyKey, code: &ItemCode) -> Result<Begin, StoreError> {
        match self.entries().entry(key.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(KeyEntry {
                    code: code.clone(),
                    state: KeyState::InProgress,
                });
                Ok(Begin::DoTheWork)
            }
            Entry::Occupied(slot) => {
                let entry = slot.get();
                if entry.code != *code {
                    Err(StoreError::KeyReused {
                        key: key.to_string(),
                        original_code: entry.code.to_string(),
                    })
                } else if entry.state == KeyState::Completed {
                    Ok(Begin::Replay)
                } else {
                    Err(StoreError::KeyInProgress {
                        key: key.to_string(),
                    })
                }
            }
        }
    }

    pub(crate) fn complete(&self, key: &IdempotencyKey) {
        if let Some(entry) = self.entries().get_mut(key) {
            entry.state = KeyState::Completed;
        }
    }

    /// See [`KeyState::InDoubt`].
    pub(crate) fn leave_in_doubt(&self, key: &IdempotencyKey) {
        if let Some(entry) = self.entries().get_mut(key) {
            entry.state = KeyState::InDoubt;
        }
    }

    /// Forgets a key whose work failed before its order line was written.
    pub(crate) fn release(&self, key: &IdempotencyKey) {
        let mut entries = self.entries();
        if entries
            .get(key)
            .is_some_and(|e| e.state == KeyState::InProgress)
        {
            entries.remove(key);
        }
    }

    /// Adds complete records read from the journal. A key this store has in progress was
    /// completed first by another store sharing the orders file: it becomes completed with
    /// that store's item code, and the submit doing the work finds out under the lock
    /// ([`KeyIndex::completed_code`]) and writes nothing.
    pub(super) fn merge_completed(&self, records: Vec<Record>) {
        let mut entries = self.entries();
        for record in records {
            match entries.entry(record.key) {
                Entry::Vacant(slot) => {
                    slot.insert(KeyEntry {
                        code: record.code,
                        state: KeyState::Completed,
                    });
                }
                Entry::Occupied(mut slot) => {
                    if slot.get().state == KeyState::InProgress {
                        slot.insert(KeyEntry {
                            code: record.code,
                            state: KeyState::Completed,
                        });
                    }
                }
            }
        }
    }

    /// The item code `key` completed with, if it has.
    pub(crate) fn completed_code(&self, key: &IdempotencyKey) -> Option<ItemCode> {
        self.entries()
            .get(key)
            .filter(|e| e.state == KeyState::Completed)
            .map(|e| e.code.clone())
    }

    pub(crate) fn in_progress(&self) -> usize {
        self.entries()
            .values()
            .filter(|e| e.state != KeyState::Completed)
            .count()
    }

    pub(crate) fn known(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> IdempotencyKey {
        IdempotencyKey::parse(s).unwrap()
    }

    fn code(s: &str) -> ItemCode {
        ItemCode::parse(s).unwrap()
    }

    #[test]
    fn the_index_follows_the_drafts_decision_table() {
        let index = KeyIndex::default();
        let (k, a, b) = (key("k"), code("a"), code("b"));
        assert_eq!(index.begin(&k, &a).unwrap(), Begin::DoTheWork);
        assert!(matches!(
            index.begin(&k, &a),
            Err(StoreError::KeyInProgress { .. })
        ));
        assert!(matches!(
            index.begin(&k, &b),
            Err(StoreError::KeyReused { original_code, .. }) if original_code == "a"
        ));
        assert_eq!((index.in_progress(), index.known()), (1, 1));
        index.complete(&k);
        assert_eq!(index.begin(&k, &a).unwrap(), Begin::Replay);
        assert!(matches!(
            index.begin(&k, &b),
            Err(StoreError::KeyReused { .. })
        ));
        // A completed key is never released by a later failure.
        index.release(&k);
        assert_eq!((index.in_progress(), index.known()), (0, 1));
    }

    fn record(k: &str, c: &str) -> Record {
        Record {
            key: key(k),
            code: code(c),
            offset: 0,
            unix_ms: 0,
        }
    }

    #[test]
    fn records_of_other_stores_complete_keys_but_never_a_key_in_doubt() {
        let index = KeyIndex::default();
        let (a, b) = (code("a"), code("b"));
        // In progress here, completed by another store with another code: that code wins.
        assert_eq!(index.begin(&key("mine"), &a).unwrap(), Begin::DoTheWork);
        // In doubt here: only a restart's recovery may decide.
        assert_eq!(index.begin(&key("doubt"), &a).unwrap(), Begin::DoTheWork);
        index.leave_in_doubt(&key("doubt"));
        index.merge_completed(vec![
            record("mine", "b"),
            record("doubt", "a"),
            record("new", "a"),
        ]);
        assert_eq!(index.completed_code(&key("mine")), Some(b.clone()));
        assert_eq!(index.completed_code(&key("new")), Some(a.clone()));
        assert_eq!(index.completed_code(&key("doubt")), None);
        assert!(matches!(
            index.begin(&key("doubt"), &a),
            Err(StoreError::KeyInProgress { .. })
        ));
        // The submit that was doing the work for "mine" releases its claim: no effect.
        index.release(&key("mine"));
        assert_eq!(index.begin(&key("mine"), &b).unwrap(), Begin::Replay);
        assert_eq!((index.in_progress(), index.known()), (1, 3));
    }
}
