//! Plain HTTP on the client port (and on --listen-metrics-urls), beside gRPC, as etcd serves it:
//! `/metrics` (Prometheus), `/health` (etcd's JSON), `/livez`, `/readyz`, `/version`.
//!
//! A client connection is routed by its first bytes: the HTTP/2 preface ("PRI ") goes to the gRPC server,
//! anything else is answered here as HTTP/1.1 and closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metrics::Gauges;
use crate::services::{Ctx, ETCD_VERSION};

/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// True when the connection starts with the HTTP/2 preface (gRPC).
pub async fn is_http2(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4];
    match tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut buf)).await {
        Ok(Ok(n)) if n >= 3 => &buf[..3] == b"PRI",
        // Too little to tell yet: assume gRPC, whose preface is the common case.
        _ => true,
    }
}

fn gauges(ctx: &Ctx) -> Gauges {
    let st = ctx.raft.status();
    Gauges {
        has_leader: st.leader() != 0,
        is_leader: st.is_leader(),
        leader_changes: st.leader_changes(),
        proposals_pending: ctx.raft.pending() as u64,
        db_total_size: ctx.db.get().size_on_disk(),
        db_in_use: ctx.store.size_on_disk(),
        keys_total: ctx.store.key_count().unwrap_or(0),
        watchers: ctx.hub.watcher_count() as u64,
        current_revision: ctx.store.current_revision(),
        compact_revision: ctx.store.compact_revision(),
    }
}

/// etcd's /health: healthy with a leader, no alarm, and a read that completes.
async fn health(ctx: &Ctx, serializable: bool) -> (bool, String) {
    if ctx.raft.status().leader() == 0 {
        return (false, "RAFT NO LEADER".into());
    }
    if ctx.alarms.no_space() {
        return (false, "ALARM NOSPACE".into());
    }
    if ctx.alarms.corrupt() {
        return (false, "ALARM CORRUPT".into());
    }
    if !serializable {
        let ok = tokio::time::timeout(Duration::from_secs(2), ctx.raft.linearizable_barrier()).await;
        if !matches!(ok, Ok(Ok(()))) {
            return (false, "QGET ERROR".into());
        }
    }
    (true, String::new())
}

/// Answers one HTTP/1.1 request and closes the connection.
pub async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, ctx: Arc<Ctx>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if !matches!(tokio::time::timeout(Duration::from_secs(10), read).await, Ok(true)) {
        return;
    }
    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, ctype, body) = if method != "GET" && method != "HEAD" {
        (405, "text/plain", "method not allowed\n".to_string())
    } else {
        route(path, query, &ctx).await
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let body = if method == "HEAD" { String::new() } else { body };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn route(path: &str, query: &str, ctx: &Ctx) -> (u16, &'static str, String) {
    match path {
        "/metrics" => (200, "text/plain; version=0.0.4", ctx.metrics.render(&gauges(ctx))),
        "/health" => {
            let (ok, reason) = health(ctx, query.contains("serializable=true")).await;
            let body = format!("{{\"health\":\"{ok}\",\"reason\":\"{reason}\"}}");
            (if ok { 200 } else { 503 }, "application/json", body)
        }
        "/livez" => (200, "text/plain", "ok\n".into()),
        "/readyz" => {
            let (ok, reason) = health(ctx, true).await;
            if ok {
                (200, "text/plain", "ok\n".into())
            } else {
                (503, "text/plain", format!("not ready: {reason}\n"))
            }
        }
        "/version" => {
            (200, "application/json", format!("{{\"etcdserver\":\"{ETCD_VERSION}\",\"etcdcluster\":\"3.5.0\"}}"))
        }
        _ => (404, "text/plain", "404 page not found\n".into()),
    }
}
