//! grpc.health.v1.Health: SERVING while the member knows a leader and no alarm blocks it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use raftcd_proto::health::{
    health_check_response::ServingStatus, health_server::Health, HealthCheckRequest, HealthCheckResponse,
};
use tonic::{Request, Response, Status};

use crate::services::Ctx;

/// The gRPC health service.
pub struct HealthService {
    ctx: Arc<Ctx>,
}

impl HealthService {
    /// The service over shared context.
    pub fn new(ctx: Arc<Ctx>) -> HealthService {
        HealthService { ctx }
    }
}

fn status_of(ctx: &Ctx, service: &str) -> ServingStatus {
    if !(service.is_empty() || service.starts_with("etcdserverpb.")) {
        return ServingStatus::ServiceUnknown;
    }
    if ctx.raft.status().leader() != 0 && !ctx.alarms.corrupt() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, req: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let status = status_of(&self.ctx, &req.into_inner().service);
        if status == ServingStatus::ServiceUnknown {
            return Err(Status::not_found("unknown service"));
        }
        Ok(Response::new(HealthCheckResponse { status: status as i32 }))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<HealthCheckRequest>) -> Result<Response<WatchStream>, Status> {
        let service = req.into_inner().service;
        let ctx = self.ctx.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let now = status_of(&ctx, &service);
                if last != Some(now) {
                    if tx.send(Ok(HealthCheckResponse { status: now as i32 })).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
