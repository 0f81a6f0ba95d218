//! bcrypt hashing and checking, off the async runtime (each costs milliseconds of CPU at cost 10).

use crate::error::{Error, Result};

/// Hashes `password` at `cost` (etcd's --bcrypt-cost); the hash is what the log and the store carry.
pub async fn hash(password: String, cost: u32) -> Result<String> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(|e| Error::Storage(format!("bcrypt task: {e}")))?
        .map_err(|e| Error::InvalidArgument(format!("etcdserver: {e}")))
}

/// True when `password` matches the bcrypt `hash`; an unparsable hash matches nothing.
pub async fn verify(password: String, hash: Vec<u8>) -> bool {
    tokio::task::spawn_blocking(move || {
        let hash = String::from_utf8_lossy(&hash);
        bcrypt::verify(password, &hash).unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}
