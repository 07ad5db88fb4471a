//! redb: one B-tree table per [`Space`] in one file, copy-on-write pages, one writer at a
//! time. Transactions commit without fsync ([`redb::Durability::None`]); [`Backend::flush`]
//! commits with [`redb::Durability::Immediate`], which makes every earlier commit durable
//! too: the group commit the ingest path already awaits before it acks.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};

use super::backend::*;
use super::StoreError;

/// The file a redb store keeps in its directory.
pub const FILE: &str = "census.redb";

pub struct RedbBackend {
    db: Database,
    path: PathBuf,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

type Entry<'a> = (
    redb::AccessGuard<'a, &'static [u8]>,
    redb::AccessGuard<'a, &'static [u8]>,
);

fn table(space: Space) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(space.name())
}

fn index(space: Space) -> usize {
    Space::ALL.iter().position(|s| *s == space).unwrap_or(0)
}

impl RedbBackend {
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        Self::open_file(&dir.join(FILE), cache_bytes)
    }

    pub fn open_file(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let dir = path.parent().unwrap_or(Path::new("."));
        let db = Database::builder()
            .set_cache_size(cache_bytes as usize)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::Locked(dir.display().to_string())
                }
                other => io(other),
            })?;
        let tx = db.begin_write().map_err(io)?;
        for space in Space::ALL {
            tx.open_table(table(space)).map_err(io)?;
        }
        tx.commit().map_err(io)?;
        Ok(RedbBackend { db, path })
    }

    fn write(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write().map_err(io)?;
        tx.set_durability(Durability::None).map_err(io)?;
        Ok(tx)
    }

    /// A write transaction whose commit is durable (and carries the allocator state, so
    /// opening after a kill -9 does not walk the whole file to rebuild it).
    fn durable_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write().map_err(io)?;
        tx.set_durability(Durability::Immediate).map_err(io)?;
        tx.set_quick_repair(true);
        Ok(tx)
    }

    fn run(
        &self,
        tx: WriteTransaction,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), TxError>,
    ) -> Result<(), TxError> {
        let result = {
            let mut view = RedbTx {
                tx: &tx,
                tables: (0..Space::ALL.len()).map(|_| None).collect(),
            };
            body(&mut view)
        };
        match result {
            Ok(()) => tx.commit().map_err(|e| TxError::Store(io(e))),
            Err(e) => {
                tx.abort().map_err(|e| TxError::Store(io(e)))?;
                Err(e)
            }
        }
    }
}

struct RedbTx<'t> {
    tx: &'t WriteTransaction,
    tables: Vec<Option<Table<'t, &'static [u8], &'static [u8]>>>,
}

impl<'t> RedbTx<'t> {
    fn table(
        &mut self,
        space: Space,
    ) -> Result<&mut Table<'t, &'static [u8], &'static [u8]>, TxError> {
        let slot = &mut self.tables[index(space)];
        if slot.is_none() {
            *slot = Some(
                self.tx
                    .open_table(table(space))
                    .map_err(|e| TxError::Store(io(e)))?,
            );
        }
        slot.as_mut()
            .ok_or_else(|| TxError::Store(io("table did not open")))
    }
}

impl Tx for RedbTx<'_> {
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let t = self.table(space)?;
        let v = t.get(key).map_err(|e| TxError::Store(io(e)))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        let t = self.table(space)?;
        t.insert(key, value).map_err(|e| TxError::Store(io(e)))?;
        Ok(())
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> Result<(), TxError> {
        let t = self.table(space)?;
        t.remove(key).map_err(|e| TxError::Store(io(e)))?;
        Ok(())
    }

    fn take(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let t = self.table(space)?;
        let old = t.remove(key).map_err(|e| TxError::Store(io(e)))?;
        Ok(old.map(|g| g.value().to_vec()))
    }
}

impl Backend for RedbBackend {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(table(space)).map_err(io)?;
        Ok(t.get(key).map_err(io)?.map(|g| g.value().to_vec()))
    }

    fn scan(
        &self,
        space: Space,
        range: Range<'_>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(table(space)).map_err(io)?;
        let lower = match range.from {
            Some(a) => Bound::Included(a),
            None => Bound::Unbounded,
        };
        let upper = match range.to {
            Some(b) => Bound::Excluded(b),
            None => Bound::Unbounded,
        };
        let iter = t.range::<&[u8]>((lower, upper)).map_err(io)?;
        walk(
            iter,
            range.reverse,
            |r: Result<Entry<'_>, redb::StorageError>| {
                let (k, v) = r.map_err(io)?;
                visit(k.value(), v.value())
            },
        )
    }

    fn count(&self, space: Space) -> Result<usize, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(table(space)).map_err(io)?;
        Ok(t.len().map_err(io)? as usize)
    }

    fn transact(
        &self,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), TxError>,
    ) -> Result<(), TxError> {
        self.run(self.write()?, body)
    }

    fn transact_durable(
        &self,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), TxError>,
    ) -> Result<(), TxError> {
        self.run(self.durable_write()?, body)
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let tx = self.write()?;
        tx.open_table(table(space))
            .map_err(io)?
            .insert(key, value)
            .map_err(io)?;
        tx.commit().map_err(io)
    }

    fn delete(&self, space: Space, key: &[u8]) -> Result<(), StoreError> {
        let tx = self.write()?;
        tx.open_table(table(space))
            .map_err(io)?
            .remove(key)
            .map_err(io)?;
        tx.commit().map_err(io)
    }

    fn clear(&self, space: Space) -> Result<(), StoreError> {
        let tx = self.write()?;
        tx.delete_table(table(space)).map_err(io)?;
        tx.open_table(table(space)).map_err(io)?;
        tx.commit().map_err(io)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.durable_write()?.commit().map_err(io)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(std::fs::metadata(&self.path).map_err(io)?.len())
    }
}
