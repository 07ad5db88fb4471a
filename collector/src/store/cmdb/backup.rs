//! Online backup (one point in time, zstd, SHA-256 trailer) and restore into an empty
//! data directory. The stream names each key space, so a backup of an older schema
//! restores as that schema and migrates when the collector opens it.

use std::path::Path;

use super::*;

const BACKUP_MAGIC: &[u8] = b"CENSUS-BACKUP-1\n";

impl Cmdb {
    pub(crate) fn do_backup(
        &self,
        out: &mut dyn std::io::Write,
    ) -> Result<BackupSummary, StoreError> {
        use sha2::{Digest, Sha256};
        // Exclusive: no write is half-applied across spaces while the backup reads them.
        let _exclusive = self.exclusive();
        let mut z = zstd::stream::write::Encoder::new(out, 3).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut summary = BackupSummary::default();
        let mut put = |z: &mut dyn std::io::Write, bytes: &[u8]| -> Result<(), StoreError> {
            hasher.update(bytes);
            z.write_all(bytes).map_err(io)
        };
        put(&mut z, BACKUP_MAGIC)?;
        for space in Space::ALL {
            let name = space.name().as_bytes();
            put(&mut z, &[1])?;
            put(&mut z, &(name.len() as u32).to_be_bytes())?;
            put(&mut z, name)?;
            summary.trees += 1;
            let mut failed: Option<StoreError> = None;
            self.backend.scan(space, Range::all(), &mut |k, v| {
                let r = (|| {
                    put(&mut z, &[2])?;
                    put(&mut z, &(k.len() as u32).to_be_bytes())?;
                    put(&mut z, k)?;
                    put(&mut z, &(v.len() as u32).to_be_bytes())?;
                    put(&mut z, v)
                })();
                match r {
                    Ok(()) => {
                        summary.records += 1;
                        Ok(Flow::Continue)
                    }
                    Err(e) => {
                        failed = Some(e);
                        Ok(Flow::Stop)
                    }
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        put(&mut z, &[3])?;
        let digest = hasher.finalize();
        std::io::Write::write_all(&mut z, &digest).map_err(io)?;
        z.finish().map_err(io)?;
        Ok(summary)
    }

    /// Restores a backup into `dir`, which must not hold a store. The checksum is verified
    /// before the store is kept; on any error the partial store is removed.
    pub fn restore(dir: &Path, input: &mut dyn std::io::Read) -> Result<BackupSummary, StoreError> {
        if migrate::holds_sled(dir) || dir.join(crate::store::redb_backend::FILE).exists() {
            return Err(StoreError::Io(format!(
                "{} already holds a store; restore into an empty data directory",
                dir.display()
            )));
        }
        let result = restore_into(dir, input);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }
}

/// The backup stream as read: every byte but the trailer goes into the checksum.
struct BackupReader<R: std::io::Read> {
    z: R,
    hasher: sha2::Sha256,
}

impl<R: std::io::Read> BackupReader<R> {
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, StoreError> {
        use sha2::Digest;
        let mut buf = vec![0u8; n];
        self.z
            .read_exact(&mut buf)
            .map_err(|e| corrupt_backup(&format!("truncated: {e}")))?;
        self.hasher.update(&buf);
        Ok(buf)
    }

    /// A length-prefixed field.
    fn field(&mut self) -> Result<Vec<u8>, StoreError> {
        const MAX_FIELD: usize = 1 << 30;
        let len = self.bytes(4)?;
        let n = u32::from_be_bytes(len.try_into().unwrap_or([0; 4])) as usize;
        if n > MAX_FIELD {
            return Err(corrupt_backup("a field is larger than 1 GiB"));
        }
        self.bytes(n)
    }
}

fn corrupt_backup(m: &str) -> StoreError {
    StoreError::Corrupt {
        key: "backup".into(),
        message: m.into(),
    }
}

fn restore_into(dir: &Path, input: &mut dyn std::io::Read) -> Result<BackupSummary, StoreError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut r = BackupReader {
        z: zstd::stream::read::Decoder::new(input).map_err(io)?,
        hasher: Sha256::new(),
    };
    if r.bytes(BACKUP_MAGIC.len())? != BACKUP_MAGIC {
        return Err(corrupt_backup("not a Census backup"));
    }
    let db = sled::Config::new().path(dir).open().map_err(io)?;
    let mut summary = BackupSummary::default();
    let mut tree: Option<sled::Tree> = None;
    loop {
        match r.bytes(1)?[0] {
            1 => {
                tree = Some(db.open_tree(r.field()?).map_err(io)?);
                summary.trees += 1;
            }
            2 => {
                let t = tree
                    .as_ref()
                    .ok_or_else(|| corrupt_backup("record before any tree"))?;
                let k = r.field()?;
                let v = r.field()?;
                t.insert(k, v).map_err(io)?;
                summary.records += 1;
            }
            3 => break,
            _ => return Err(corrupt_backup("unknown record tag")),
        }
    }
    let digest = r.hasher.finalize();
    let mut expected = [0u8; 32];
    r.z.read_exact(&mut expected)
        .map_err(|e| corrupt_backup(&format!("truncated: {e}")))?;
    if digest.as_slice() != expected.as_slice() {
        return Err(corrupt_backup("checksum mismatch: the backup is damaged"));
    }
    // The same check as any start: a backup from a newer collector is refused.
    let found = migrate::stored_schema(&db)?
        .ok_or_else(|| corrupt_backup("the backup has no schema version"))?;
    if found > STORE_SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: STORE_SCHEMA_VERSION,
        });
    }
    db.flush().map_err(io)?;
    Ok(summary)
}
