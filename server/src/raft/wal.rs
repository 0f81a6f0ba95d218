//! The raft log's write-ahead files (`member/wal/`), outside sled.
//!
//! The Ready loop's fsync point is one `fdatasync` of the current segment: entries and hard state reach the
//! disk without going through sled, whose flush costs far more (it serializes tree pages and wakes its IO
//! threads) and, on its own, is not durable at all (see `crate::durable`). sled is made durable only before
//! the log is compacted or reset, so the log always covers what sled may have lost.
//!
//! # Files
//! Segments `<seq, 16 hex digits>.wal`, numbered from 1, each preallocated to the segment size (so that an
//! fdatasync does not also have to commit a new file size). Only the last segment is written; a new one is
//! created as `<seq>.wal.tmp`, preallocated, synced, renamed and the directory synced, so a segment name on
//! disk always means a complete, empty-or-valid file.
//!
//! # Records
//! ```text
//! crc32 (u32 LE, over kind and payload) | payload length (u32 LE) | kind (u8) | payload
//! ```
//! A header of zeros ends a segment (the preallocated space is zeros). In the last segment, a record that is
//! cut short or fails its checksum ends the log: it was being written when the process or machine died, so
//! it was never synced and never acknowledged. The bytes from there on are zeroed at open, so a later,
//! shorter record cannot be followed by a stale one. The same damage in an earlier segment is corruption.
//!
//! This layer knows nothing of raft: [`super::storage`] gives the record kinds their meaning.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::db_dir::sync_dir;
use crate::error::{Error, Result};

/// Bytes each new segment is preallocated to; a segment is cut when the next record would cross it.
pub const SEGMENT_BYTES: u64 = 64 << 20;

const HEADER: usize = 9;
const SUFFIX: &str = ".wal";
const TMP_SUFFIX: &str = ".wal.tmp";

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("wal {}: {e}", path.display()))
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SUFFIX)?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten()
}

/// One record read back at open: its kind, where its payload lies, and the payload.
pub struct Record<'a> {
    pub kind: u8,
    pub seq: u64,
    pub offset: u64,
    pub payload: &'a [u8],
}

struct Segment {
    seq: u64,
    file: File,
    /// Highest raft index any record in this segment mentions (see [`Wal::note_index`]).
    max_index: u64,
}

/// The open segments of a log directory; appends go to the last one.
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    /// Ordered by sequence number; never empty.
    segments: Vec<Segment>,
    /// End of the last valid record in the current segment: where the next one goes.
    write_at: u64,
}

fn encode(kind: u8, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::Storage("wal: record too large".into()))?;
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    Ok(out)
}

/// The valid records of one segment's bytes, and where they end. `Err(offset)` at a damaged record.
fn parse(data: &[u8], seq: u64) -> (Vec<Record<'_>>, usize, Option<usize>) {
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        let Some(h) = data.get(at..at + HEADER) else { return (out, at, None) };
        let crc = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let kind = h[8];
        if kind == 0 && len == 0 && crc == 0 {
            return (out, at, None);
        }
        let Some(payload) = data.get(at + HEADER..at + HEADER + len) else { return (out, at, Some(at)) };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[kind]);
        hasher.update(payload);
        if kind == 0 || hasher.finalize() != crc {
            return (out, at, Some(at));
        }
        out.push(Record { kind, seq, offset: (at + HEADER) as u64, payload });
        at += HEADER + len;
    }
}

impl Wal {
    /// Opens the log in `dir` (created, with one empty segment, if missing) and hands every valid record, in
    /// order, to `replay`, which returns the highest raft index the record mentions (0 for none). One
    /// segment is in memory at a time. A torn tail of the last segment is cut off (zeroed and synced).
    pub fn open(dir: &Path, segment_bytes: u64, replay: &mut dyn FnMut(Record<'_>) -> Result<u64>) -> Result<Wal> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let entry = entry.map_err(|e| io_err(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TMP_SUFFIX) {
                // A segment that was never renamed into place: it holds nothing.
                std::fs::remove_file(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
            } else if let Some(seq) = parse_name(&name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut wal = Wal { dir: dir.to_path_buf(), segment_bytes, segments: Vec::new(), write_at: 0 };
        if seqs.is_empty() {
            wal.create_segment(1)?;
            return Ok(wal);
        }
        let last = seqs.len() - 1;
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(segment_name(seq));
            let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| io_err(&path, e))?;
            let data = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
            let (found, end, damaged) = parse(&data, seq);
            if let Some(at) = damaged {
                if i != last {
                    return Err(Error::Storage(format!(
                        "wal {}: damaged record at offset {at} in a segment that is not the last",
                        path.display()
                    )));
                }
                // Zero everything after the last valid record that is not zero already.
                let garbage_end = data.iter().rposition(|&b| b != 0).map_or(end, |p| p + 1);
                if garbage_end > end {
                    let segment = path.display();
                    tracing::warn!(%segment, offset = end, "cutting off a torn record at the end of the raft log");
                    file.write_all_at(&vec![0u8; garbage_end - end], end as u64).map_err(|e| io_err(&path, e))?;
                    file.sync_data().map_err(|e| io_err(&path, e))?;
                }
            }
            let mut max_index = 0;
            for r in found {
                max_index = max_index.max(replay(r)?);
            }
            if i == last {
                wal.write_at = end as u64;
            }
            wal.segments.push(Segment { seq, file, max_index });
        }
        Ok(wal)
    }

    /// Creates segment `seq`, preallocated, under a temporary name first; it becomes the current one.
    fn create_segment(&mut self, seq: u64) -> Result<()> {
        let tmp = self.dir.join(format!("{seq:016x}{TMP_SUFFIX}"));
        let path = self.dir.join(segment_name(seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        preallocate(&file, self.segment_bytes).map_err(|e| io_err(&tmp, e))?;
        file.sync_all().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment { seq, file, max_index: 0 });
        self.write_at = 0;
        Ok(())
    }

    /// Whether a record with `payload_len` bytes should go to a new segment.
    pub fn needs_cut(&self, payload_len: usize) -> bool {
        self.write_at > 0 && self.write_at + (HEADER + payload_len) as u64 > self.segment_bytes
    }

    /// Syncs the current segment and starts the next one.
    pub fn cut(&mut self) -> Result<()> {
        self.sync()?;
        let next = self.current().seq + 1;
        self.create_segment(next)
    }

    fn current(&self) -> &Segment {
        // `open` leaves at least one segment and nothing removes the last.
        &self.segments[self.segments.len() - 1]
    }

    /// Writes one record at the end of the current segment (not synced); returns its segment and payload
    /// offset. `index` is the highest raft index the record mentions (0 for none).
    pub fn append(&mut self, kind: u8, payload: &[u8], index: u64) -> Result<(u64, u64)> {
        let bytes = encode(kind, payload)?;
        let at = self.write_at;
        let last = self.segments.len() - 1;
        let seg = &mut self.segments[last];
        let path = self.dir.join(segment_name(seg.seq));
        seg.file.write_all_at(&bytes, at).map_err(|e| io_err(&path, e))?;
        seg.max_index = seg.max_index.max(index);
        self.write_at = at + bytes.len() as u64;
        Ok((seg.seq, at + HEADER as u64))
    }

    /// The fsync point: makes every record appended so far durable.
    pub fn sync(&self) -> Result<()> {
        let seg = self.current();
        seg.file.sync_data().map_err(|e| io_err(&self.dir.join(segment_name(seg.seq)), e))
    }

    /// Reads `len` payload bytes at `offset` of segment `seq`.
    pub fn read(&self, seq: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        let i = self
            .segments
            .binary_search_by_key(&seq, |s| s.seq)
            .map_err(|_| Error::Storage(format!("wal: segment {seq} is gone")))?;
        let mut buf = vec![0u8; len];
        self.segments[i]
            .file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| io_err(&self.dir.join(segment_name(seq)), e))?;
        Ok(buf)
    }

    /// Removes the leading segments (never the current one) in which every index is at or below `index`.
    /// Returns how many went.
    pub fn remove_through(&mut self, index: u64) -> Result<usize> {
        let removable = self.segments[..self.segments.len() - 1].iter().take_while(|s| s.max_index <= index).count();
        self.remove_first(removable)
    }

    /// Removes every segment but the current one (after the log was reset to a snapshot).
    pub fn remove_all_but_current(&mut self) -> Result<usize> {
        self.remove_first(self.segments.len() - 1)
    }

    fn remove_first(&mut self, n: usize) -> Result<usize> {
        if n == 0 {
            return Ok(0);
        }
        for seg in self.segments.drain(..n) {
            let path = self.dir.join(segment_name(seg.seq));
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        }
        sync_dir(&self.dir)?;
        Ok(n)
    }

    /// Sequence numbers of the segments on disk.
    pub fn segment_seqs(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.seq).collect()
    }
}

/// Allocates `len` bytes of `file` on disk (zeros), so that writes into it do not grow the file.
fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        // File systems without fallocate: the file grows as records are written.
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::INVAL => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, segment_bytes: u64) -> (Wal, Vec<(u8, Vec<u8>)>) {
        let mut found = Vec::new();
        let w = Wal::open(dir, segment_bytes, &mut |r| {
            found.push((r.kind, r.payload.to_vec()));
            Ok(0)
        })
        .unwrap();
        (w, found)
    }

    fn records(dir: &Path) -> Vec<(u8, Vec<u8>)> {
        open(dir, 1 << 16).1
    }

    #[test]
    fn records_survive_reopen_and_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, found) = open(dir.path(), 256);
        assert!(found.is_empty());
        let mut want = Vec::new();
        for i in 0..40u8 {
            let payload = vec![i; 10 + i as usize];
            if w.needs_cut(payload.len()) {
                w.cut().unwrap();
            }
            w.append(1 + i % 4, &payload, u64::from(i)).unwrap();
            want.push((1 + i % 4, payload));
        }
        w.sync().unwrap();
        assert!(w.segment_seqs().len() > 3, "small segments must have been cut: {:?}", w.segment_seqs());
        drop(w);
        assert_eq!(records(dir.path()), want);
    }

    /// A crash can leave any prefix of the last record on disk: every cut point reads back as exactly the
    /// records before it, and appending afterwards continues cleanly.
    #[test]
    fn a_torn_tail_is_cut_at_every_byte() {
        let base = tempfile::tempdir().unwrap();
        let (mut w, _) = open(base.path(), 4096);
        w.append(1, b"first record", 1).unwrap();
        w.append(2, b"second", 2).unwrap();
        w.sync().unwrap();
        let seg = base.path().join(segment_name(1));
        let good = std::fs::read(&seg).unwrap();
        let end = 2 * HEADER + 12 + 6;
        let last = encode(3, &[0xAB; 40]).unwrap();
        for cut in 0..=last.len() {
            for flip in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let mut data = good.clone();
                data[end..end + cut].copy_from_slice(&last[..cut]);
                if flip && cut > HEADER {
                    data[end + cut - 1] ^= 0x55;
                }
                std::fs::write(dir.path().join(segment_name(1)), &data).unwrap();
                let got = records(dir.path());
                let complete = cut == last.len() && !flip;
                assert_eq!(got.len(), if complete { 3 } else { 2 }, "cut {cut} flip {flip}");
                let (mut w, _) = open(dir.path(), 4096);
                w.append(4, b"after", 5).unwrap();
                w.sync().unwrap();
                drop(w);
                let got = records(dir.path());
                assert_eq!(got.last().unwrap(), &(4, b"after".to_vec()), "cut {cut} flip {flip}");
                assert_eq!(got.len(), if complete { 4 } else { 3 }, "cut {cut} flip {flip}");
            }
        }
    }

    #[test]
    fn damage_before_the_last_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = open(dir.path(), 64);
        w.append(1, &[1; 40], 1).unwrap();
        w.cut().unwrap();
        w.append(1, &[2; 40], 2).unwrap();
        w.sync().unwrap();
        drop(w);
        let first = dir.path().join(segment_name(1));
        let mut data = std::fs::read(&first).unwrap();
        data[HEADER + 3] ^= 1;
        std::fs::write(&first, data).unwrap();
        assert!(Wal::open(dir.path(), 64, &mut |_| Ok(0)).is_err());
    }

    #[test]
    fn old_segments_go_once_their_indexes_are_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = open(dir.path(), 64);
        for i in 1..=6u64 {
            w.append(1, &[i as u8; 40], i * 10).unwrap();
            w.cut().unwrap();
        }
        assert_eq!(w.segment_seqs(), (1..=7).collect::<Vec<_>>());
        assert_eq!(w.remove_through(35).unwrap(), 3);
        assert_eq!(w.segment_seqs(), (4..=7).collect::<Vec<_>>());
        assert_eq!(w.remove_all_but_current().unwrap(), 3);
        assert_eq!(w.segment_seqs(), vec![7]);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(segment_name(7))]);
    }
}
