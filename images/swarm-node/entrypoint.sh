#!/bin/sh
# berth/swarm-node entrypoint: write the TLS files given by the environment and
# run dockerd with --tlsverify on tcp://0.0.0.0:2376 (and the local socket),
# restarting it when new certificates are dropped into /etc/docker/tls/next/
# (CA rotation) or when it exits.
#
# Environment (set by the swarm-mode cluster driver):
#   BERTH_NODE_TLS_CA     PEM bundle of the CAs whose client certificates are accepted
#   BERTH_NODE_TLS_CERT   this node's server certificate (PEM)
#   BERTH_NODE_TLS_KEY    its private key (PEM)
#   BERTH_NODE_INSECURE_REGISTRIES  comma-separated registries reached over plain HTTP
#   BERTH_NODE_STORAGE_DRIVER       dockerd storage driver (default overlay2)
#   BERTH_NODE_LABELS     comma-separated engine labels (key=value)
#   BERTH_NODE_BIP        the node's own docker0 (default 10.199.0.1/24) and
#   BERTH_NODE_ADDRESS_POOL  its pool for bridge networks (default 10.200.0.0/16):
#                         away from 172.17-31/16, so the host stays reachable
#
# dockerd gets the MTU of the node's own eth0 (--mtu), so docker0 and the
# networks made inside fit in the link under them (1450 on Berth's overlay
# network). The cluster driver reads it back from the `bridge` network for the
# swarm's docker_gwbridge and ingress.
set -eu

TLS=/etc/docker/tls
mkdir -p "$TLS" /var/lib/docker /var/run
umask 077
if [ ! -s "$TLS/cert.pem" ]; then
    : "${BERTH_NODE_TLS_CA:?BERTH_NODE_TLS_CA is not set}"
    : "${BERTH_NODE_TLS_CERT:?BERTH_NODE_TLS_CERT is not set}"
    : "${BERTH_NODE_TLS_KEY:?BERTH_NODE_TLS_KEY is not set}"
    printf '%s\n' "$BERTH_NODE_TLS_CA" >"$TLS/ca.pem"
    printf '%s\n' "$BERTH_NODE_TLS_CERT" >"$TLS/cert.pem"
    printf '%s\n' "$BERTH_NODE_TLS_KEY" >"$TLS/key.pem"
fi
umask 022

mtu="$(cat /sys/class/net/eth0/mtu 2>/dev/null || true)"
case "$mtu" in '' | *[!0-9]*) mtu=1500 ;; esac

set -- --tlsverify --tlscacert "$TLS/ca.pem" --tlscert "$TLS/cert.pem" --tlskey "$TLS/key.pem" \
    -H tcp://0.0.0.0:2376 -H unix:///var/run/docker.sock --mtu "$mtu" \
    --storage-driver "${BERTH_NODE_STORAGE_DRIVER:-overlay2}" \
    --bip "${BERTH_NODE_BIP:-10.199.0.1/24}" \
    --default-address-pool "base=${BERTH_NODE_ADDRESS_POOL:-10.200.0.0/16},size=24"
for registry in $(printf '%s' "${BERTH_NODE_INSECURE_REGISTRIES:-}" | tr ',' ' '); do
    set -- "$@" --insecure-registry "$registry"
done
for label in $(printf '%s' "${BERTH_NODE_LABELS:-}" | tr ',' ' '); do
    set -- "$@" --label "$label"
done

pid=""
stop() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    exit 0
}
trap stop TERM INT

start() {
    rm -f /var/run/docker.pid
    dockerd "$@" &
    pid=$!
    echo "berth-node: dockerd started (pid $pid)"
}

start "$@"
while true; do
    if [ -f "$TLS/next/ready" ]; then
        echo "berth-node: new certificates: restarting dockerd"
        for f in ca.pem cert.pem key.pem; do
            cp "$TLS/next/$f" "$TLS/$f.new" && mv "$TLS/$f.new" "$TLS/$f"
        done
        chmod 600 "$TLS/key.pem"
        rm -rf "$TLS/next"
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        start "$@"
    elif ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        echo "berth-node: dockerd exited; restarting it in 1 s"
        sleep 1
        start "$@"
    fi
    sleep 1
done
