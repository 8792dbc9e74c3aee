# A node beside the test control plane: containerd, kubelet, kube-proxy and kube-scheduler.
# Sourced by `up --node` (node_network, node_start) and `down` (node_stop); needs root.
#
# Everything it makes is recorded under $STATE/node so that node_stop removes exactly that:
# containers and their mounts, the Pods' network namespaces, the bridge, the KUBE-*/CNI-*
# iptables rules, the kubepods cgroups, the fixed paths kubelet and libcni write to, and the
# sysctls it changed. The facts behind each setting are in docs/testing.md.
# shellcheck shell=bash

NODE_NAME=sealant-node
NODE_BRIDGE=sealant0
NODE_SUBNET=10.88.0.0/16
NODE_GATEWAY=10.88.0.1
# kubelet, containerd and libcni write here whatever their flags say.
NODE_FIXED_PATHS=(/var/lib/kubelet /var/lib/cni /var/log/pods /var/log/containers /run/containerd)
NODE_SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables)
PAUSE_IMAGE=localhost/pause:3.4.1

node_log() { echo "node: $*" >&2; }

# Record what the machine had before, then make the bridge (the API server binds its address).
node_network() {
  local dir=$STATE/node
  mkdir -p "$dir"
  # One node per machine: a previous run's may still be stopping (its watcher runs down).
  local waited=0
  while ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && ((waited < 60)); do
    ((waited == 0)) && node_log "waiting for the bridge $NODE_BRIDGE of a previous node to go"
    sleep 1
    waited=$((waited + 1))
  done
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    node_log "error: a bridge named $NODE_BRIDGE already exists: another node is running (stop it with tests/cluster/down and its SEALANT_CLUSTER_DIR)"
    return 1
  fi
  : >"$dir/fixed-paths"
  local p
  for p in "${NODE_FIXED_PATHS[@]}"; do [[ -e $p ]] || echo "$p" >>"$dir/fixed-paths"; done
  [[ -d /run/netns ]] || echo /run/netns >"$dir/netns-dir"
  ls /run/netns 2>/dev/null | sort >"$dir/netns-before" || true
  modprobe br_netfilter 2>/dev/null || true
  : >"$dir/sysctls"
  local s
  for s in "${NODE_SYSCTLS[@]}"; do
    [[ -e /proc/sys/${s//.//} ]] && echo "$s=$(cat "/proc/sys/${s//.//}")" >>"$dir/sysctls"
  done
  iptables-save >"$dir/iptables-before" 2>/dev/null || true
  ip link add "$NODE_BRIDGE" type bridge
  echo "$NODE_BRIDGE" >"$dir/bridge"
  ip addr add "$NODE_GATEWAY/16" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
}

node_free_ports() {
  python3 - "$1" "$NODE_GATEWAY" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind((sys.argv[2], 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

node_wait() { # what, seconds, command...
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      node_log "error: $what not within ${secs}s"
      return 1
    fi
    sleep 0.5
  done
}

node_api() { # path
  curl -fsS --max-time 5 --cacert "$STATE/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$APISERVER_URL$1"
}

node_ready() {
  node_api "/api/v1/nodes/$NODE_NAME" |
    jq -e '.status.conditions[] | select(.type == "Ready" and .status == "True")'
}

# containerd, the pause image, kube-scheduler, kubelet and kube-proxy; waits for the node Ready.
# Called as a condition, where `set -e` does not apply: every step checks its own status.
node_start() {
  local dir=$STATE/node started=$SECONDS
  local sock=$dir/containerd/containerd.sock
  mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/cni/ipam" "$dir/kubelet" || return 1

  cat >"$dir/cni/net.d/10-sealant.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "sealant",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "$NODE_SUBNET", "gateway": "$NODE_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
CNI
  # restrict_oom_score_adj: these machines drop CAP_SYS_RESOURCE, so runc may not lower it.
  cat >"$dir/containerd/config.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
TOML
  start containerd containerd --config "$dir/containerd/config.toml"
  echo "$sock" >"$dir/containerd-socket"
  node_wait "containerd's socket" 30 ctr --address "$sock" version || { tail -n 20 "$STATE/containerd.log" >&2; return 1; }

  # The sandbox image cannot be pulled: import one made here from the source's pause.c.
  python3 "$HERE/../../deploy/image/oci-archive.py" --out "$dir/pause.oci.tar" --name "$PAUSE_IMAGE" \
    --file "$BIN/pause=/pause" --entrypoint /pause --user 65535:65535 --created 0 || return 1
  ctr --address "$sock" -n k8s.io images import "$dir/pause.oci.tar" >&2 || return 1

  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$STATE/kubeconfig" --leader-elect=false --secure-port 0
  local scheduler=$!

  local kubelet_port proxy_health proxy_metrics
  read -r kubelet_port proxy_health proxy_metrics <<<"$(node_free_ports 3)"
  # The admin kubeconfig: this node is the test's own, and no Node authorizer runs. Settings that
  # are only in the configuration file since 1.2x go there (docs/testing.md, "The node").
  cat >"$dir/kubelet/config.yaml" <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_GATEWAY
port: $kubelet_port
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  x509: {clientCAFile: $STATE/ca.crt}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$sock
runtimeRequestTimeout: 2m
cgroupDriver: cgroupfs
# These machines have cgroup v1 (hybrid); kubelet refuses it from 1.35 unless told.
failCgroupV1: false
failSwapOn: false
# Absolute thresholds: on a nearly full shared disk, 1% tainted the node with disk-pressure.
evictionHard: {memory.available: 100Mi, nodefs.available: 100Mi, imagefs.available: 100Mi}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
KCFG
  start kubelet "$BIN/kubelet" --config "$dir/kubelet/config.yaml" --kubeconfig "$STATE/kubeconfig" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_GATEWAY" \
    --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki" --v 1
  start kube-proxy "$BIN/kube-proxy" --kubeconfig "$STATE/kubeconfig" --hostname-override "$NODE_NAME" \
    --proxy-mode iptables --cluster-cidr "$NODE_SUBNET" --masquerade-all \
    --healthz-bind-address "127.0.0.1:$proxy_health" --metrics-bind-address "127.0.0.1:$proxy_metrics" \
    --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0

  if ! node_wait "the node to be Ready" 120 node_ready; then
    tail -n 30 "$STATE/kubelet.log" >&2
    return 1
  fi
  # Pods reach the API server through the `kubernetes` Service once kube-proxy has programmed it.
  node_wait "kube-proxy to serve the kubernetes Service" 60 \
    curl -fsS --max-time 2 --cacert "$STATE/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" https://10.96.0.1/readyz || {
    tail -n 20 "$STATE/kube-proxy.log" >&2
    return 1
  }
  # A Pod end to end (scheduler, kubelet, containerd, CNI), before the node is said to be ready.
  if ! node_smoke_pod; then
    # The Pod's status says why (printed above): a disk-pressure taint on a nearly full disk was
    # the cause every time it was seen. Give kube-scheduler one fresh start before failing.
    node_log "the smoke Pod was not scheduled and running within 60 s; restarting kube-scheduler once"
    tail -n 20 "$STATE/kube-scheduler.log" >&2
    kill "$scheduler" 2>/dev/null
    sed -i "/^$scheduler\$/d" "$STATE/pids"
    start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$STATE/kubeconfig" --leader-elect=false --secure-port 0
    node_smoke_pod || {
      node_log "error: the node cannot run a Pod (scheduler log above; kubelet: $STATE/kubelet.log)"
      return 1
    }
  fi
  cat >"$dir/env" <<ENV
NODE_NAME=$NODE_NAME
CONTAINERD_ADDRESS=$sock
NODE_GATEWAY=$NODE_GATEWAY
ENV
  node_log "$NODE_NAME Ready after $((SECONDS - started)) s"
}

# A pause Pod in the default namespace, Running within 60 s, then deleted.
node_smoke_pod() {
  local pod='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"node-smoke"},"spec":{"containers":[{"name":"pause","image":"'$PAUSE_IMAGE'","imagePullPolicy":"Never"}],"terminationGracePeriodSeconds":0}}'
  curl -fsS --max-time 5 --cacert "$STATE/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -X POST --data "$pod" "$APISERVER_URL/api/v1/namespaces/default/pods" >/dev/null 2>&1
  local ok=0
  node_wait "the smoke Pod to run" 60 sh -c "curl -fsS --max-time 5 --cacert '$STATE/ca.crt' -H 'Authorization: Bearer $ADMIN_TOKEN' '$APISERVER_URL/api/v1/namespaces/default/pods/node-smoke' | jq -e '.status.phase == \"Running\"'" && ok=1
  if ((!ok)); then
    node_log "the smoke Pod as the API server has it:"
    curl -fsS --max-time 5 --cacert "$STATE/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
      "$APISERVER_URL/api/v1/namespaces/default/pods/node-smoke" 2>/dev/null | jq -c '.status' >&2
  fi
  curl -fsS --max-time 5 --cacert "$STATE/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" -X DELETE \
    "$APISERVER_URL/api/v1/namespaces/default/pods/node-smoke?gracePeriodSeconds=0" >/dev/null 2>&1
  ((ok))
}

# Undo node_start and node_network. Runs after the processes in $STATE/pids are stopped, except
# containerd, which is needed to remove the containers first.
node_stop() {
  local dir=$STATE/node
  [[ -d $dir ]] || return 0
  local sock
  sock=$(cat "$dir/containerd-socket" 2>/dev/null || true)
  if [[ -n $sock && -S $sock ]]; then
    local c
    for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1
    done
    sleep 0.5
    for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1
    done
    for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io containers delete "$c" >/dev/null 2>&1
    done
  fi
  # The Pods' network namespaces (CRI names them cni-*); their veths go with them.
  local ns
  for ns in $(ls /run/netns 2>/dev/null | sort | comm -23 - "$dir/netns-before"); do
    [[ $ns == cni-* ]] && ip netns delete "$ns" 2>/dev/null
  done
  # Only if empty: other tests may have namespaces of their own there.
  [[ -f $dir/netns-dir ]] && rmdir /run/netns 2>/dev/null
  return 0
}

# After every process is gone: mounts, cgroups, bridge, iptables, fixed paths, sysctls.
node_cleanup() {
  local dir=$STATE/node
  [[ -d $dir ]] || return 0
  local m
  # Deepest first: volumes, sandboxes' /dev/shm, overlay rootfs, containerd's own.
  for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E "^($STATE|/run/containerd|/var/lib/kubelet)/" | sort -r || true); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  local ctl
  for ctl in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $ctl ]] && find "$ctl" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  [[ -f $dir/bridge ]] && ip link delete "$(cat "$dir/bridge")" 2>/dev/null
  # Drop every rule and chain kube-proxy and the CNI plugins added, keep everything else.
  if command -v iptables-save >/dev/null; then
    local table
    for table in nat filter mangle; do
      # (not grep -q: with pipefail, iptables-save's SIGPIPE would read as "no match")
      if iptables-save -t "$table" 2>/dev/null | grep -E 'KUBE-|CNI-' >/dev/null; then
        # iptables-restore replaces only the table it is given.
        iptables-save -t "$table" | grep -vE 'KUBE-|CNI-' | iptables-restore
      fi
      # A table that kube-proxy brought into being, now empty, goes too (iptables-nft).
      if ! grep -qx "\*$table" "$dir/iptables-before" 2>/dev/null && command -v nft >/dev/null &&
        ! iptables-save -t "$table" 2>/dev/null | grep '^-A' >/dev/null; then
        nft delete table ip "$table" 2>/dev/null
      fi
    done
  fi
  if [[ -f $dir/fixed-paths ]]; then
    local p
    while read -r p; do [[ -n $p ]] && rm -rf "$p"; done <"$dir/fixed-paths"
  fi
  if [[ -f $dir/sysctls ]]; then
    local kv
    while read -r kv; do [[ -n $kv ]] && sysctl -q -w "$kv" >/dev/null 2>&1; done <"$dir/sysctls"
  fi
}
