//! A revision: the main revision of a write request plus the sub revision of one change inside it.
//!
//! Encoded as 16 bytes, `main` then `sub`, each a big-endian u64, so that byte order equals numeric order
//! (both parts are never negative).

use crate::error::{Error, Result};

/// Bytes of an encoded [`Revision`].
pub const REVISION_LEN: usize = 16;

/// One change of the store: `main` numbers the write request (one raft entry), `sub` the change inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    /// The store revision of the write request.
    pub main: i64,
    /// The index of the change inside that request, from 0.
    pub sub: i64,
}

impl Revision {
    /// A revision from its parts.
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// The 16-byte big-endian encoding. Negative parts (never produced by the store) are clamped to 0.
    pub fn to_bytes(self) -> [u8; REVISION_LEN] {
        let mut out = [0u8; REVISION_LEN];
        out[..8].copy_from_slice(&(self.main.max(0) as u64).to_be_bytes());
        out[8..].copy_from_slice(&(self.sub.max(0) as u64).to_be_bytes());
        out
    }

    /// Decodes exactly [`REVISION_LEN`] bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Revision> {
        if b.len() != REVISION_LEN {
            return Err(Error::Storage(format!("mvcc: revision of {} bytes", b.len())));
        }
        let main = u64::from_be_bytes(be8(&b[..8])?);
        let sub = u64::from_be_bytes(be8(&b[8..])?);
        if main > i64::MAX as u64 || sub > i64::MAX as u64 {
            return Err(Error::Storage("mvcc: revision out of range".into()));
        }
        Ok(Revision { main: main as i64, sub: sub as i64 })
    }
}

/// Eight bytes as an array, or a storage error.
pub(crate) fn be8(b: &[u8]) -> Result<[u8; 8]> {
    b.try_into().map_err(|_| Error::Storage(format!("mvcc: expected 8 bytes, found {}", b.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_numeric_order() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 255),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(256, 0),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for w in revs.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_bytes() < w[1].to_bytes());
        }
        for r in revs {
            assert_eq!(Revision::from_bytes(&r.to_bytes()).unwrap(), r);
        }
    }

    #[test]
    fn corrupt_revisions_are_errors() {
        assert!(matches!(Revision::from_bytes(&[1, 2, 3]), Err(Error::Storage(_))));
        assert!(matches!(Revision::from_bytes(&[0xff; 16]), Err(Error::Storage(_))));
    }
}
