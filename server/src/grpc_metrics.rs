//! gRPC request metrics with go-grpc-prometheus's names, which etcd exports and etcd dashboards graph:
//! `grpc_server_started_total` and `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`.
//!
//! A tower layer around the client-facing tonic router counts a call when it starts and again when its
//! status is known: from the response headers (trailers-only errors), from the trailers at the end of the
//! body, or `Canceled` if the body is dropped first (client went away). Only the fixed set of etcd methods
//! is counted, so a client sending made-up paths cannot grow the label set.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

/// Every method served on the client port: (service, method, grpc_type).
const METHODS: &[(&str, &str, &str)] = &[
    ("etcdserverpb.KV", "Range", "unary"),
    ("etcdserverpb.KV", "Put", "unary"),
    ("etcdserverpb.KV", "DeleteRange", "unary"),
    ("etcdserverpb.KV", "Txn", "unary"),
    ("etcdserverpb.KV", "Compact", "unary"),
    ("etcdserverpb.Watch", "Watch", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseGrant", "unary"),
    ("etcdserverpb.Lease", "LeaseRevoke", "unary"),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseTimeToLive", "unary"),
    ("etcdserverpb.Lease", "LeaseLeases", "unary"),
    ("etcdserverpb.Cluster", "MemberAdd", "unary"),
    ("etcdserverpb.Cluster", "MemberRemove", "unary"),
    ("etcdserverpb.Cluster", "MemberUpdate", "unary"),
    ("etcdserverpb.Cluster", "MemberList", "unary"),
    ("etcdserverpb.Cluster", "MemberPromote", "unary"),
    ("etcdserverpb.Maintenance", "Alarm", "unary"),
    ("etcdserverpb.Maintenance", "Status", "unary"),
    ("etcdserverpb.Maintenance", "Defragment", "unary"),
    ("etcdserverpb.Maintenance", "Hash", "unary"),
    ("etcdserverpb.Maintenance", "HashKV", "unary"),
    ("etcdserverpb.Maintenance", "Snapshot", "server_stream"),
    ("etcdserverpb.Maintenance", "MoveLeader", "unary"),
    ("etcdserverpb.Maintenance", "Downgrade", "unary"),
    ("etcdserverpb.Auth", "AuthEnable", "unary"),
    ("etcdserverpb.Auth", "AuthDisable", "unary"),
    ("etcdserverpb.Auth", "AuthStatus", "unary"),
    ("etcdserverpb.Auth", "Authenticate", "unary"),
    ("etcdserverpb.Auth", "UserAdd", "unary"),
    ("etcdserverpb.Auth", "UserGet", "unary"),
    ("etcdserverpb.Auth", "UserList", "unary"),
    ("etcdserverpb.Auth", "UserDelete", "unary"),
    ("etcdserverpb.Auth", "UserChangePassword", "unary"),
    ("etcdserverpb.Auth", "UserGrantRole", "unary"),
    ("etcdserverpb.Auth", "UserRevokeRole", "unary"),
    ("etcdserverpb.Auth", "RoleAdd", "unary"),
    ("etcdserverpb.Auth", "RoleGet", "unary"),
    ("etcdserverpb.Auth", "RoleList", "unary"),
    ("etcdserverpb.Auth", "RoleDelete", "unary"),
    ("etcdserverpb.Auth", "RoleGrantPermission", "unary"),
    ("etcdserverpb.Auth", "RoleRevokePermission", "unary"),
    ("grpc.health.v1.Health", "Check", "unary"),
    ("grpc.health.v1.Health", "Watch", "server_stream"),
];

/// gRPC status codes by number, named as grpc-go's `codes.Code.String()` (the label values etcd exports).
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// Counters per method (and per code for handled calls).
pub struct GrpcMetrics {
    started: Vec<AtomicU64>,
    handled: Vec<[AtomicU64; 17]>,
}

impl Default for GrpcMetrics {
    fn default() -> GrpcMetrics {
        GrpcMetrics {
            started: METHODS.iter().map(|_| AtomicU64::new(0)).collect(),
            handled: METHODS.iter().map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect(),
        }
    }
}

/// Index into METHODS of a request path such as `/etcdserverpb.KV/Range`.
fn method_index(path: &str) -> Option<usize> {
    static INDEX: OnceLock<HashMap<String, usize>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        METHODS.iter().enumerate().map(|(i, (service, method, _))| (format!("/{service}/{method}"), i)).collect()
    });
    index.get(path).copied()
}

/// The grpc-status value in a header map, as an index into CODES (unknown numbers count as Unknown).
fn status_code(headers: &http::HeaderMap) -> Option<usize> {
    let v = headers.get("grpc-status")?;
    let code = v.to_str().ok().and_then(|s| s.parse::<usize>().ok()).unwrap_or(UNKNOWN);
    Some(if code < CODES.len() { code } else { UNKNOWN })
}

impl GrpcMetrics {
    fn started(&self, method: usize) {
        self.started[method].fetch_add(1, Relaxed);
    }

    fn handled(&self, method: usize, code: usize) {
        self.handled[method][code].fetch_add(1, Relaxed);
    }

    /// Appends the exposition: started counts for every method, handled counts for every (method, code) seen.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP grpc_server_started_total Total number of RPCs started on the server.\n\
             # TYPE grpc_server_started_total counter"
        );
        for (i, (service, method, kind)) in METHODS.iter().enumerate() {
            let labels = format!("grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{kind}\"");
            let _ = writeln!(out, "grpc_server_started_total{{{labels}}} {}", self.started[i].load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success \
             or failure.\n# TYPE grpc_server_handled_total counter"
        );
        for (i, (service, method, kind)) in METHODS.iter().enumerate() {
            for (code, name) in CODES.iter().enumerate() {
                let n = self.handled[i][code].load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "grpc_server_handled_total{{grpc_code=\"{name}\",grpc_method=\"{method}\",\
                         grpc_service=\"{service}\",grpc_type=\"{kind}\"}} {n}"
                    );
                }
            }
        }
    }
}

/// Tower layer that records calls into [`GrpcMetrics`].
#[derive(Clone)]
pub struct GrpcMetricsLayer(pub Arc<crate::metrics::Metrics>);

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> GrpcMetricsService<S> {
        GrpcMetricsService { inner, metrics: self.0.clone() }
    }
}

/// The service the layer wraps around the router.
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<crate::metrics::Metrics>,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for GrpcMetricsService<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: 'static,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let method = method_index(req.uri().path());
        if let Some(m) = method {
            self.metrics.grpc.started(m);
        }
        let fut = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let resp = fut.await?;
            let mut outcome = Outcome { metrics, method, done: method.is_none() };
            if let Some(code) = status_code(resp.headers()) {
                outcome.finish(code);
            }
            Ok(resp.map(|inner| CountedBody { inner, outcome }))
        })
    }
}

/// Records the handled count exactly once per call.
struct Outcome {
    metrics: Arc<crate::metrics::Metrics>,
    method: Option<usize>,
    done: bool,
}

impl Outcome {
    fn finish(&mut self, code: usize) {
        if !self.done {
            self.done = true;
            if let Some(m) = self.method {
                self.metrics.grpc.handled(m, code);
            }
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        // The body went away before its trailers: the client cancelled (or the connection died).
        self.finish(CANCELED);
    }
}

/// A response body that reports the grpc-status in its trailers.
pub struct CountedBody<B> {
    inner: B,
    outcome: Outcome,
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_code) {
                    this.outcome.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.outcome.finish(UNKNOWN),
            Poll::Ready(None) => this.outcome.finish(UNKNOWN),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_only_and_codes_render() {
        let m = GrpcMetrics::default();
        let range = method_index("/etcdserverpb.KV/Range").expect("known");
        assert_eq!(method_index("/etcdserverpb.KV/Nope"), None);
        m.started(range);
        m.handled(range, 0);
        m.handled(range, 11);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "grpc_server_handled_total{grpc_code=\"OutOfRange\",grpc_method=\"Range\",\
             grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"
        ));
        assert!(out.contains(
            "grpc_server_started_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"
        ));
        assert!(!out.contains("grpc_code=\"NotFound\""));
    }

    #[test]
    fn status_header_parsing() {
        let mut h = http::HeaderMap::new();
        assert_eq!(status_code(&h), None);
        h.insert("grpc-status", http::HeaderValue::from_static("14"));
        assert_eq!(status_code(&h), Some(14));
        h.insert("grpc-status", http::HeaderValue::from_static("99"));
        assert_eq!(status_code(&h), Some(UNKNOWN));
    }
}
