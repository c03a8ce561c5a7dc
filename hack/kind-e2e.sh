#!/usr/bin/env bash
# The whole product on a real (kind) cluster with real images:
#   1. create a kind cluster (or reuse it),   2. build the three images and load them,
#   3. run one Kafka broker in the cluster,   4. install the Helm chart,
#   5. apply examples/01-minimal.yaml and wait for Ready,
#   6. send click events and check the scorer answers a decision.
#
#   hack/kind-e2e.sh [--keep]        --keep: leave the cluster running afterwards
#
# NEEDS DOCKER. It cannot run on machines without a container engine, e.g. this repository's
# own CI and the air-gapped machines `make test` is built for; there, `make test` and
# `make demo` exercise the same operator, chart and programs on a real API server with KWOK
# nodes and local processes. kind, helm and kubectl come from PATH or from the cache that
# `make bootstrap` fills (~/.cache/tailor/bin).
set -euo pipefail

cluster=tailor-e2e
keep=false
[[ "${1:-}" == "--keep" ]] && keep=true
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { sed -n '2,15p' "$0"; exit 0; }

say() { echo "kind-e2e: $*"; }
die() { echo "kind-e2e: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker is not installed: this script needs a container engine (see --help)"
docker info >/dev/null 2>&1 || die "docker is installed but not running (or not reachable)"
cache="${TAILOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tailor}"
for tool in kind helm kubectl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    found=$(ls -d "$cache"/bin/*/"$tool" 2>/dev/null | head -1 || true)
    [[ -n "$found" ]] || die "$tool not found on PATH nor in $cache/bin (run make bootstrap)"
    PATH="$(dirname "$found"):$PATH"
  fi
done
cd "$(dirname "$0")/.."

if ! kind get clusters | grep -qx "$cluster"; then
  say "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --wait 120s
fi
$keep || trap 'say "deleting cluster $cluster"; kind delete cluster --name "$cluster"' EXIT
kubectl config use-context "kind-$cluster" >/dev/null

tag=e2e
say "building and loading images"
hack/build-images.sh --registry tailor.local --tag "$tag" --kind "$cluster"

say "starting Kafka"
kubectl apply -f hack/kind/kafka.yaml
kubectl -n kafka rollout status deployment/kafka --timeout=300s

say "installing the chart"
helm upgrade --install tailor charts/tailor -n tailor-system --create-namespace --wait --timeout 300s \
  --set image.repository=tailor.local/operator --set image.tag="$tag" --set image.pullPolicy=Never \
  --set pipelineImages.streamWorker="tailor.local/stream-worker:$tag" \
  --set pipelineImages.scorer="tailor.local/scorer:$tag"

say "applying examples/01-minimal.yaml"
kubectl apply -n default -f examples/01-minimal.yaml
kubectl -n default wait --for=condition=Ready ppl/storefront --timeout=300s
kubectl -n default get ppl,deploy,svc

say "sending click events"
now=$(($(date +%s) * 1000))
events=""
for i in $(seq 1 50); do
  events+="u$((i % 5))|{\"user_id\":\"u$((i % 5))\",\"item_id\":\"i$((i % 7))\",\"type\":\"click\",\"ts\":$((now + i))}"$'\n'
done
kubectl -n kafka exec -i deploy/kafka -- /opt/kafka/bin/kafka-console-producer.sh \
  --bootstrap-server localhost:9092 --topic default.storefront.events \
  --property parse.key=true --property key.separator='|' <<<"$events"

say "asking the scorer"
kubectl -n default port-forward svc/storefront-scorer 18080:8080 >/dev/null 2>&1 &
forward=$!
trap 'kill $forward 2>/dev/null || true; $keep || kind delete cluster --name "$cluster"' EXIT
for _ in $(seq 1 30); do
  if answer=$(curl -sf -X POST localhost:18080/v1/decide -H 'Content-Type: application/json' \
      -d '{"user_id": "u1", "k": 3}'); then
    if grep -q '"items":\[{' <<<"$answer"; then
      say "decision: $answer"
      say "OK"
      exit 0
    fi
  fi
  sleep 2
done
die "no decision with items from the scorer; last answer: ${answer:-none}"
