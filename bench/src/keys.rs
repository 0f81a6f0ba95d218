//! Key and value generation.
//!
//! A key is `prefix` followed by the key's index as zero-padded decimal, filling `key_size` bytes, so keys
//! are printable, sort in index order and are all the same size (etcd's tool writes a varint instead).

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Makes fixed-size keys for indexes `0..space`.
#[derive(Debug, Clone)]
pub struct KeyGen {
    prefix: Vec<u8>,
    width: usize,
    space: u64,
}

impl KeyGen {
    /// Keys of exactly `key_size` bytes starting with `prefix`, for `space` distinct indexes.
    pub fn new(prefix: &str, key_size: usize, space: u64) -> Result<KeyGen> {
        if space == 0 {
            bail!("the key space must hold at least one key");
        }
        let digits = decimal_digits(space - 1);
        if key_size < prefix.len() + digits {
            bail!(
                "--key-size {key_size} is too small: {} bytes of prefix plus {digits} digits are needed for {space} keys",
                prefix.len()
            );
        }
        Ok(KeyGen { prefix: prefix.as_bytes().to_vec(), width: key_size - prefix.len(), space })
    }

    /// Number of distinct keys.
    pub fn space(&self) -> u64 {
        self.space
    }

    /// The key for `index` (taken modulo the key space).
    pub fn key(&self, index: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + self.width);
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(format!("{:0width$}", index % self.space, width = self.width).as_bytes());
        k
    }
}

/// Number of decimal digits of `n` (1 for 0).
pub fn decimal_digits(n: u64) -> usize {
    let mut d = 1;
    let mut n = n / 10;
    while n > 0 {
        d += 1;
        n /= 10;
    }
    d
}

/// Chooses which key index the n-th request of a client writes.
#[derive(Debug)]
pub enum KeyOrder {
    /// Every index in turn; `next(op)` uses the global operation number, so the clients together walk
    /// the key space in order.
    Sequential,
    /// Uniformly at random.
    Random(Box<StdRng>),
}

impl KeyOrder {
    /// Sequential, or random seeded per client so runs are repeatable.
    pub fn new(sequential: bool, client: u64) -> KeyOrder {
        if sequential {
            KeyOrder::Sequential
        } else {
            KeyOrder::Random(Box::new(StdRng::seed_from_u64(0x5eed_0000 ^ client.wrapping_mul(0x9e37_79b9_7f4a_7c15))))
        }
    }

    /// The key index for global operation number `op` in a key space of `space` keys.
    pub fn next(&mut self, op: u64, space: u64) -> u64 {
        match self {
            KeyOrder::Sequential => op % space,
            KeyOrder::Random(rng) => rng.random_range(0..space),
        }
    }
}

/// A value of `size` bytes: printable filler, the same for every request.
pub fn value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A value of `size` bytes (at least 8) that starts with `seq` big-endian, for watch scenarios.
pub fn seq_value(seq: u64, size: usize) -> Vec<u8> {
    let mut v = value(size.max(8));
    v[..8].copy_from_slice(&seq.to_be_bytes());
    v
}

/// The sequence number written by [`seq_value`], if the value is long enough.
pub fn parse_seq(value: &[u8]) -> Option<u64> {
    value.get(..8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

/// The end of the range holding every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): the whole key space from the prefix on.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_size_and_ordered() {
        let g = KeyGen::new("", 8, 1000).unwrap();
        assert_eq!(g.key(0), b"00000000");
        assert_eq!(g.key(999), b"00000999");
        assert_eq!(g.key(1000), b"00000000", "indexes wrap at the key space");
        let g = KeyGen::new("/load/", 16, 1_000_000).unwrap();
        assert_eq!(g.key(42), b"/load/0000000042");
        assert!(g.key(1) < g.key(2) && g.key(9) < g.key(10));
        assert!(g.key(123_456).len() == 16);
    }

    #[test]
    fn key_size_must_fit_the_space() {
        assert!(KeyGen::new("", 3, 1000).is_ok());
        assert!(KeyGen::new("", 3, 1001).is_err());
        assert!(KeyGen::new("abc", 4, 11).is_err());
        assert!(KeyGen::new("", 8, 0).is_err());
        assert!(KeyGen::new("", 1, 1).is_ok());
    }

    #[test]
    fn digits() {
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(9), 1);
        assert_eq!(decimal_digits(10), 2);
        assert_eq!(decimal_digits(999_999), 6);
        assert_eq!(decimal_digits(u64::MAX), 20);
    }

    #[test]
    fn key_orders() {
        let mut s = KeyOrder::new(true, 3);
        assert_eq!((0..5).map(|op| s.next(op, 3)).collect::<Vec<_>>(), vec![0, 1, 2, 0, 1]);
        let mut a = KeyOrder::new(false, 1);
        let mut b = KeyOrder::new(false, 1);
        let xs: Vec<u64> = (0..100).map(|op| a.next(op, 10)).collect();
        let ys: Vec<u64> = (0..100).map(|op| b.next(op, 10)).collect();
        assert_eq!(xs, ys, "seeded per client");
        assert!(xs.iter().all(|&x| x < 10));
        assert!(xs.iter().any(|&x| x != xs[0]));
        let mut c = KeyOrder::new(false, 2);
        let zs: Vec<u64> = (0..100).map(|op| c.next(op, 10)).collect();
        assert_ne!(xs, zs, "clients differ");
    }

    #[test]
    fn values() {
        assert_eq!(value(3), b"abc");
        assert_eq!(value(0).len(), 0);
        let v = seq_value(7, 256);
        assert_eq!(v.len(), 256);
        assert_eq!(parse_seq(&v), Some(7));
        assert_eq!(seq_value(1, 2).len(), 8);
        assert_eq!(parse_seq(b"short"), None);
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_range_end(b"abc"), b"abd");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_range_end(b""), vec![0]);
    }
}
