//! PostgreSQL: one table of ordered byte keys per [`Space`] in the `census` schema, shared
//! by every collector that points at the database.
//!
//! The domain layer's transactions read a few keys, check them, and write; several
//! collectors run them at once here, so each is made serializable by strict two-phase
//! locking: every key a transaction reads or writes is locked
//! (`pg_advisory_xact_lock`, on a 32-bit hash of the key within its space) before its value
//! is read, and held until the commit. Reads run at READ COMMITTED, so a read after its lock
//! sees the last committed value. A deadlock or a serialization failure runs the body again.
//! Writes are held in the transaction and sent at the commit in one batch per space.
//!
//! A transaction is durable when [`Backend::transact`] returns. It commits with
//! `synchronous_commit = off`, which lets go of its locks at once, and the same pipeline then
//! runs a one-statement transaction that writes a transactional WAL message (a transaction
//! that only takes an id writes no WAL, and its commit does not wait for a flush) and so
//! commits synchronously: its WAL flush covers the commit before it, and the same connection
//! answering both proves no server restart came between. Contended locks (the postings) are
//! so never held across an fsync, and concurrent committers share the server's WAL flushes.
//! (A flush that only ran later could not tell a commit lost in a server crash from one that
//! survived it: the e2e outage test caught exactly that.) [`Backend::flush`] has nothing
//! left to do.
//!
//! The trait is synchronous and its callers run on any thread (blocking pool, a dedicated
//! committer, a test). Each connection therefore owns a one-thread runtime and its socket,
//! and the thread that leased the connection drives both while it waits for its answer (as
//! the `postgres` crate does): a round trip wakes no other thread. Queries used to run as
//! tasks on a shared runtime with the caller waiting on a channel, two thread hand-offs per
//! round trip that cost more than the statement under load. A caller on an async worker
//! gives its worker up first (`block_in_place`), so runtimes never nest.
//!
//! Architecture Invariant: every PostgreSQL failure is [`StoreError::Unavailable`]: the
//! server keeps its own durability, so a collector answers 503 and tries again, never
//! fail-stops, and never acknowledges what a commit did not confirm.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::backend::*;
use super::report::{self, ReportKey, ReportRow, ReportTable, ReportWrite};
use super::StoreError;

/// The PostgreSQL schema that holds Census's tables.
pub const SCHEMA: &str = "census";

/// The table layout versions this build knows, in order; each applies in one transaction.
/// A database with a higher version than the last here is refused.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, "one table of byte keys per key space"),
    (
        2,
        "reporting: every CI with its attributes, relationships, computer versions",
    ),
    (
        3,
        "computer summaries stamped with their writer's transaction, for collectors' caches",
    ),
    (4, "licences"),
    (5, "business and application services, with their versions"),
    (6, "vulnerability advisories and their package index"),
    (
        7,
        "vulnerability exposure ledgers and the computers awaiting a re-match",
    ),
    (
        8,
        "who holds each IP address, network flows per computer and who reported each peer; configuration baselines",
    ),
];

/// advisory lock class of the migration runner (session lock) and of the background-work
/// leader; key locks use `KEY_LOCK_CLASS + space index`.
pub const MIGRATION_LOCK: (i32, i32) = (0x43_45_4E_00, 1);
pub const LEADER_LOCK: (i32, i32) = (0x43_45_4E_00, 2);
const KEY_LOCK_CLASS: i32 = 0x43_45_4E_10;

/// How a collector reaches PostgreSQL. The password never appears in `Debug` or a log.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db?...` or `host=... user=... dbname=...`.
    pub conninfo: String,
    /// Overrides any password in `conninfo` (from a file or the environment).
    pub password: Option<String>,
    /// PEM file of the CA that signed the server's certificate; else the system roots.
    pub ca_file: Option<PathBuf>,
    /// Most connections this process opens.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// How long a caller waits for a free connection before the store is unavailable.
    pub acquire_timeout: Duration,
    /// Server-side bound on one statement, lock waits included.
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("conninfo", &redact(&self.conninfo))
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl PgOptions {
    pub fn new(conninfo: impl Into<String>) -> Self {
        PgOptions {
            conninfo: conninfo.into(),
            password: None,
            ca_file: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Whether `store` names a PostgreSQL database rather than a directory.
pub fn is_postgres(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// `conninfo` with any password replaced, for messages and logs.
pub fn redact(conninfo: &str) -> String {
    if is_postgres(conninfo) {
        if let Some((scheme, rest)) = conninfo.split_once("://") {
            let (auth, tail) = match rest.split_once('@') {
                Some((a, t)) => (Some(a), t),
                None => (None, rest),
            };
            let tail = redact_query(tail);
            return match auth {
                Some(a) => {
                    let user = a.split(':').next().unwrap_or("");
                    format!("{scheme}://{user}@{tail}")
                }
                None => format!("{scheme}://{tail}"),
            };
        }
    }
    conninfo
        .split_whitespace()
        .map(redact_pair)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `key=value` with the value hidden when the key is the password.
fn redact_pair(kv: &str) -> String {
    match kv.split_once('=') {
        Some((k, _)) if k.eq_ignore_ascii_case("password") => "password=***".to_string(),
        _ => kv.to_string(),
    }
}

fn redact_query(tail: &str) -> String {
    match tail.split_once('?') {
        None => tail.to_string(),
        Some((path, query)) => {
            let q: Vec<String> = query.split('&').map(redact_pair).collect();
            format!("{path}?{}", q.join("&"))
        }
    }
}

/// A column as its Rust type: a mismatch is a store that is not ours, not a panic.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| StoreError::Corrupt {
        key: format!("{SCHEMA} row column {i}"),
        message: e.to_string(),
    })
}

/// The value of a one-key read.
fn first_value(rows: &[tokio_postgres::Row]) -> Result<Option<Vec<u8>>, StoreError> {
    rows.first().map(|r| column::<Vec<u8>>(r, 0)).transpose()
}

/// The (key, value) rows of a many-key read.
fn key_values(rows: &[tokio_postgres::Row]) -> Result<HashMap<Vec<u8>, Vec<u8>>, StoreError> {
    rows.iter()
        .map(|r| Ok((column(r, 0)?, column(r, 1)?)))
        .collect()
}

/// What the server found for one space's keys: key -> value.
type Found = HashMap<Vec<u8>, Vec<u8>>;

/// The answer a `UNION ALL` read's row belongs to: its first column numbers it.
fn answer_slot<'a, T>(
    out: &'a mut [T],
    row: &tokio_postgres::Row,
) -> Result<&'a mut T, StoreError> {
    let i: i32 = row.try_get(0).map_err(unavailable)?;
    let n = out.len();
    usize::try_from(i)
        .ok()
        .and_then(|i| out.get_mut(i))
        .ok_or_else(|| unavailable(format!("a read answered for part {i} of {n}")))
}

/// A [`Sql::GetManyEach`]'s rows as [`key_values`] per listed space.
fn keyed_values(n: usize, rows: &[tokio_postgres::Row]) -> Result<Vec<Found>, StoreError> {
    let mut out = vec![HashMap::new(); n];
    for r in rows {
        answer_slot(&mut out, r)?.insert(column(r, 1)?, column(r, 2)?);
    }
    Ok(out)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {e}"))
}

fn table(space: Space) -> String {
    format!("{SCHEMA}.kv_{}", space.name())
}

fn index(space: Space) -> usize {
    Space::ALL.iter().position(|s| *s == space).unwrap_or(0)
}

/// The writes of one space at a commit.
#[derive(Default)]
struct Batch {
    update_keys: Vec<Vec<u8>>,
    update_values: Vec<Vec<u8>>,
    upsert_keys: Vec<Vec<u8>>,
    upsert_values: Vec<Vec<u8>>,
    deletes: Vec<Vec<u8>>,
}

/// Spaces whose rows are rewritten in place again and again (postings, an agent's seq and
/// last contact, a computer's record and last seen).
fn rewritten_in_place(space: Space) -> bool {
    matches!(
        space,
        Space::Reverse
            | Space::AgentState
            | Space::Seen
            | Space::Computers
            | Space::Summaries
            | Space::Meta
            | Space::Agents
    )
}

/// Spaces locked with an intention lock over the whole space: a transaction that touches a
/// few of its keys holds the space's table in ROW EXCLUSIVE mode and each key's advisory
/// lock; one that touches many (a first inventory rewrites hundreds of postings chunks, and
/// a lock each would fill the server's lock table) holds the table in SHARE ROW EXCLUSIVE
/// mode, which excludes the others and itself.
fn intention_locked(space: Space) -> bool {
    matches!(space, Space::Reverse)
}

/// Past this many keys of an intention-locked space at once, a transaction locks the space.
const MANY_KEYS: usize = 32;

/// The advisory lock that guards `key` in `space`. Two keys on one lock only wait for each
/// other; they are never confused.
fn lock_of(space: Space, key: &[u8]) -> (i32, i32) {
    let class = KEY_LOCK_CLASS + index(space) as i32;
    // FNV-1a: stable across processes and builds, which a lock shared by collectors needs.
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (class, h as i32)
}

/// A statement's shape; its text is made once per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sql {
    Get(Space),
    GetMany(Space),
    /// One key of each listed space, in one statement (one snapshot).
    GetEach(SpaceList),
    /// Any number of keys of each listed space, in one statement.
    GetManyEach(SpaceList),
    Upsert(Space),
    /// Rows the transaction read and locked: a plain update, cheaper than an upsert.
    UpdateMany(Space),
    DeleteMany(Space),
    Count(Space),
    /// lower bound (0 none, 1 inclusive, 2 exclusive), upper bound (exclusive), newest first.
    Scan(Space, u8, bool, bool),
    LockMany,
    /// A report table's upsert and delete (`report::ReportRow` order of tables).
    ReportPut(ReportTable),
    ReportDelete(ReportTable),
    /// Many `report_variants` rows in one upsert (a delta numbers a few variants at once).
    ReportVariants,
    /// Computer summaries written since a transaction id (migration 3), with the horizon.
    SummariesSince,
}

type Params = Vec<Box<dyn ToSql + Send + Sync>>;

/// Up to [`SpaceList::MAX`] spaces in order, one byte each (its index + 1): a statement
/// shape that stays `Copy` and hashable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SpaceList(u64);

impl SpaceList {
    const MAX: usize = 8;

    fn new(spaces: impl IntoIterator<Item = Space>) -> Option<Self> {
        let mut packed = 0u64;
        for (i, space) in spaces.into_iter().enumerate() {
            if i >= Self::MAX {
                return None;
            }
            packed |= ((index(space) as u64) + 1) << (8 * i);
        }
        Some(Self(packed))
    }

    /// `SELECT i, {columns} FROM <space i> WHERE {condition}{i + 1}` for each space, one
    /// statement (`condition` ends where its placeholder's number goes).
    fn union_all(self, columns: &str, condition: &str) -> String {
        let close = if condition.contains('(') { ")" } else { "" };
        self.spaces()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "SELECT {i}::int4 AS i, {columns} FROM {} WHERE {condition}{}{close}",
                    table(s),
                    i + 1
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    }

    fn spaces(self) -> impl Iterator<Item = Space> {
        (0..Self::MAX)
            .map(move |i| ((self.0 >> (8 * i)) & 0xff) as usize)
            .take_while(|n| *n != 0)
            .filter_map(|n| Space::ALL.get(n - 1).copied())
    }
}

/// `text` with each `$n` placeholder moved up by `by` (so it can sit next to others in one
/// statement).
fn shift_placeholders(text: &str, by: usize) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            n.push(d);
            chars.next();
        }
        match n.parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&n),
        }
    }
    out
}

/// Several writes as one statement: each a data-modifying `WITH` query. A statement costs
/// the server a bind, an executor start and a reply however small it is, and a commit wrote
/// twenty small ones; the writes of a transaction touch distinct rows, so running them in
/// one snapshot changes nothing.
fn combined_text(parts: &[Sql]) -> String {
    let mut out = String::from("WITH ");
    let mut shift = 0;
    for (i, sql) in parts.iter().enumerate() {
        let text = sql.text();
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("w{i} AS ({})", shift_placeholders(&text, shift)));
        shift += sql.params();
    }
    out.push_str(" SELECT 1");
    out
}

/// Owned parameters as the driver takes them.
fn as_refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// `report_variants` rows as one array per column, for [`Sql::ReportVariants`].
#[derive(Default)]
struct VariantColumns {
    num: Vec<i32>,
    product: Vec<i32>,
    name: Vec<Option<String>>,
    version: Vec<Option<String>>,
    arch: Vec<Option<String>>,
    source: Vec<Option<String>>,
    publisher: Vec<Option<String>>,
}

impl VariantColumns {
    fn push(&mut self, row: ReportRow) {
        if let ReportRow::Variant {
            num,
            product,
            name,
            version,
            arch,
            source,
            publisher,
        } = row
        {
            self.num.push(num);
            self.product.push(product);
            self.name.push(name);
            self.version.push(version);
            self.arch.push(arch);
            self.source.push(source);
            self.publisher.push(publisher);
        }
    }

    fn params(self) -> Params {
        vec![
            Box::new(self.num),
            Box::new(self.product),
            Box::new(self.name),
            Box::new(self.version),
            Box::new(self.arch),
            Box::new(self.source),
            Box::new(self.publisher),
        ]
    }
}

/// One key of each of several spaces as [`Sql::GetEach`] statements with their
/// parameters, [`SpaceList::MAX`] keys to a statement.
fn each_reads(keys: &[(Space, &[u8])]) -> Result<Vec<(Sql, Params)>, StoreError> {
    keys.chunks(SpaceList::MAX)
        .map(|chunk| {
            let list = SpaceList::new(chunk.iter().map(|(s, _)| *s))
                .ok_or_else(|| unavailable("more spaces than one read names"))?;
            let params: Params = chunk
                .iter()
                .map(|(_, k)| Box::new(k.to_vec()) as Box<dyn ToSql + Send + Sync>)
                .collect();
            Ok((Sql::GetEach(list), params))
        })
        .collect()
}

/// The rows of [`each_reads`]' statements, in their order, as one answer per key.
fn each_answers(
    keys: &[(Space, &[u8])],
    rows: impl IntoIterator<Item = Vec<tokio_postgres::Row>>,
) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let mut out = Vec::with_capacity(keys.len());
    for (chunk, rows) in keys.chunks(SpaceList::MAX).zip(rows) {
        let mut answers = vec![None; chunk.len()];
        for row in &rows {
            *answer_slot(&mut answers, row)? = Some(row.try_get(1).map_err(unavailable)?);
        }
        out.extend(answers);
    }
    Ok(out)
}

/// A report write as a statement and its parameters.
fn report_statement(w: ReportWrite) -> (Sql, Params) {
    match w {
        ReportWrite::Delete(k) => {
            let table = k.table();
            let key: Box<dyn ToSql + Send + Sync> = match k {
                ReportKey::Computer(n) | ReportKey::Installs(n) | ReportKey::Variant(n) => {
                    Box::new(n)
                }
                ReportKey::ChangeRecord(id) | ReportKey::Agent(id) | ReportKey::User(id) => {
                    Box::new(id)
                }
                ReportKey::Ci(n) | ReportKey::Components(n) | ReportKey::SharedCi(n) => Box::new(n),
                ReportKey::Step(k) => Box::new(k),
            };
            (Sql::ReportDelete(table), vec![key])
        }
        ReportWrite::Put(row) => {
            let table = row.key().table();
            // In the order of the table's shape: key column first.
            let params: Params = match row {
                ReportRow::Computer {
                    num,
                    id,
                    name,
                    status,
                } => vec![
                    Box::new(num),
                    Box::new(id),
                    Box::new(name),
                    Box::new(status),
                ],
                ReportRow::Installs { computer, variants } => {
                    vec![Box::new(computer), Box::new(variants)]
                }
                ReportRow::Variant {
                    num,
                    product,
                    name,
                    version,
                    arch,
                    source,
                    publisher,
                } => vec![
                    Box::new(num),
                    Box::new(product),
                    Box::new(name),
                    Box::new(version),
                    Box::new(arch),
                    Box::new(source),
                    Box::new(publisher),
                ],
                ReportRow::ChangeRecord {
                    id,
                    computer_id,
                    computer_name,
                    agent_id,
                    seq,
                    detected_at,
                    severity,
                    state,
                    items,
                } => vec![
                    Box::new(id),
                    Box::new(computer_id),
                    Box::new(computer_name),
                    Box::new(agent_id),
                    Box::new(seq),
                    Box::new(detected_at),
                    Box::new(severity),
                    Box::new(state),
                    Box::new(items),
                ],
                ReportRow::Agent {
                    id,
                    hostname,
                    agent_version,
                    enrolled_at,
                    revoked_at,
                    computer_id,
                    superseded_by,
                } => vec![
                    Box::new(id),
                    Box::new(hostname),
                    Box::new(agent_version),
                    Box::new(enrolled_at),
                    Box::new(revoked_at),
                    Box::new(computer_id),
                    Box::new(superseded_by),
                ],
                ReportRow::User {
                    name,
                    role,
                    created_at,
                    disabled,
                } => vec![
                    Box::new(name),
                    Box::new(role),
                    Box::new(created_at),
                    Box::new(disabled),
                ],
                ReportRow::Ci {
                    num,
                    id,
                    class,
                    name,
                    status,
                    first_seen,
                    last_seen,
                    attributes,
                } => vec![
                    Box::new(num),
                    Box::new(id),
                    Box::new(class),
                    Box::new(name),
                    Box::new(status),
                    Box::new(first_seen),
                    Box::new(last_seen),
                    Box::new(attributes),
                ],
                ReportRow::Components {
                    computer,
                    cis,
                    relationships,
                } => vec![Box::new(computer), Box::new(cis), Box::new(relationships)],
                ReportRow::SharedCi {
                    num,
                    id,
                    class,
                    name,
                    status,
                    attributes,
                } => vec![
                    Box::new(num),
                    Box::new(id),
                    Box::new(class),
                    Box::new(name),
                    Box::new(status),
                    Box::new(attributes),
                ],
                ReportRow::Step {
                    key,
                    computer,
                    step,
                    valid_from,
                    change_record,
                } => vec![
                    Box::new(key),
                    Box::new(computer),
                    Box::new(step),
                    Box::new(valid_from),
                    Box::new(change_record),
                ],
            };
            (Sql::ReportPut(table), params)
        }
    }
}

impl Sql {
    /// How many parameters the statement takes (the writes a commit combines).
    fn params(self) -> usize {
        match self {
            Sql::Upsert(_) | Sql::UpdateMany(_) | Sql::LockMany => 2,
            Sql::DeleteMany(_) | Sql::ReportDelete(_) => 1,
            Sql::ReportVariants => 7,
            Sql::ReportPut(t) => 1 + t.shape().2.len(),
            Sql::GetEach(list) | Sql::GetManyEach(list) => list.spaces().count(),
            Sql::Get(_) | Sql::GetMany(_) => 1,
            Sql::Count(_) => 0,
            Sql::Scan(_, lower, upper, _) => usize::from(lower != 0) + usize::from(upper) + 1,
            Sql::SummariesSince => 1,
        }
    }

    fn text(self) -> String {
        match self {
            Sql::Get(s) => format!("SELECT v FROM {} WHERE k = $1", table(s)),
            Sql::GetMany(s) => format!("SELECT k, v FROM {} WHERE k = ANY($1)", table(s)),
            Sql::GetEach(list) => list.union_all("v", "k = $"),
            Sql::GetManyEach(list) => list.union_all("k, v", "k = ANY($"),
            Sql::Upsert(s) => format!(
                "INSERT INTO {} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                 ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                table(s)
            ),
            Sql::UpdateMany(s) => format!(
                "UPDATE {t} SET v = u.v FROM unnest($1::bytea[], $2::bytea[]) AS u(k, v) \
                 WHERE {t}.k = u.k",
                t = table(s)
            ),
            Sql::DeleteMany(s) => format!("DELETE FROM {} WHERE k = ANY($1)", table(s)),
            Sql::Count(s) => format!("SELECT count(*) FROM {}", table(s)),
            Sql::Scan(s, lower, upper, rev) => {
                let mut conds = Vec::new();
                let mut n = 0;
                match lower {
                    1 => {
                        n += 1;
                        conds.push(format!("k >= ${n}"));
                    }
                    2 => {
                        n += 1;
                        conds.push(format!("k > ${n}"));
                    }
                    _ => {}
                }
                if upper {
                    n += 1;
                    conds.push(format!("k < ${n}"));
                }
                n += 1;
                let filter = if conds.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", conds.join(" AND "))
                };
                let order = if rev { "DESC" } else { "ASC" };
                format!(
                    "SELECT k, v FROM {}{filter} ORDER BY k {order} LIMIT ${n}",
                    table(s)
                )
            }
            // One statement, so the horizon is the xmin of the very snapshot the rows come
            // from: a transaction not visible to it has an id at or above that xmin, so its
            // rows are in the next answer.
            Sql::SummariesSince => format!(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text, \
                        coalesce(array_agg(k), '{{}}'), coalesce(array_agg(v), '{{}}') \
                 FROM {} WHERE written >= $1::text::xid8",
                table(Space::Summaries)
            ),
            Sql::LockMany => "SELECT pg_advisory_xact_lock(a, b) \
                 FROM unnest($1::int4[], $2::int4[]) AS l(a, b)"
                .into(),
            Sql::ReportPut(t) => {
                let (table, key, columns) = t.shape();
                let all: Vec<&str> = std::iter::once(key)
                    .chain(columns.iter().copied())
                    .collect();
                let params: Vec<String> = (1..=all.len()).map(|i| format!("${i}")).collect();
                let set: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{c} = EXCLUDED.{c}"))
                    .collect();
                format!(
                    "INSERT INTO {SCHEMA}.{table} ({}) VALUES ({}) ON CONFLICT ({key}) DO UPDATE SET {}",
                    all.join(", "),
                    params.join(", "),
                    set.join(", ")
                )
            }
            Sql::ReportVariants => {
                let (table, key, columns) = ReportTable::Variants.shape();
                let set: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{c} = EXCLUDED.{c}"))
                    .collect();
                format!(
                    "INSERT INTO {SCHEMA}.{table} ({key}, {}) SELECT * FROM unnest($1::int4[], \
                     $2::int4[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
                     ON CONFLICT ({key}) DO UPDATE SET {}",
                    columns.join(", "),
                    set.join(", ")
                )
            }
            Sql::ReportDelete(t) => {
                let (table, key, _) = t.shape();
                format!("DELETE FROM {SCHEMA}.{table} WHERE {key} = $1")
            }
        }
    }
}

struct Conn {
    client: Arc<Client>,
    statements: HashMap<Sql, Statement>,
    /// Commits' writes as one statement each, by their shapes (see [`combined_text`]).
    combined: HashMap<Vec<Sql>, Statement>,
    /// `None` once the connection has ended.
    io: Option<Io>,
    /// Owns `io`'s socket; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Conn>,
    open: usize,
}

pub struct PgBackend {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    options: PgOptions,
    pool: Mutex<PoolState>,
    freed: Condvar,
    /// The connection that holds (or keeps asking for) the leader lock, outside the pool:
    /// the lock lives as long as this session, so a collector that dies lets go of it.
    leader: Mutex<Option<(Conn, bool)>>,
}

/// A connection borrowed from the pool; back to it on drop unless it broke.
struct Lease<'p> {
    backend: &'p PgBackend,
    conn: Option<Conn>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut pool = self.backend.pool.lock().unwrap_or_else(|p| p.into_inner());
        match self.conn.take() {
            Some(c) if c.open() => pool.idle.push(c),
            _ => pool.open = pool.open.saturating_sub(1),
        }
        self.backend.freed.notify_one();
    }
}

impl Lease<'_> {
    fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| unavailable("connection already given back"))
    }

    fn client(&mut self) -> Result<Arc<Client>, StoreError> {
        Ok(self.conn()?.client.clone())
    }

    /// Runs `fut` (statements on this connection) to its end, bounded.
    fn run<F>(&mut self, fut: F) -> Result<F::Output, StoreError>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let bound = self.backend.bound();
        self.conn()?.run(bound, fut)
    }

    /// Drops the connection instead of giving it back (its state is unknown).
    fn discard(&mut self) {
        self.conn = None;
    }

    /// A failed statement as the store's error; a connection that failed itself (no SQL
    /// state) is not given back.
    fn failed(&mut self, e: tokio_postgres::Error) -> StoreError {
        if e.code().is_none() {
            self.discard();
        }
        unavailable(e)
    }

    fn statement(&mut self, sql: Sql) -> Result<Statement, StoreError> {
        if let Some(s) = self.conn()?.statements.get(&sql) {
            return Ok(s.clone());
        }
        let prepared = self.prepare(sql.text())?;
        self.conn()?.statements.insert(sql, prepared.clone());
        Ok(prepared)
    }

    fn prepare(&mut self, text: String) -> Result<Statement, StoreError> {
        let client = self.client()?;
        self.run(async move { client.prepare(&text).await })?
            .map_err(unavailable)
    }

    /// The statement that runs `parts` as one (see [`combined_text`]), prepared once per
    /// shape; a connection keeps at most [`MAX_COMBINED_SHAPES`] of them.
    fn combined(&mut self, parts: &[Sql]) -> Result<Statement, StoreError> {
        if let Some(s) = self.conn()?.combined.get(parts) {
            return Ok(s.clone());
        }
        let prepared = self.prepare(combined_text(parts))?;
        let combined = &mut self.conn()?.combined;
        if combined.len() >= MAX_COMBINED_SHAPES {
            combined.clear();
        }
        combined.insert(parts.to_vec(), prepared.clone());
        Ok(prepared)
    }
}

/// Commit shapes a connection keeps prepared (a few dozen occur: which spaces and report
/// tables a commit writes, and how).
const MAX_COMBINED_SHAPES: usize = 256;

/// More writes than this in one commit go as statements of their own.
const MAX_COMBINED_PARTS: usize = 40;

impl PgBackend {
    /// Connects, creates or upgrades the table layout (refusing a newer one), and keeps a
    /// pool of at most `options.pool_size` connections.
    pub fn open(options: PgOptions) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(&options.conninfo).map_err(|e| {
            StoreError::Unavailable(format!(
                "the store's connection string ({}) is not valid: {e}",
                redact(&options.conninfo)
            ))
        })?;
        if let Some(p) = &options.password {
            config.password(p.as_bytes());
        }
        config.application_name("census-collector");
        config.connect_timeout(options.connect_timeout);
        // Server-side bounds: a statement (lock waits included) and a transaction left
        // idle by a stuck collector cannot hold locks for ever.
        config.options(format!(
            "-c synchronous_commit=on -c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
            options.statement_timeout.as_millis(),
            options.statement_timeout.as_millis(),
            options.statement_timeout.as_millis() * 2,
        ));
        let tls = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => None,
            _ => Some(tls_connector(&options)?),
        };
        let backend = PgBackend {
            config,
            tls,
            options,
            pool: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
            leader: Mutex::new(None),
        };
        backend.migrate()?;
        Ok(backend)
    }

    /// How long a caller waits for one piece of work on a connection: the server's own
    /// statement bound, and some for the network.
    fn bound(&self) -> Duration {
        self.options.statement_timeout + Duration::from_secs(5)
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(unavailable)?;
        let config = self.config.clone();
        let tls = self.tls.clone();
        let refused = |e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!(
                "PostgreSQL at {} refused or did not answer: {e}",
                redact(&self.options.conninfo)
            ))
        };
        let bound = self.options.connect_timeout + Duration::from_secs(5);
        let connected = block_on(&runtime, async move {
            tokio::time::timeout(bound, async move {
                match tls {
                    Some(tls) => config.connect(tls).await.map(|(c, io)| (c, boxed(io))),
                    None => config
                        .connect(tokio_postgres::NoTls)
                        .await
                        .map(|(c, io)| (c, boxed(io))),
                }
            })
            .await
        });
        let (client, io) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(refused(&e)),
            Err(e) => return Err(refused(&e)),
        };
        Ok(Conn {
            client: Arc::new(client),
            statements: HashMap::new(),
            combined: HashMap::new(),
            io: Some(io),
            runtime: Some(runtime),
        })
    }

    fn lease(&self) -> Result<Lease<'_>, StoreError> {
        let deadline = Instant::now() + self.options.acquire_timeout;
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(mut c) = pool.idle.pop() {
                if !c.alive() {
                    pool.open = pool.open.saturating_sub(1);
                    continue;
                }
                return Ok(Lease {
                    backend: self,
                    conn: Some(c),
                });
            }
            if pool.open < self.options.pool_size.max(1) {
                pool.open += 1;
                drop(pool);
                return match self.connect() {
                    Ok(c) => Ok(Lease {
                        backend: self,
                        conn: Some(c),
                    }),
                    Err(e) => {
                        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                        pool.open = pool.open.saturating_sub(1);
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(unavailable(format!(
                    "all {} connections stayed busy for {} s",
                    self.options.pool_size,
                    self.options.acquire_timeout.as_secs()
                )));
            }
            pool = self
                .freed
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Creates the schema and applies every migration the database lacks, under a session
    /// lock so collectors starting together apply each once.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut lease = self.lease()?;
        let client = lease.client()?;
        let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        let steps: Vec<(i32, String, String)> = MIGRATIONS
            .iter()
            .map(|&(v, what)| (v, what.to_string(), migration_sql(v)))
            .collect();
        let (lock_a, lock_b) = MIGRATION_LOCK;
        let result = lease.run(async move {
            client
                .execute("SELECT pg_advisory_lock($1, $2)", &[&lock_a, &lock_b])
                .await
                .map_err(unavailable)?;
            let outcome = async {
                client
                    .batch_execute(&format!(
                        "CREATE SCHEMA IF NOT EXISTS {SCHEMA};
                         CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
                             version integer PRIMARY KEY,
                             description text NOT NULL,
                             applied_at timestamptz NOT NULL DEFAULT now());"
                    ))
                    .await
                    .map_err(unavailable)?;
                let found: Option<i32> = client
                    .query_one(
                        &format!("SELECT max(version) FROM {SCHEMA}.schema_migrations"),
                        &[],
                    )
                    .await
                    .and_then(|row| row.try_get(0))
                    .map_err(unavailable)?;
                let found = found.unwrap_or(0);
                if found > latest {
                    return Ok(Err(found));
                }
                for (version, what, sql) in steps {
                    if version <= found {
                        continue;
                    }
                    // One transaction: the new tables, their rows from what is stored, and
                    // the version, or none of them.
                    client
                        .batch_execute(&format!("BEGIN; {sql};"))
                        .await
                        .map_err(unavailable)?;
                    let mut rows = 0;
                    for space in report::backfilled_by(version) {
                        rows += backfill_report(&client, *space).await?;
                    }
                    client
                        .batch_execute(&format!(
                            "INSERT INTO {SCHEMA}.schema_migrations (version, description) VALUES ({version}, '{}'); COMMIT;",
                            what.replace('\'', "''")
                        ))
                        .await
                        .map_err(unavailable)?;
                    tracing::info!(version, description = what, report_rows = rows, "PostgreSQL migration applied");
                }
                Ok::<_, StoreError>(Ok(()))
            }
            .await;
            let _ = client
                .execute("SELECT pg_advisory_unlock($1, $2)", &[&lock_a, &lock_b])
                .await;
            outcome
        })?;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(found)) => Err(StoreError::NewerSchema {
                found: found as u32,
                supported: latest as u32,
            }),
            Err(e) => {
                // Its transaction may still be open: the connection is not given back.
                lease.discard();
                Err(e)
            }
        }
    }

    fn transact_once(
        &self,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), TxError>,
    ) -> Result<(), Attempt> {
        let mut lease = self
            .lease()
            .map_err(|e| Attempt::Failed(TxError::Store(e)))?;
        let mut tx = PgTx {
            lease: &mut lease,
            begun: false,
            locked: HashSet::new(),
            spaces: HashMap::new(),
            writes: BTreeMap::new(),
            read: HashMap::new(),
            error: None,
        };
        let outcome = body(&mut tx).and_then(|()| tx.commit());
        let error = tx.error.take();
        let begun = tx.begun;
        drop(tx);
        match outcome {
            Ok(()) => Ok(()),
            Err(e) => {
                if begun {
                    let rolled_back = lease
                        .client()
                        .and_then(|c| lease.run(async move { c.batch_execute("ROLLBACK").await }));
                    if !matches!(rolled_back, Ok(Ok(()))) {
                        lease.discard();
                    }
                }
                match error {
                    Some(code) if is_retryable(&code) => Err(Attempt::Retry),
                    _ => Err(Attempt::Failed(e)),
                }
            }
        }
    }

    /// Every transaction is durable when it returns, so `transact` and `transact_durable`
    /// are one.
    fn transact_retrying(
        &self,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), TxError>,
    ) -> Result<(), TxError> {
        const ATTEMPTS: u32 = 30;
        for attempt in 0..ATTEMPTS {
            match self.transact_once(body) {
                Ok(()) => return Ok(()),
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Retry) => {
                    // Spread the retries of transactions that met each other.
                    let jitter = (rand::random::<u64>() % 4 + 1) << attempt.min(5);
                    std::thread::sleep(Duration::from_millis(jitter));
                }
            }
        }
        Err(TxError::Store(unavailable(format!(
            "a transaction met a concurrent one {ATTEMPTS} times in a row"
        ))))
    }
}

enum Attempt {
    Retry,
    Failed(TxError),
}

fn is_retryable(code: &SqlState) -> bool {
    *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// Fills a space's report table from the bytes stored in it (a migration that adds the
/// table to a database that already holds a CMDB), a page of keys at a time.
async fn backfill_report(client: &Client, space: Space) -> Result<u64, StoreError> {
    const PAGE: i64 = 1_000;
    let page = client
        .prepare(&format!(
            "SELECT k, v FROM {} WHERE k > $1 ORDER BY k LIMIT $2",
            table(space)
        ))
        .await
        .map_err(unavailable)?;
    let mut prepared: HashMap<Sql, Statement> = HashMap::new();
    let (mut after, mut written) = (Vec::<u8>::new(), 0u64);
    loop {
        let rows = client
            .query(&page, &[&after, &PAGE])
            .await
            .map_err(unavailable)?;
        let mut writes = Vec::with_capacity(rows.len());
        for row in &rows {
            let (k, v): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
            if let Some(w) = report::project(space, &k, Some(&v))? {
                let (sql, params) = report_statement(w);
                let stmt = match prepared.get(&sql) {
                    Some(s) => s.clone(),
                    None => {
                        let s = client.prepare(&sql.text()).await.map_err(unavailable)?;
                        prepared.insert(sql, s.clone());
                        s
                    }
                };
                writes.push((stmt, params));
            }
            after = k;
        }
        written += writes.len() as u64;
        let pending = writes
            .iter()
            .map(|(stmt, params)| async move { client.execute(stmt, &as_refs(params)).await });
        for r in futures_util::future::join_all(pending).await {
            r.map_err(unavailable)?;
        }
        if (rows.len() as i64) < PAGE {
            return Ok(written);
        }
    }
}

fn migration_sql(version: i32) -> String {
    match version {
        // Values arrive compressed where compression pays (zstd), so the server is told not
        // to try again (STORAGE EXTERNAL). Tables whose rows are rewritten in place all the
        // time keep room on each page, so an update stays on its page (a HOT update: no new
        // index entry, and the old version is pruned without waiting for vacuum).
        1 => Space::ALL
            .iter()
            .map(|s| {
                let fill = if rewritten_in_place(*s) { 50 } else { 100 };
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (k bytea PRIMARY KEY, v bytea NOT NULL) \
                     WITH (fillfactor = {fill}, autovacuum_vacuum_scale_factor = 0.05, \
                     autovacuum_vacuum_cost_delay = 0);\n\
                     ALTER TABLE {t} ALTER COLUMN v SET STORAGE EXTERNAL",
                    t = table(*s)
                )
            })
            .chain(std::iter::once(super::report::REPORT_SQL.to_string()))
            .collect::<Vec<_>>()
            .join(";\n"),
        2 => super::report::REPORT_SQL_2.to_string(),
        // Each summary row carries the id of the transaction that last wrote it (64-bit,
        // so it never wraps), indexed: a collector asks for the rows written since the
        // oldest transaction still running at its last read, which covers every commit it
        // has not seen, and keeps its summary table without rereading it (see
        // `summaries_since`). Updates are stamped by a trigger, so the generic upserts
        // stay generic. Summaries change only when a computer appears, is renamed or
        // changes status.
        3 => {
            let t = table(Space::Summaries);
            format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS written xid8 NOT NULL DEFAULT pg_current_xact_id();
                 CREATE INDEX IF NOT EXISTS kv_v3_summaries_written ON {t} (written);
                 CREATE OR REPLACE FUNCTION {SCHEMA}.stamp_written() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN NEW.written := pg_current_xact_id(); RETURN NEW; END $$;
                 DROP TRIGGER IF EXISTS kv_v3_summaries_written ON {t};
                 CREATE TRIGGER kv_v3_summaries_written BEFORE UPDATE ON {t}
                   FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.stamp_written()"
            )
        }
        // Key spaces added after the first migration get their tables here.
        4 => format!(
            "CREATE TABLE IF NOT EXISTS {t} (k bytea PRIMARY KEY, v bytea NOT NULL);\n\
             ALTER TABLE {t} ALTER COLUMN v SET STORAGE EXTERNAL",
            t = table(Space::Licences)
        ),
        5..=8 => match version {
            5 => vec![Space::Services, Space::ServiceVersions],
            6 => vec![Space::Advisories, Space::AdvisoryIndex],
            7 => vec![Space::Exposures, Space::Rematch],
            _ => vec![
                Space::Addresses,
                Space::Flows,
                Space::FlowTargets,
                Space::Baselines,
            ],
        }
        .into_iter()
        .map(|space| {
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (k bytea PRIMARY KEY, v bytea NOT NULL);\n\
                     ALTER TABLE {t} ALTER COLUMN v SET STORAGE EXTERNAL",
                t = table(space)
            )
        })
        .chain(
            // The address index is filled on the next open: the meta key saying it is
            // complete goes (a byte-for-byte copy may have brought one along).
            (version == 8).then(|| {
                format!(
                    "DELETE FROM {} WHERE k = 'address_index'::bytea",
                    table(Space::Meta)
                )
            }),
        )
        .collect::<Vec<_>>()
        .join(";\n"),
        _ => String::new(),
    }
}

/// A connection's I/O (its socket and the protocol's state), run by whoever waits on it.
type Io = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

fn boxed<S, T>(connection: tokio_postgres::Connection<S, T>) -> Io
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(connection)
}

/// Runs `fut` to its end on `runtime` from any thread: directly on a plain thread or a
/// blocking-pool thread; an async worker of a multi-thread runtime first hands its other
/// tasks to another worker; inside a one-thread runtime (where that is impossible) it runs
/// on a scoped thread of its own.
fn block_on<F>(runtime: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => runtime.block_on(fut),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| runtime.block_on(fut)),
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(fut))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
    }
}

/// What waiting on a connection ended with.
enum Ran<T> {
    Done(T),
    TimedOut,
    /// The connection itself ended (the server closed it, the network broke).
    Ended(Option<tokio_postgres::Error>),
}

impl Conn {
    /// Not known to be closed.
    fn open(&self) -> bool {
        self.io.is_some() && !self.client.is_closed()
    }

    /// Runs `fut` while driving this connection's I/O, at most `bound`.
    fn run<F>(&mut self, bound: Duration, fut: F) -> Result<F::Output, StoreError>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let (Some(runtime), Some(io)) = (self.runtime.as_ref(), self.io.as_mut()) else {
            return Err(unavailable("the connection to PostgreSQL has ended"));
        };
        let ran = block_on(runtime, async move {
            let work = tokio::time::timeout(bound, fut);
            tokio::pin!(work);
            tokio::select! {
                biased;
                done = &mut work => match done {
                    Ok(v) => Ran::Done(v),
                    Err(_) => Ran::TimedOut,
                },
                ended = io => Ran::Ended(ended.err()),
            }
        });
        match ran {
            Ran::Done(v) => Ok(v),
            Ran::TimedOut => Err(unavailable(format!(
                "no answer within {} s",
                bound.as_secs()
            ))),
            Ran::Ended(e) => {
                self.close();
                Err(unavailable(match e {
                    Some(e) => format!("the connection to PostgreSQL ended: {e}"),
                    None => "the connection to PostgreSQL ended".to_string(),
                }))
            }
        }
    }

    /// Reads what the server sent while the connection sat idle in the pool (a server that
    /// restarted has closed it): `false` when it has ended.
    fn alive(&mut self) -> bool {
        let (Some(runtime), Some(io)) = (self.runtime.as_ref(), self.io.as_mut()) else {
            return false;
        };
        let ended = block_on(runtime, async move {
            // A turn of the runtime's I/O driver first, so the socket's readiness is known.
            tokio::task::yield_now().await;
            futures_util::future::poll_immediate(io).await.is_some()
        });
        if ended {
            self.close();
        }
        self.open()
    }

    fn close(&mut self) {
        // Inside its runtime, so the socket leaves that runtime's I/O driver as it drops.
        let _inside = self.runtime.as_ref().map(|r| r.enter());
        self.io = None;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
        // Dropping a runtime may block on its threads; a connection may be dropped on an
        // async worker.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn tls_connector(
    options: &PgOptions,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            let bad =
                |e: &dyn std::fmt::Display| unavailable(format!("CA file {}: {e}", path.display()));
            let certs =
                rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
            for cert in certs {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(unavailable)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

struct PgTx<'b, 'l> {
    lease: &'l mut Lease<'b>,
    begun: bool,
    locked: HashSet<(i32, i32)>,
    /// Intention-locked spaces this transaction holds the lock of: exclusively (`true`), or
    /// shared with each key's own lock.
    spaces: HashMap<Space, bool>,
    /// Held until the commit: `None` deletes.
    writes: BTreeMap<(Space, Vec<u8>), Option<Vec<u8>>>,
    /// What this transaction read: its locks keep every value as read until the commit, so
    /// a key read (or prefetched, [`Tx::prefetch`]) once is not asked for again, and a key
    /// found is still there at the commit (written with an UPDATE).
    read: HashMap<(Space, Vec<u8>), Option<Vec<u8>>>,
    /// The server's reason for the last failure, kept to tell a retry from an error.
    error: Option<SqlState>,
}

/// Parameters a pipelined step owns (the future that runs it outlives the caller's borrow).
enum Step {
    Begin,
    Lock(Statement, Vec<i32>, Vec<i32>),
    /// An intention-locked space's own lock: shared, or exclusive.
    SpaceLock(Space, bool),
    Query(Statement, Params),
    Commit,
    /// A transaction that writes WAL of its own, committed synchronously: the WAL flush
    /// that makes the asynchronous commit before it durable.
    Flush,
}

/// Not `txid_current()`: a transaction that writes no WAL skips the flush at its commit.
const FLUSH_SQL: &str = "SELECT pg_logical_emit_message(true, 'census-flush', '')";
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = off";

impl PgTx<'_, '_> {
    fn fail(&mut self, e: tokio_postgres::Error) -> TxError {
        self.error = e.code().cloned();
        TxError::Store(self.lease.failed(e))
    }

    /// The statements that open the transaction (once) and lock `keys` not yet locked.
    fn preamble(&mut self, keys: &[(Space, &[u8])]) -> Result<Vec<Step>, TxError> {
        let mut steps = Vec::new();
        if !self.begun {
            steps.push(Step::Begin);
            self.begun = true;
        }
        let mut whole: Vec<(Space, bool)> = Vec::new();
        for space in keys
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| intention_locked(*s))
            .collect::<std::collections::BTreeSet<_>>()
        {
            if self.spaces.contains_key(&space) {
                continue;
            }
            let n = keys.iter().filter(|(s, _)| *s == space).count();
            let exclusive = n > MANY_KEYS;
            self.spaces.insert(space, exclusive);
            whole.push((space, exclusive));
        }
        for (space, exclusive) in whole {
            steps.push(Step::SpaceLock(space, exclusive));
        }
        let mut wanted: Vec<(i32, i32)> = keys
            .iter()
            // The keys of a space this transaction holds exclusively need no lock of their own.
            .filter(|(s, _)| self.spaces.get(s) != Some(&true))
            .map(|(s, k)| lock_of(*s, k))
            .filter(|l| !self.locked.contains(l))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if !wanted.is_empty() {
            let stmt = self
                .lease
                .statement(Sql::LockMany)
                .map_err(TxError::Store)?;
            let (a, b): (Vec<i32>, Vec<i32>) = wanted.iter().copied().unzip();
            self.locked.extend(wanted);
            steps.push(Step::Lock(stmt, a, b));
        }
        Ok(steps)
    }

    /// Sends `steps` pipelined and answers the rows of the last query step.
    fn pipeline(&mut self, steps: Vec<Step>) -> Result<Vec<tokio_postgres::Row>, TxError> {
        Ok(self.pipeline_all(steps)?.pop().unwrap_or_default())
    }

    /// Sends `steps` pipelined and answers each step's rows.
    fn pipeline_all(&mut self, steps: Vec<Step>) -> Result<Vec<Vec<tokio_postgres::Row>>, TxError> {
        let client = self.lease.client().map_err(TxError::Store)?;
        let result = self
            .lease
            .run(async move {
                let futures = steps.into_iter().map(|step| {
                    let client = client.clone();
                    async move {
                        match step {
                            Step::Begin => client.batch_execute(BEGIN).await.map(|_| Vec::new()),
                            Step::Commit => {
                                client.batch_execute("COMMIT").await.map(|_| Vec::new())
                            }
                            Step::Flush => {
                                client.batch_execute(FLUSH_SQL).await.map(|_| Vec::new())
                            }
                            Step::Lock(stmt, a, b) => {
                                client.execute(&stmt, &[&a, &b]).await.map(|_| Vec::new())
                            }
                            Step::SpaceLock(space, exclusive) => {
                                // A table lock, not an advisory one: LOCK takes no snapshot,
                                // so a transaction queued behind a first inventory does not
                                // hold back the horizon that lets the server prune the row
                                // versions those rewrites leave (an advisory lock's SELECT
                                // waited with a snapshot, and the postings table grew 80x).
                                let mode = if exclusive {
                                    "SHARE ROW EXCLUSIVE"
                                } else {
                                    "ROW EXCLUSIVE"
                                };
                                client
                                    .batch_execute(&format!(
                                        "LOCK TABLE {} IN {mode} MODE",
                                        table(space)
                                    ))
                                    .await
                                    .map(|_| Vec::new())
                            }
                            Step::Query(stmt, params) => {
                                client.query(&stmt, &as_refs(&params)).await
                            }
                        }
                    }
                });
                futures_util::future::join_all(futures).await
            })
            .map_err(TxError::Store)?;
        let mut all = Vec::with_capacity(result.len());
        for r in result {
            match r {
                Ok(rows) => all.push(rows),
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(all)
    }

    fn commit(&mut self) -> Result<(), TxError> {
        if !self.begun && self.writes.is_empty() {
            return Ok(());
        }
        let writes = std::mem::take(&mut self.writes);
        let keys: Vec<(Space, &[u8])> = writes.keys().map(|(s, k)| (*s, k.as_slice())).collect();
        let mut steps = self.preamble(&keys)?;
        let mut by_space: BTreeMap<Space, Batch> = BTreeMap::new();
        let read = std::mem::take(&mut self.read);
        // The reporting tables follow the bytes in the same transaction.
        let mut reports = Vec::new();
        for ((space, key), value) in writes {
            if let Some(w) =
                report::project(space, &key, value.as_deref()).map_err(TxError::Store)?
            {
                reports.push(w);
            }
            let entry = by_space.entry(space).or_default();
            match value {
                Some(v) if read.get(&(space, key.clone())).is_some_and(Option::is_some) => {
                    entry.update_keys.push(key);
                    entry.update_values.push(v);
                }
                Some(v) => {
                    entry.upsert_keys.push(key);
                    entry.upsert_values.push(v);
                }
                None => entry.deletes.push(key),
            }
        }
        let mut parts: Vec<(Sql, Params)> = Vec::new();
        for (space, batch) in by_space {
            let Batch {
                update_keys,
                update_values,
                upsert_keys,
                upsert_values,
                deletes,
            } = batch;
            if !update_keys.is_empty() {
                parts.push((
                    Sql::UpdateMany(space),
                    vec![Box::new(update_keys), Box::new(update_values)],
                ));
            }
            if !upsert_keys.is_empty() {
                parts.push((
                    Sql::Upsert(space),
                    vec![Box::new(upsert_keys), Box::new(upsert_values)],
                ));
            }
            if !deletes.is_empty() {
                parts.push((Sql::DeleteMany(space), vec![Box::new(deletes)]));
            }
        }
        let mut variants = VariantColumns::default();
        for w in reports {
            if let ReportWrite::Put(row @ ReportRow::Variant { .. }) = w {
                variants.push(row);
                continue;
            }
            parts.push(report_statement(w));
        }
        if !variants.num.is_empty() {
            parts.push((Sql::ReportVariants, variants.params()));
        }
        match parts.len() {
            0 => {}
            // A bulk transaction (a copy, a rebuild) writes rows of many shapes: each its
            // own statement, as the shapes would not repeat.
            1 | MAX_COMBINED_PARTS.. => {
                for (sql, params) in parts {
                    let stmt = self.lease.statement(sql).map_err(TxError::Store)?;
                    steps.push(Step::Query(stmt, params));
                }
            }
            _ => {
                let shape: Vec<Sql> = parts.iter().map(|(sql, _)| *sql).collect();
                let stmt = self.lease.combined(&shape).map_err(TxError::Store)?;
                let params: Params = parts.into_iter().flat_map(|(_, p)| p).collect();
                steps.push(Step::Query(stmt, params));
            }
        }
        steps.push(Step::Commit);
        steps.push(Step::Flush);
        self.pipeline(steps)?;
        self.begun = false;
        Ok(())
    }
}

impl Tx for PgTx<'_, '_> {
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let wanted = (space, key.to_vec());
        if let Some(v) = self.writes.get(&wanted).or_else(|| self.read.get(&wanted)) {
            return Ok(v.clone());
        }
        let mut steps = self.preamble(&[(space, key)])?;
        let stmt = self
            .lease
            .statement(Sql::Get(space))
            .map_err(TxError::Store)?;
        steps.push(Step::Query(stmt, vec![Box::new(key.to_vec())]));
        let rows = self.pipeline(steps)?;
        let found = first_value(&rows).map_err(TxError::Store)?;
        self.read.insert(wanted, found.clone());
        Ok(found)
    }

    fn prefetch(&mut self, wanted: &[(Space, &[&[u8]])]) -> Result<(), TxError> {
        self.get_many_each(wanted).map(|_| ())
    }

    fn get_many(&mut self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, TxError> {
        Ok(self
            .get_many_each(&[(space, keys)])?
            .pop()
            .unwrap_or_default())
    }

    fn get_many_each(
        &mut self,
        wanted: &[(Space, &[&[u8]])],
    ) -> Result<Vec<Vec<Option<Vec<u8>>>>, TxError> {
        // What this transaction wrote or read answers first; the rest is one statement per
        // space, all of them (and the locks they need) sent together.
        let mut answers: Vec<Vec<Option<Option<Vec<u8>>>>> = wanted
            .iter()
            .map(|(space, keys)| {
                keys.iter()
                    .map(|k| {
                        let key = (*space, k.to_vec());
                        self.writes
                            .get(&key)
                            .or_else(|| self.read.get(&key))
                            .cloned()
                    })
                    .collect()
            })
            .collect();
        let missing: Vec<(Space, Vec<&[u8]>)> = wanted
            .iter()
            .zip(&answers)
            .map(|((space, keys), out)| {
                let keys = keys
                    .iter()
                    .zip(out)
                    .filter(|(_, o)| o.is_none())
                    .map(|(k, _)| *k)
                    .collect();
                (*space, keys)
            })
            .collect();
        let locks: Vec<(Space, &[u8])> = missing
            .iter()
            .flat_map(|(space, keys)| keys.iter().map(|k| (*space, *k)))
            .collect();
        if !locks.is_empty() {
            let mut steps = self.preamble(&locks)?;
            let asked: Vec<usize> = (0..missing.len())
                .filter(|i| !missing[*i].1.is_empty())
                .collect();
            // Several spaces to a statement, [`SpaceList::MAX`] at most, sent together.
            let first = steps.len();
            for chunk in asked.chunks(SpaceList::MAX) {
                let list =
                    SpaceList::new(chunk.iter().map(|i| missing[*i].0)).ok_or_else(|| {
                        TxError::Store(unavailable("more spaces than one read names"))
                    })?;
                let params: Params = chunk
                    .iter()
                    .map(|i| {
                        let owned: Vec<Vec<u8>> =
                            missing[*i].1.iter().map(|k| k.to_vec()).collect();
                        Box::new(owned) as Box<dyn ToSql + Send + Sync>
                    })
                    .collect();
                let stmt = self
                    .lease
                    .statement(Sql::GetManyEach(list))
                    .map_err(TxError::Store)?;
                steps.push(Step::Query(stmt, params));
            }
            let rows = self.pipeline_all(steps)?;
            let mut found = Vec::with_capacity(asked.len());
            for (chunk, rows) in asked
                .chunks(SpaceList::MAX)
                .zip(rows.into_iter().skip(first))
            {
                found.extend(keyed_values(chunk.len(), &rows).map_err(TxError::Store)?);
            }
            for (i, found) in asked.into_iter().zip(found) {
                let space = wanted[i].0;
                // A key named twice gets its value twice (regression: the second was
                // `None`, and a variant already numbered was numbered again).
                for (k, o) in wanted[i].1.iter().zip(answers[i].iter_mut()) {
                    if o.is_none() {
                        let value = found.get(*k).cloned();
                        self.read.insert((space, k.to_vec()), value.clone());
                        *o = Some(value);
                    }
                }
            }
        }
        Ok(answers
            .into_iter()
            .map(|out| out.into_iter().map(|o| o.unwrap_or(None)).collect())
            .collect())
    }

    fn get_each(&mut self, keys: &[(Space, &[u8])]) -> Result<Vec<Option<Vec<u8>>>, TxError> {
        if keys.iter().any(|(s, k)| {
            let key = (*s, k.to_vec());
            self.writes.contains_key(&key) || self.read.contains_key(&key)
        }) {
            return keys.iter().map(|(s, k)| self.get(*s, k)).collect();
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut steps = self.preamble(keys)?;
        let first = steps.len();
        for (sql, params) in each_reads(keys).map_err(TxError::Store)? {
            let stmt = self.lease.statement(sql).map_err(TxError::Store)?;
            steps.push(Step::Query(stmt, params));
        }
        let rows = self.pipeline_all(steps)?;
        let out = each_answers(keys, rows.into_iter().skip(first)).map_err(TxError::Store)?;
        for ((space, key), found) in keys.iter().zip(&out) {
            self.read.insert((*space, key.to_vec()), found.clone());
        }
        Ok(out)
    }

    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.writes
            .insert((space, key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> Result<(), TxError> {
        self.writes.insert((space, key.to_vec()), None);
        Ok(())
    }
}

impl Backend for PgBackend {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut lease = self.lease()?;
        let stmt = lease.statement(Sql::Get(space))?;
        let client = lease.client()?;
        let key = key.to_vec();
        let rows = lease
            .run(async move { client.query(&stmt, &[&key]).await })?
            .map_err(|e| lease.failed(e))?;
        first_value(&rows)
    }

    fn get_many(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut lease = self.lease()?;
        let stmt = lease.statement(Sql::GetMany(space))?;
        let client = lease.client()?;
        let owned: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        let rows = lease
            .run(async move { client.query(&stmt, &[&owned]).await })?
            .map_err(|e| lease.failed(e))?;
        let found = key_values(&rows)?;
        // A key may be asked for twice (a computer that installs two variants).
        Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
    }

    fn shared(&self) -> bool {
        true
    }

    fn durable_commits(&self) -> bool {
        true
    }

    fn summaries_since(&self, horizon: Option<u64>) -> Result<Option<WrittenSince>, StoreError> {
        let since = horizon.unwrap_or(0).to_string();
        let mut lease = self.lease()?;
        let stmt = lease.statement(Sql::SummariesSince)?;
        let client = lease.client()?;
        let row = lease
            .run(async move { client.query_one(&stmt, &[&since]).await })?
            .map_err(|e| lease.failed(e))?;
        let (Ok(next), Ok(keys), Ok(values)) = (
            row.try_get::<_, String>(0),
            row.try_get::<_, Vec<Vec<u8>>>(1),
            row.try_get::<_, Vec<Vec<u8>>>(2),
        ) else {
            return Err(StoreError::Io("summaries_since: unexpected columns".into()));
        };
        let horizon = next.parse().map_err(|_| {
            StoreError::Io(format!("summaries_since: horizon {next} is not a number"))
        })?;
        Ok(Some(WrittenSince {
            rows: keys.into_iter().zip(values).collect(),
            horizon,
        }))
    }

    fn get_each(&self, keys: &[(Space, &[u8])]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut lease = self.lease()?;
        let mut reads = Vec::new();
        for (sql, params) in each_reads(keys)? {
            reads.push((lease.statement(sql)?, params));
        }
        let client = lease.client()?;
        let answers = lease.run(async move {
            let futures = reads.into_iter().map(|(stmt, params)| {
                let client = client.clone();
                async move { client.query(&stmt, &as_refs(&params)).await }
            });
            futures_util::future::join_all(futures).await
        })?;
        let mut rows = Vec::with_capacity(answers.len());
        for r in answers {
            rows.push(r.map_err(|e| lease.failed(e))?);
        }
        each_answers(keys, rows)
    }

    fn scan(
        &self,
        space: Space,
        range: Range<'_>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        let mut lease = self.lease()?;
        // Most scans on the ingest path (a computer's recent removals, its history steps)
        // fit in one page, and one statement sees one snapshot: no transaction around it.
        if self.scan_one_page(&mut lease, space, &range, visit)? {
            return Ok(());
        }
        let client = lease.client()?;
        // Pages of one snapshot: a long scan sees one point in time, as on the embedded
        // engines. It starts again from its first page inside the transaction.
        let begun = lease.run({
            let c = client.clone();
            async move {
                c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
            }
        })?;
        if let Err(e) = begun {
            lease.discard();
            return Err(unavailable(e));
        }
        let result = self.scan_pages(&mut lease, space, range, visit);
        let ended = lease
            .client()
            .and_then(|c| lease.run(async move { c.batch_execute("COMMIT").await }));
        if !matches!(ended, Ok(Ok(()))) {
            lease.discard();
        }
        result
    }

    fn count(&self, space: Space) -> Result<usize, StoreError> {
        let mut lease = self.lease()?;
        let stmt = lease.statement(Sql::Count(space))?;
        let client = lease.client()?;
        let n = lease
            .run(async move { client.query_one(&stmt, &[]).await })?
            .map_err(|e| lease.failed(e))?;
        Ok(column::<i64>(&n, 0)?.max(0) as usize)
    }

    fn transact(
        &self,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), TxError>,
    ) -> Result<(), TxError> {
        self.transact_retrying(body)
    }

    fn transact_durable(
        &self,
        body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), TxError>,
    ) -> Result<(), TxError> {
        self.transact_retrying(body)
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.transact_retrying(&mut |tx| tx.put(space, key, value))
            .map_err(tx_store_error)
    }

    fn delete(&self, space: Space, key: &[u8]) -> Result<(), StoreError> {
        self.transact_retrying(&mut |tx| tx.delete(space, key))
            .map_err(tx_store_error)
    }

    fn load(&self, space: Space, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        // No key locks: the target of a copy has no other writer yet.
        let mut lease = self.lease()?;
        let stmt = lease.statement(Sql::Upsert(space))?;
        let client = lease.client()?;
        let mut reports = Vec::new();
        for (k, v) in pairs {
            if let Some(w) = report::project(space, k, Some(v))? {
                let (sql, params) = report_statement(w);
                reports.push((lease.statement(sql)?, params));
            }
        }
        let (keys, values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = pairs.iter().cloned().unzip();
        let r = lease.run(async move {
            client.batch_execute("BEGIN").await?;
            client.execute(&stmt, &[&keys, &values]).await?;
            let writes = reports.into_iter().map(|(stmt, params)| {
                let client = client.clone();
                async move { client.execute(&stmt, &as_refs(&params)).await }
            });
            for r in futures_util::future::join_all(writes).await {
                r?;
            }
            client.batch_execute("COMMIT").await?;
            client.batch_execute(FLUSH_SQL).await
        })?;
        if let Err(e) = r {
            // Its transaction may still be open: the connection is not given back.
            lease.discard();
            return Err(unavailable(e));
        }
        Ok(())
    }

    fn clear(&self, space: Space) -> Result<(), StoreError> {
        let mut lease = self.lease()?;
        let client = lease.client()?;
        let sql = match report::table_of(space) {
            Some(report) => format!("TRUNCATE {}, {SCHEMA}.{}", table(space), report.shape().0),
            None => format!("TRUNCATE {}", table(space)),
        };
        lease
            .run(async move { client.batch_execute(&sql).await })?
            .map_err(|e| lease.failed(e))
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every transaction was durable when it returned (see the module's note).
        Ok(())
    }

    fn lead(&self) -> Result<bool, StoreError> {
        let mut slot = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(c, _)| !c.open()) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some((self.connect()?, false));
        }
        let Some((conn, holding)) = slot.as_mut() else {
            return Ok(false);
        };
        let client = conn.client.clone();
        let (a, b) = LEADER_LOCK;
        let held = *holding;
        let bound = self.bound();
        let answer = conn.run(bound, async move {
            if held {
                // Still connected is still holding: a session lock ends only with the session.
                client.simple_query("SELECT 1").await.map(|_| true)
            } else {
                client
                    .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&a, &b])
                    .await
                    .and_then(|row| row.try_get::<_, bool>(0))
            }
        });
        match answer {
            Ok(Ok(now)) => {
                *holding = now;
                Ok(now)
            }
            Ok(Err(e)) => {
                *slot = None;
                Err(unavailable(e))
            }
            Err(e) => {
                *slot = None;
                Err(e)
            }
        }
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let mut lease = self.lease()?;
        let client = lease.client()?;
        let row = lease
            .run(async move {
                client
                    .query_one(
                        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 \
                         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
                        &[&SCHEMA],
                    )
                    .await
            })?
            .map_err(|e| lease.failed(e))?;
        Ok(column::<i64>(&row, 0)?.max(0) as u64)
    }
}

fn tx_store_error(e: TxError) -> StoreError {
    match e {
        TxError::Store(e) => e,
        TxError::Abort => unavailable("write aborted"),
    }
}

impl PgBackend {
    /// One page of a scan: keys above `lower` (inclusive when its flag says so) and below
    /// `upper`, at most `page` of them, in the scan's order.
    fn scan_page(
        &self,
        lease: &mut Lease<'_>,
        space: Space,
        lower: &Option<(Vec<u8>, bool)>,
        upper: &Option<Vec<u8>>,
        reverse: bool,
        page: i64,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let lower_kind = match lower {
            None => 0,
            Some((_, true)) => 1,
            Some((_, false)) => 2,
        };
        let stmt = lease.statement(Sql::Scan(space, lower_kind, upper.is_some(), reverse))?;
        let mut params: Params = Vec::new();
        if let Some((k, _)) = lower {
            params.push(Box::new(k.clone()));
        }
        if let Some(k) = upper {
            params.push(Box::new(k.clone()));
        }
        params.push(Box::new(page));
        let client = lease.client()?;
        lease
            .run(async move { client.query(&stmt, &as_refs(&params)).await })?
            .map_err(|e| lease.failed(e))
    }

    /// The scan's first page as one statement: visited, and `true`, when it is the whole
    /// scan; `false`, and nothing visited, when there is more.
    fn scan_one_page(
        &self,
        lease: &mut Lease<'_>,
        space: Space,
        range: &Range<'_>,
        visit: &mut Visit<'_>,
    ) -> Result<bool, StoreError> {
        const PAGE: i64 = 128;
        let lower = range.from.map(|f| (f.to_vec(), true));
        let upper = range.to.map(<[u8]>::to_vec);
        let rows = self.scan_page(lease, space, &lower, &upper, range.reverse, PAGE)?;
        if rows.len() as i64 == PAGE {
            return Ok(false);
        }
        for row in &rows {
            if visit(column(row, 0)?, column(row, 1)?)? == Flow::Stop {
                break;
            }
        }
        Ok(true)
    }

    fn scan_pages(
        &self,
        lease: &mut Lease<'_>,
        space: Space,
        range: Range<'_>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        let mut page: i64 = 128;
        // Forward: the lower bound moves past each page's last key; newest first: the upper.
        let mut lower: Option<(Vec<u8>, bool)> = range.from.map(|f| (f.to_vec(), true));
        let mut upper: Option<Vec<u8>> = range.to.map(|t| t.to_vec());
        loop {
            let rows = self.scan_page(lease, space, &lower, &upper, range.reverse, page)?;
            let full = rows.len() as i64 == page;
            let mut last: Option<Vec<u8>> = None;
            for row in &rows {
                let k: &[u8] = column(row, 0)?;
                let v: &[u8] = column(row, 1)?;
                if visit(k, v)? == Flow::Stop {
                    return Ok(());
                }
                last = Some(k.to_vec());
            }
            match (full, last) {
                (true, Some(k)) => {
                    if range.reverse {
                        upper = Some(k);
                    } else {
                        lower = Some((k, false));
                    }
                }
                _ => return Ok(()),
            }
            page = (page * 4).min(4096);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_survives_redaction() {
        assert_eq!(
            redact("postgres://census:s3cret@db.example:5432/census?sslmode=require"),
            "postgres://census@db.example:5432/census?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://db/census?password=s3cret&sslmode=disable"),
            "postgresql://db/census?password=***&sslmode=disable"
        );
        assert_eq!(
            redact("host=db user=census password=s3cret dbname=census"),
            "host=db user=census password=*** dbname=census"
        );
        let o = PgOptions::new("postgres://u:s3cret@h/d");
        assert!(!format!("{o:?}").contains("s3cret"));
    }

    #[test]
    fn keys_lock_apart_within_and_across_spaces() {
        assert_ne!(lock_of(Space::Agents, b"a1"), lock_of(Space::Agents, b"a2"));
        assert_ne!(
            lock_of(Space::Agents, b"a1"),
            lock_of(Space::AgentKeys, b"a1")
        );
        assert_ne!(lock_of(Space::Reverse, b"x"), lock_of(Space::Reverse, b"y"));
        // Stable across processes: collectors share these locks.
        assert_eq!(lock_of(Space::Meta, b"").1, 0x811c_9dc5_u32 as i32);
    }

    /// The highest `$n` in a statement's text.
    fn placeholders(text: &str) -> usize {
        text.split('$')
            .skip(1)
            .filter_map(|t| {
                t.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    }

    fn every_shape() -> Vec<Sql> {
        use ReportTable::*;
        let mut all = vec![Sql::LockMany, Sql::ReportVariants, Sql::SummariesSince];
        for t in [
            Computers,
            Installs,
            Variants,
            ChangeRecords,
            Agents,
            Users,
            Cis,
            Components,
            SharedCis,
            Steps,
        ] {
            all.extend([Sql::ReportPut(t), Sql::ReportDelete(t)]);
        }
        for s in Space::ALL {
            all.extend([
                Sql::Get(s),
                Sql::GetMany(s),
                Sql::Upsert(s),
                Sql::UpdateMany(s),
                Sql::DeleteMany(s),
                Sql::Count(s),
            ]);
            for lower in 0..3 {
                for upper in [false, true] {
                    all.push(Sql::Scan(s, lower, upper, false));
                }
            }
        }
        let list = SpaceList::new([Space::Computers, Space::Installs, Space::Seen]);
        all.extend(list.map(Sql::GetEach));
        all.extend(list.map(Sql::GetManyEach));
        all
    }

    #[test]
    fn every_statement_takes_the_parameters_its_text_names() {
        for sql in every_shape() {
            assert_eq!(sql.params(), placeholders(&sql.text()), "{sql:?}");
        }
    }

    #[test]
    fn combined_writes_number_their_parameters_one_after_another() {
        let parts = [
            Sql::UpdateMany(Space::Agents),
            Sql::ReportPut(ReportTable::Cis),
            Sql::DeleteMany(Space::Reverse),
        ];
        let text = combined_text(&parts);
        assert_eq!(placeholders(&text), 2 + 8 + 1);
        assert!(text.starts_with("WITH w0 AS (UPDATE census.kv_agents SET v = u.v FROM unnest($1::bytea[], $2::bytea[])"), "{text}");
        assert!(
            text.contains("w2 AS (DELETE FROM census.kv_v3_reverse WHERE k = ANY($11))"),
            "{text}"
        );
        assert_eq!(shift_placeholders("a $1, $10 $ x", 5), "a $6, $15 $ x");
    }

    #[test]
    fn a_space_list_keeps_its_spaces_in_order_and_refuses_too_many() {
        let spaces = [Space::Seen, Space::Meta, Space::Computers];
        let list = SpaceList::new(spaces).unwrap();
        assert_eq!(list.spaces().collect::<Vec<_>>(), spaces);
        assert!(SpaceList::new(Space::ALL).is_none());
        assert_eq!(
            Sql::GetEach(list).text(),
            "SELECT 0::int4 AS i, v FROM census.kv_v3_seen WHERE k = $1 UNION ALL \
             SELECT 1::int4 AS i, v FROM census.kv_meta WHERE k = $2 UNION ALL \
             SELECT 2::int4 AS i, v FROM census.kv_v3_computers WHERE k = $3"
        );
        assert_eq!(
            Sql::GetManyEach(SpaceList::new([Space::Seen, Space::Meta]).unwrap()).text(),
            "SELECT 0::int4 AS i, k, v FROM census.kv_v3_seen WHERE k = ANY($1) UNION ALL \
             SELECT 1::int4 AS i, k, v FROM census.kv_meta WHERE k = ANY($2)"
        );
    }

    #[test]
    fn scan_statements_bound_what_they_are_asked() {
        assert_eq!(
            Sql::Scan(Space::Feed, 2, true, true).text(),
            "SELECT k, v FROM census.kv_feed WHERE k > $1 AND k < $2 ORDER BY k DESC LIMIT $3"
        );
        assert_eq!(
            Sql::Scan(Space::Feed, 0, false, false).text(),
            "SELECT k, v FROM census.kv_feed ORDER BY k ASC LIMIT $1"
        );
    }
}
