//! The etcd v3 wire protocol as raftcd speaks it, plus raftcd's internal messages.
//!
//! `etcdserverpb`, `mvccpb` and `authpb` mirror etcd's packages field for field; `raftcdpb` holds what
//! members write into the raft log and send to each other.
#![allow(clippy::all, rust_2018_idioms, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod raftcdpb {
    tonic::include_proto!("raftcdpb");
}

/// The standard gRPC health protocol.
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

pub use etcdserverpb as pb;
