#!/usr/bin/env bash
# Generates a CA and certificates for a local secure cluster into DIR (default ./certs):
# ca.pem, server.pem (members' client and peer ports), peer.pem, client.pem (CN=client), root.pem (CN=root).
# Uses raftcd-util (rustls/rcgen; no OpenSSL needed).
set -euo pipefail
dir=$(realpath -m "${1:-certs}")
cd "$(dirname "$0")/.."
bin=target/release/raftcd-util
[ -x "$bin" ] || bin=target/debug/raftcd-util
[ -x "$bin" ] || { cargo build -q -p raftcd --bin raftcd-util; bin=target/debug/raftcd-util; }
"$bin" gen-certs "$dir" server=localhost,127.0.0.1 peer=localhost,127.0.0.1 client root
echo "certificates written to $dir: ca.pem server.pem peer.pem client.pem root.pem (+ *-key.pem)"
