//! Writing and reading snapshot files (format in mod.rs).

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// First bytes of every snapshot.
pub const MAGIC: &[u8; 12] = b"RAFTCDSNAP01";
const RECORD: u8 = 0x01;
const END: u8 = 0xFF;
/// Refuse absurd record sizes from a corrupt or hostile file instead of allocating them.
const MAX_FIELD: usize = 64 * 1024 * 1024;
/// Longest possible tail after the END tag: padding (< 512) and the sha256.
const MAX_TAIL: usize = 511 + 32;

/// Streams a snapshot into any writer while hashing it.
pub struct SnapshotWriter<W: Write> {
    out: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a snapshot of the state at raft `index`/`term`.
    pub fn new(out: W, index: u64, term: u64) -> Result<SnapshotWriter<W>> {
        let mut w = SnapshotWriter { out, hash: Sha256::new(), len: 0 };
        w.put(MAGIC)?;
        w.put(&index.to_be_bytes())?;
        w.put(&term.to_be_bytes())?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(|e| Error::Storage(format!("snapshot write: {e}")))?;
        self.hash.update(b);
        self.len += b.len() as u64;
        Ok(())
    }

    /// Adds one key/value of the state tree.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put(&[RECORD])?;
        self.put(&(key.len() as u32).to_be_bytes())?;
        self.put(key)?;
        self.put(&(value.len() as u32).to_be_bytes())?;
        self.put(value)
    }

    /// Ends the records, pads to the etcd-checked alignment and appends the sha256. Returns the writer and
    /// the total length.
    pub fn finish(mut self) -> Result<(W, u64)> {
        self.put(&[END])?;
        let pad = (512 - (self.len % 512)) % 512;
        self.put(&vec![0u8; pad as usize])?;
        let digest = self.hash.clone().finalize();
        self.out.write_all(&digest).map_err(|e| Error::Storage(format!("snapshot write: {e}")))?;
        self.out.flush().map_err(|e| Error::Storage(format!("snapshot write: {e}")))?;
        Ok((self.out, self.len + 32))
    }
}

/// Reads a snapshot's records; `finish` checks the trailer.
pub struct SnapshotReader<R: Read> {
    input: R,
    hash: Sha256,
    /// Raft index of the snapshot.
    pub index: u64,
    /// Raft term of the snapshot.
    pub term: u64,
    done: bool,
}

fn corrupt(what: &str) -> Error {
    Error::InvalidArgument(format!("snapshot file is corrupt or truncated: {what}"))
}

impl<R: Read> SnapshotReader<R> {
    /// Opens a snapshot stream and reads its header.
    pub fn new(mut input: R) -> Result<SnapshotReader<R>> {
        let mut head = [0u8; 28];
        input.read_exact(&mut head).map_err(|_| corrupt("short header"))?;
        if &head[..12] != MAGIC {
            return Err(corrupt("not a raftcd snapshot"));
        }
        let mut hash = Sha256::new();
        hash.update(head);
        let index = u64::from_be_bytes(head[12..20].try_into().unwrap_or_default());
        let term = u64::from_be_bytes(head[20..28].try_into().unwrap_or_default());
        Ok(SnapshotReader { input, hash, index, term, done: false })
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        if n > MAX_FIELD {
            return Err(corrupt("record too large"));
        }
        // Grows with what is actually there, so a truncated file claiming a huge record allocates little.
        let mut b = Vec::new();
        (&mut self.input).take(n as u64).read_to_end(&mut b).map_err(|_| corrupt("truncated record"))?;
        if b.len() != n {
            return Err(corrupt("truncated record"));
        }
        self.hash.update(&b);
        Ok(b)
    }

    fn take_u32(&mut self) -> Result<usize> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(b[..].try_into().unwrap_or_default()) as usize)
    }

    /// The next (key, value), or None after the last record.
    pub fn next_record(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.done {
            return Ok(None);
        }
        let tag = self.take(1)?[0];
        match tag {
            RECORD => {
                let kl = self.take_u32()?;
                let k = self.take(kl)?;
                let vl = self.take_u32()?;
                let v = self.take(vl)?;
                Ok(Some((k, v)))
            }
            END => {
                self.done = true;
                Ok(None)
            }
            _ => Err(corrupt("unknown record tag")),
        }
    }

    /// After the last record: reads the padding and checks the sha256 trailer (unless `skip_hash`).
    pub fn finish(mut self, skip_hash: bool) -> Result<()> {
        if !self.done {
            while self.next_record()?.is_some() {}
        }
        // At most 511 bytes of padding and the 32-byte trailer: read one byte more to see garbage beyond.
        let mut rest = Vec::new();
        (&mut self.input).take(MAX_TAIL as u64 + 1).read_to_end(&mut rest).map_err(|e| corrupt(&e.to_string()))?;
        if rest.len() > MAX_TAIL {
            return Err(corrupt("garbage after the records"));
        }
        if rest.len() < 32 {
            return Err(corrupt("missing sha256 trailer"));
        }
        let (pad, trailer) = rest.split_at(rest.len() - 32);
        if pad.iter().any(|b| *b != 0) {
            return Err(corrupt("garbage after the records"));
        }
        self.hash.update(pad);
        if !skip_hash && self.hash.finalize()[..] != trailer[..] {
            return Err(corrupt("sha256 mismatch"));
        }
        Ok(())
    }
}

/// Reads only the header (index, term) of a snapshot.
pub fn read_header(r: impl Read) -> Result<(u64, u64)> {
    let s = SnapshotReader::new(r)?;
    Ok((s.index, s.term))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new(), 42, 7).unwrap();
        w.record(b"k1", b"v1").unwrap();
        w.record(b"k2", &[0u8; 1000]).unwrap();
        let (buf, len) = w.finish().unwrap();
        assert_eq!(buf.len() as u64, len);
        buf
    }

    #[test]
    fn round_trip_and_etcd_alignment() {
        let buf = sample();
        assert_eq!(buf.len() % 512, 32, "etcdctl snapshot save checks size % 512 == 32");
        let mut r = SnapshotReader::new(&buf[..]).unwrap();
        assert_eq!((r.index, r.term), (42, 7));
        assert_eq!(r.next_record().unwrap().unwrap().0, b"k1");
        assert_eq!(r.next_record().unwrap().unwrap().1.len(), 1000);
        assert!(r.next_record().unwrap().is_none());
        r.finish(false).unwrap();
        let digest = Sha256::digest(&buf[..buf.len() - 32]);
        assert_eq!(&digest[..], &buf[buf.len() - 32..]);
    }

    /// A hostile tail (megabytes after the END tag) is refused after reading at most the longest legal tail,
    /// and a truncated record claiming a huge length fails without allocating it.
    #[test]
    fn oversized_tail_and_claimed_lengths_are_refused() {
        let mut buf = sample();
        buf.extend(std::iter::repeat_n(0u8, 8 << 20));
        let mut r = SnapshotReader::new(&buf[..]).unwrap();
        while r.next_record().unwrap().is_some() {}
        let e = r.finish(true).unwrap_err();
        assert!(e.to_string().contains("garbage after the records"), "{e}");

        let mut head = sample()[..28].to_vec();
        head.push(RECORD);
        head.extend_from_slice(&(MAX_FIELD as u32).to_be_bytes());
        head.extend_from_slice(b"short");
        let mut r = SnapshotReader::new(&head[..]).unwrap();
        let e = r.next_record().unwrap_err();
        assert!(e.to_string().contains("truncated record"), "{e}");
    }

    #[test]
    fn flipped_byte_and_truncation_are_refused() {
        let mut buf = sample();
        buf[40] ^= 1;
        let mut r = SnapshotReader::new(&buf[..]).unwrap();
        let res = (|| {
            while r.next_record()?.is_some() {}
            Ok::<_, Error>(())
        })();
        assert!(res.is_err() || r.finish(false).is_err());
        let buf = sample();
        let cut = &buf[..buf.len() - 100];
        let mut r = SnapshotReader::new(cut).unwrap();
        let failed = loop {
            match r.next_record() {
                Ok(Some(_)) => continue,
                Ok(None) => break r.finish(false).is_err(),
                Err(_) => break true,
            }
        };
        assert!(failed);
    }
}
