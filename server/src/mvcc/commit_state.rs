//! The commit state: what every commit changes (applied index, revision, live keys, bytes written), kept
//! as one value, how stores and snapshot files of earlier builds hold it, the store-format mark, and the
//! upgrade of a tree from an earlier format.

use super::revision::be8;
use super::{get_i64, META_APPLIED_INDEX, META_KEY_COUNT, META_REV, META_SIZE_WRITTEN};
use crate::error::{Error, Result};

/// What every commit changes, in ONE value (see [`CommitState`]).
pub const META_STATE: &[u8] = b"mstate";
/// The store layout version. 1 (no mark): the commit state in four keys, live values in `k`; 2: `mstate`;
/// 3: no `k` (a key's newest `h` record is its live value). A build refuses to open a store marked with a
/// format above its own, so that a downgrade past a format change stops with an error instead of
/// misreading the data. Raise it with every change to what a tree holds.
///
/// Snapshot files have no mark and keep the layout of format 1 (`k` included), which every build installs.
pub const STORE_FORMAT: u64 = 3;
pub const META_FORMAT: &[u8] = b"mformat";
/// The keys `mstate` replaced.
pub(crate) const LEGACY_STATE_KEYS: [&[u8]; 4] = [META_APPLIED_INDEX, META_REV, META_KEY_COUNT, META_SIZE_WRITTEN];

/// Receives the records of a snapshot file: `(key, value)`.
pub type EmitRecord<'e> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'e;

/// The meta every commit writes, as one 32-byte value under `mstate`: applied index (u64), revision, live
/// keys and bytes written (i64), big endian. One sled insert per commit instead of four: sled copies a tree
/// node for each insert, and with one client a commit carries one put (three inserts of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitState {
    pub applied_index: u64,
    pub revision: i64,
    pub key_count: i64,
    pub size_written: i64,
}

impl Default for CommitState {
    /// An empty store: revision 1, nothing applied.
    fn default() -> Self {
        CommitState { applied_index: 0, revision: 1, key_count: 0, size_written: 0 }
    }
}

impl CommitState {
    pub fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&self.applied_index.to_be_bytes());
        out[8..16].copy_from_slice(&self.revision.to_be_bytes());
        out[16..24].copy_from_slice(&self.key_count.to_be_bytes());
        out[24..].copy_from_slice(&self.size_written.to_be_bytes());
        out
    }

    pub fn decode(v: &[u8]) -> Result<CommitState> {
        if v.len() != 32 {
            return Err(Error::Storage(format!("mvcc: commit state of {} bytes, expected 32", v.len())));
        }
        Ok(CommitState {
            applied_index: u64::from_be_bytes(be8(&v[..8])?),
            revision: i64::from_be_bytes(be8(&v[8..16])?),
            key_count: i64::from_be_bytes(be8(&v[16..24])?),
            size_written: i64::from_be_bytes(be8(&v[24..])?),
        })
    }

    /// Reads the state from `mstate`, or from the four keys of earlier builds when `mstate` is absent. The
    /// flag says whether any of those old keys is still there.
    pub(crate) fn load(tree: &sled::Tree) -> Result<(CommitState, bool)> {
        let mut legacy = false;
        for k in LEGACY_STATE_KEYS {
            legacy |= tree.contains_key(k)?;
        }
        if let Some(v) = tree.get(META_STATE)? {
            return Ok((CommitState::decode(&v)?, legacy));
        }
        let applied_index = match tree.get(META_APPLIED_INDEX)? {
            Some(v) => u64::from_be_bytes(be8(&v)?),
            None => 0,
        };
        let state = CommitState {
            applied_index,
            revision: get_i64(tree, META_REV)?.unwrap_or(1),
            key_count: get_i64(tree, META_KEY_COUNT)?.unwrap_or(0),
            size_written: get_i64(tree, META_SIZE_WRITTEN)?.unwrap_or(0),
        };
        Ok((state, legacy))
    }

    /// Passes one tree record on to a snapshot file, with `mstate` written as the four keys of earlier
    /// builds and no format mark: snapshot files keep the layout every version reads, since an older
    /// member may receive one from an upgraded leader during a rolling upgrade (and older tools restore
    /// backups). A store opened from such a file is upgraded by [`upgrade`].
    pub fn to_file(key: &[u8], value: &[u8], emit: &mut EmitRecord<'_>) -> Result<()> {
        if key == META_FORMAT {
            return Ok(());
        }
        if key != META_STATE {
            return emit(key, value);
        }
        let s = CommitState::decode(value)?;
        emit(META_APPLIED_INDEX, &s.applied_index.to_be_bytes())?;
        emit(META_KEY_COUNT, &s.key_count.to_be_bytes())?;
        emit(META_REV, &s.revision.to_be_bytes())?;
        emit(META_SIZE_WRITTEN, &s.size_written.to_be_bytes())
    }

    /// Folds one record of a snapshot file (a dump of the tree, either layout) into the state; true if the
    /// record was part of it. Lenient: a malformed value counts as absent, as offline tools do elsewhere.
    pub fn observe(&mut self, key: &[u8], value: &[u8]) -> bool {
        let int = || value.try_into().map(i64::from_be_bytes).unwrap_or(0);
        match key {
            k if k == META_STATE => {
                if let Ok(s) = CommitState::decode(value) {
                    *self = s;
                }
            }
            k if k == META_APPLIED_INDEX => self.applied_index = int() as u64,
            k if k == META_REV => self.revision = int(),
            k if k == META_KEY_COUNT => self.key_count = int(),
            k if k == META_SIZE_WRITTEN => self.size_written = int(),
            _ => return false,
        }
        true
    }
}

/// Brings `tree` to [`STORE_FORMAT`]; a no-op (two lookups) on a tree already there. Refuses a tree marked
/// with a newer format.
///
/// From format 1 or 2: the commit state goes into `mstate` and the mark is written, in ONE batch, so that
/// a build of format 2 refuses the tree from then on (builds of format 1 predate the mark; the README
/// says not to downgrade past them). The legacy live copies `k` are left for
/// [`Store::remove_live_copies`](super::Store::remove_live_copies): nothing reads them, and removing a
/// million of them takes about 25 s, too long to hold up a member's start.
pub(crate) fn upgrade(tree: &sled::Tree) -> Result<()> {
    let format = match tree.get(META_FORMAT)? {
        Some(v) => Some(u64::from_be_bytes(be8(&v)?)),
        None => None,
    };
    if let Some(f) = format.filter(|&f| f > STORE_FORMAT) {
        return Err(Error::Storage(format!(
            "mvcc: the data is in store format {f}, newer than this build reads ({STORE_FORMAT}): run the newer \
             raftcd that wrote it"
        )));
    }
    let (state, legacy_state) = CommitState::load(tree)?;
    if format == Some(STORE_FORMAT) && !legacy_state {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for k in LEGACY_STATE_KEYS {
        batch.remove(k);
    }
    batch.insert(META_STATE, &state.encode());
    batch.insert(META_FORMAT, &STORE_FORMAT.to_be_bytes());
    tree.apply_batch(batch)?;
    tracing::info!(from = ?format, to = STORE_FORMAT, "upgraded the store format");
    Ok(())
}
