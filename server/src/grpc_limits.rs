//! gRPC receive limit with etcd's error: tonic refuses a message above `max_decoding_message_size` with
//! OutOfRange "Error, decoded message length too large: found N bytes, the limit is: M bytes"; grpc-go (etcd)
//! answers ResourceExhausted "grpc: received message larger than max (N vs. M)". Clients match on the code
//! (clientv3 treats ResourceExhausted as not retryable), so the client listener rewrites one into the other:
//! unary calls through [`EtcdLimitsLayer`], streams through [`etcd_status`].

use std::task::{Context, Poll};

use futures::TryFutureExt;
use tonic::{Code, Status};

const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// etcd's text for a message above the receive limit, from tonic's, if `msg` is tonic's.
fn etcd_message(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix(TONIC_TOO_LARGE)?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    let (found, limit): (u64, u64) = (found.parse().ok()?, limit.parse().ok()?);
    Some(format!("grpc: received message larger than max ({found} vs. {limit})"))
}

/// Rewrites tonic's "message too large" status into etcd's; any other status is returned unchanged.
pub fn etcd_status(status: Status) -> Status {
    if status.code() != Code::OutOfRange {
        return status;
    }
    match etcd_message(status.message()) {
        Some(m) => Status::resource_exhausted(m),
        None => status,
    }
}

/// Percent-decodes a grpc-message header value (tonic encodes spaces and a few other characters).
fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (v[i], v.get(i + 1).copied().and_then(hex), v.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rewrites the status headers of a (trailers-only) error response, as tonic sends a refused request.
fn rewrite_response<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let headers = resp.headers();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"11") {
        return resp;
    }
    let Some(msg) = headers.get("grpc-message").map(|v| percent_decode(v.as_bytes())) else { return resp };
    let Some(m) = etcd_message(&msg) else { return resp };
    let encoded = Status::resource_exhausted(m).into_http::<()>();
    for name in ["grpc-status", "grpc-message"] {
        if let Some(v) = encoded.headers().get(name) {
            resp.headers_mut().insert(name, v.clone());
        }
    }
    resp
}

/// Tower layer for the client gRPC server: see the module doc.
#[derive(Clone, Copy, Debug, Default)]
pub struct EtcdLimitsLayer;

impl<S> tower_layer::Layer<S> for EtcdLimitsLayer {
    type Service = EtcdLimits<S>;

    fn layer(&self, inner: S) -> EtcdLimits<S> {
        EtcdLimits { inner }
    }
}

/// The service made by [`EtcdLimitsLayer`].
#[derive(Clone, Debug)]
pub struct EtcdLimits<S> {
    inner: S,
}

impl<S, Req, B> tower_service::Service<Req> for EtcdLimits<S>
where
    S: tower_service::Service<Req, Response = http::Response<B>>,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = futures::future::MapOk<S::Future, fn(http::Response<B>) -> http::Response<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req).map_ok(rewrite_response::<B> as fn(http::Response<B>) -> http::Response<B>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_too_large_becomes_etcd_resource_exhausted() {
        let s = etcd_status(Status::out_of_range(
            "Error, decoded message length too large: found 2097253 bytes, the limit is: 2097152 bytes",
        ));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.message(), "grpc: received message larger than max (2097253 vs. 2097152)");
        let other = etcd_status(Status::out_of_range("etcdserver: mvcc: required revision is a future revision"));
        assert_eq!(other.code(), Code::OutOfRange);
    }

    #[test]
    fn error_response_headers_are_rewritten() {
        let tonic_resp =
            Status::out_of_range("Error, decoded message length too large: found 10 bytes, the limit is: 5 bytes")
                .into_http::<()>();
        let resp = rewrite_response(tonic_resp);
        assert_eq!(resp.headers()["grpc-status"], "8");
        let msg = percent_decode(resp.headers()["grpc-message"].as_bytes());
        assert_eq!(msg, "grpc: received message larger than max (10 vs. 5)");
        let ok = rewrite_response(Status::not_found("x").into_http::<()>());
        assert_eq!(ok.headers()["grpc-status"], "5");
    }
}
