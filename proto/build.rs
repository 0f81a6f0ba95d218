//! Compiles the etcd v3 API and raftcd's internal protos with tonic-prost-build.
//! Uses the `protoc` on PATH (Debian's protobuf-compiler, installed by the README's set-up commands).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "etcd/kv.proto",
        "etcd/auth.proto",
        "etcd/rpc.proto",
        "internal/raft_request.proto",
        "internal/peer.proto",
        "grpc/health.proto",
    ];
    tonic_prost_build::configure().build_server(true).build_client(true).compile_protos(&protos, &["."])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
