//! Key-range membership with etcd's `range_end` conventions.

/// True when `key` is in the range given by `start` and `end`: empty `end` = just `start`; `end` = "\0" =
/// every key >= `start`; otherwise the half-open range [start, end).
pub fn contains(start: &[u8], end: &[u8], key: &[u8]) -> bool {
    if end.is_empty() {
        return key == start;
    }
    if end == [0] {
        return key >= start;
    }
    key >= start && key < end
}

#[cfg(test)]
mod tests {
    use super::contains;

    #[test]
    fn etcd_range_forms() {
        assert!(contains(b"a", b"", b"a"));
        assert!(!contains(b"a", b"", b"ab"));
        assert!(contains(b"a", b"b", b"ab"));
        assert!(!contains(b"a", b"b", b"b"));
        assert!(contains(b"a", b"\0", b"zzz"));
        assert!(!contains(b"b", b"\0", b"a"));
        assert!(contains(b"\0", b"\0", b"anything"));
    }
}
