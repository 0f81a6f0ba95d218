//! Whether a role's key permissions cover a request's key or range, as etcd's `range_perm_cache.go` decides it.
//!
//! A permission is a point (`range_end` empty), a range `[key, range_end)`, or open-ended (`range_end` =
//! `"\0"`, from-key). A request range is permitted when the UNION of the user's matching permissions covers
//! it entirely. Example: read on `[a, c)` and read on `[c, e)` together permit a range read of `[b, d)`;
//! read on `[a, c)` alone does not.

use raftcd_proto::authpb::{permission::Type, Permission};

/// The kind of access a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Range, watch, compares, prev_kv.
    Read,
    /// Put, delete.
    Write,
}

/// `[start, end)`, `end == None` meaning "to the end of the key space".
type Interval = (Vec<u8>, Option<Vec<u8>>);

fn grants(perm: &Permission, access: Access) -> bool {
    match Type::try_from(perm.perm_type) {
        Ok(Type::Readwrite) => true,
        Ok(Type::Read) => access == Access::Read,
        Ok(Type::Write) => access == Access::Write,
        Err(_) => false,
    }
}

/// The single key `key` as an interval: `[key, key + "\0")`.
fn point(key: &[u8]) -> Interval {
    let mut end = key.to_vec();
    end.push(0);
    (key.to_vec(), Some(end))
}

fn interval(key: &[u8], range_end: &[u8]) -> Interval {
    if range_end.is_empty() {
        point(key)
    } else if range_end == [0] {
        (key.to_vec(), None)
    } else {
        (key.to_vec(), Some(range_end.to_vec()))
    }
}

/// True when `perms` grant `access` to every key of the request range (`range_end` as in a RangeRequest).
pub fn covers<'a>(perms: impl Iterator<Item = &'a Permission>, access: Access, key: &[u8], range_end: &[u8]) -> bool {
    let mut ivs: Vec<Interval> = perms.filter(|p| grants(p, access)).map(|p| interval(&p.key, &p.range_end)).collect();
    ivs.sort();
    let (start, end) = match interval(key, range_end) {
        // An empty or inverted range selects no key beyond (at most) `key` itself.
        (s, Some(e)) if e <= s => point(&s),
        other => other,
    };
    let mut cur = start;
    for (s, e) in ivs {
        if s > cur {
            break;
        }
        match e {
            None => return true,
            Some(e) if e > cur => {
                cur = e;
                if end.as_ref().is_some_and(|end| &cur >= end) {
                    return true;
                }
            }
            Some(_) => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: Type, key: &str, end: &str) -> Permission {
        Permission { perm_type: t as i32, key: key.into(), range_end: end.into() }
    }

    #[test]
    fn points_ranges_prefixes_and_unions() {
        let p = [perm(Type::Read, "a", "c"), perm(Type::Read, "c", "e"), perm(Type::Write, "k", "")];
        assert!(covers(p.iter(), Access::Read, b"b", b"d"));
        assert!(covers(p.iter(), Access::Read, b"d", b""));
        assert!(!covers(p.iter(), Access::Read, b"b", b"f"));
        assert!(!covers(p.iter(), Access::Write, b"b", b""));
        assert!(covers(p.iter(), Access::Write, b"k", b""));
        assert!(!covers(p.iter(), Access::Write, b"k", b"l"));
        assert!(!covers(p.iter(), Access::Read, b"k", b""));
        let from = [perm(Type::Readwrite, "m", "\0")];
        assert!(covers(from.iter(), Access::Write, b"z", b"\0"));
        assert!(covers(from.iter(), Access::Read, b"m", b"zz"));
        assert!(!covers(from.iter(), Access::Read, b"l", b"\0"));
        let prefix = [perm(Type::Read, "/app/", "/app0")];
        assert!(covers(prefix.iter(), Access::Read, b"/app/", b"/app0"));
        assert!(covers(prefix.iter(), Access::Read, b"/app/x", b""));
        assert!(!covers(prefix.iter(), Access::Read, b"/other", b""));
        assert!(!covers(prefix.iter(), Access::Read, b"/", b"0"));
    }
}
