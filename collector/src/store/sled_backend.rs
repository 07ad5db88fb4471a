//! The embedded default backend: sled, one tree per [`Space`].
//!
//! sled runs every multi-tree transaction under one global lock, so the domain layer
//! encodes everything before it calls [`Backend::transact`] and the body only checks and
//! writes: time under the lock is what bounds ingest throughput.

use std::cell::RefCell;
use std::path::Path;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::{Transactional, Tree};

use super::backend::*;
use super::StoreError;

pub struct SledBackend {
    db: sled::Db,
    trees: Vec<Tree>,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

fn index(space: Space) -> usize {
    Space::ALL.iter().position(|s| *s == space).unwrap_or(0)
}

/// The page cache a store opens with unless told otherwise.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

impl SledBackend {
    /// Opens (or creates) the sled database in `dir` with a page cache of at most
    /// `cache_bytes` (sled's own default is 1 GiB, which a collector grows into).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        // sled's flusher thread lets go of the file lock a moment after the last handle
        // of a database is dropped (a restore or a migration just closed it in this very
        // process), so a lock is tried again briefly before it counts as another owner's.
        let mut tries = 0;
        loop {
            match Self::open_once(dir, cache_bytes) {
                Err(StoreError::Locked(_)) if tries < 40 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            // Durability comes from explicit flushes before each ack (group commit); the
            // background flusher only bounds how much an unacknowledged write can lose.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref ioe) if ioe.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(dir.display().to_string())
                }
                sled::Error::Io(ref ioe) if ioe.to_string().contains("lock") => {
                    StoreError::Locked(dir.display().to_string())
                }
                other => io(other),
            })?;
        let trees = Space::ALL
            .iter()
            .map(|s| db.open_tree(s.name()).map_err(io))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SledBackend { db, trees })
    }

    fn tree(&self, space: Space) -> &Tree {
        &self.trees[index(space)]
    }

    /// The sled database itself: backups, restores and the schema-2 migration read trees
    /// this interface does not name.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

/// One transaction's view: the trees, and whether sled asked for a retry.
struct SledTx<'a> {
    trees: &'a [TransactionalTree],
    conflict: bool,
}

impl SledTx<'_> {
    fn lift<T>(&mut self, r: Result<T, UnabortableTransactionError>) -> Result<T, TxError> {
        r.map_err(|e| match e {
            UnabortableTransactionError::Conflict => {
                self.conflict = true;
                TxError::Abort
            }
            UnabortableTransactionError::Storage(e) => TxError::Store(io(e)),
        })
    }
}

impl Tx for SledTx<'_> {
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let r = self.trees[index(space)].get(key);
        Ok(self.lift(r)?.map(|v| v.to_vec()))
    }

    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        let r = self.trees[index(space)].insert(key, value);
        self.lift(r)?;
        Ok(())
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> Result<(), TxError> {
        let r = self.trees[index(space)].remove(key);
        self.lift(r)?;
        Ok(())
    }

    fn take(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let r = self.trees[index(space)].remove(key);
        Ok(self.lift(r)?.map(|v| v.to_vec()))
    }
}

impl Backend for SledBackend {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(space).get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        space: Space,
        range: Range<'_>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        let tree = self.tree(space);
        let iter = match (range.from, range.to) {
            (Some(a), Some(b)) => tree.range(a..b),
            (Some(a), None) => tree.range(a..),
            (None, Some(b)) => tree.range(..b),
            (None, None) => tree.iter(),
        };
        walk(
            iter,
            range.reverse,
            |r: sled::Result<(sled::IVec, sled::IVec)>| {
                let (k, v) = r.map_err(io)?;
                visit(&k, &v)
            },
        )
    }

    fn count(&self, space: Space) -> Result<usize, StoreError> {
        Ok(self.tree(space).len())
    }

    fn transact(
        &self,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), TxError>,
    ) -> Result<(), TxError> {
        let body = RefCell::new(body);
        let outcome: RefCell<Option<TxError>> = RefCell::new(None);
        let r = self
            .trees
            .as_slice()
            .transaction(|views: &Vec<TransactionalTree>| {
                let mut tx = SledTx {
                    trees: views,
                    conflict: false,
                };
                let result = (body.borrow_mut())(&mut tx);
                if tx.conflict {
                    return Err(ConflictableTransactionError::Conflict);
                }
                match result {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        *outcome.borrow_mut() = Some(e);
                        Err(ConflictableTransactionError::Abort(()))
                    }
                }
            });
        match r {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(())) => Err(outcome.into_inner().unwrap_or(TxError::Abort)),
            Err(TransactionError::Storage(e)) => Err(TxError::Store(io(e))),
        }
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree(space).insert(key, value).map_err(io)?;
        Ok(())
    }

    fn delete(&self, space: Space, key: &[u8]) -> Result<(), StoreError> {
        self.tree(space).remove(key).map_err(io)?;
        Ok(())
    }

    fn clear(&self, space: Space) -> Result<(), StoreError> {
        self.tree(space).clear().map_err(io)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(io)
    }
}
