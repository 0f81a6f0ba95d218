#!/usr/bin/env bash
# Installs what building and testing raftcd needs and a fresh Debian machine lacks:
# protoc (to compile the .proto files), Debian's etcd client and server (interop and differential tests),
# iptables and iproute2 (fault tests), strace (the durability test watches fsync calls). Idempotent: does nothing when everything is present.
set -euo pipefail
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v strace >/dev/null 2>&1 || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts the etcd service on install; the tests start their own.
  $SUDO systemctl stop etcd >/dev/null 2>&1 || true
  pkill -x etcd >/dev/null 2>&1 || true
fi
