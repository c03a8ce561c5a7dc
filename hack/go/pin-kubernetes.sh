#!/usr/bin/env bash
# Regenerates hack/go/k8s/go.mod and go.sum for another Kubernetes release.
# k8s.io/kubernetes maps its staging modules to ./staging with replace directives,
# so `go install k8s.io/kubernetes/...@vX` is refused (golang/go#44840); this wrapper
# module requires it and points every staging module at its published v0.Y.Z instead.
# Usage: hack/go/pin-kubernetes.sh 1.35.4   (then bump KUBERNETES_VERSION in localenv/tailor_localenv/versions.py)
set -euo pipefail
kv=${1:?usage: pin-kubernetes.sh 1.MINOR.PATCH}
sv="0.${kv#1.}"
dir=$(cd "$(dirname "$0")/k8s" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Read k/k's own go.mod from outside any module, so the staging list and go/godebug lines are the release's.
upstream=$(cd "$scratch" && go mod download -json "k8s.io/kubernetes@v$kv" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
go_line=$(grep -m1 -E '^go [0-9.]+$' "$upstream" | awk '{print $2}')
godebug=$(grep -m1 -E '^godebug default=' "$upstream" | sed 's/^godebug //' || true)
cd "$dir"
rm -f go.mod go.sum
go mod init tailor.dev/hack/kubernetes >/dev/null 2>&1
go mod edit -go="$go_line" -require="k8s.io/kubernetes@v$kv"
[ -n "$godebug" ] && go mod edit -godebug="$godebug"
for m in $(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$upstream" | awk '{print $1}'); do
  go mod edit -replace="$m=$m@v$sv"
done
go mod tidy
echo "pinned k8s.io/kubernetes v$kv in $dir"
