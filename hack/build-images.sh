#!/usr/bin/env bash
# Build Tailor's three images (operator, stream-worker, scorer) from pipeline_images/Dockerfile.
#
#   hack/build-images.sh [--registry ghcr.io/tailor-dev] [--tag 0.1.0] [--push] [--kind NAME]
#
# --push        push after building (docker login first)
# --kind NAME   load the images into the kind cluster NAME instead of pushing
# BASE=...      override the base image (pin it by digest: python:3.11.11-slim-bookworm@sha256:...)
#
# Needs Docker (or a docker-compatible CLI with buildx). Machines without a container engine,
# like this repository's own CI, cannot build images; `make test` covers the same programs.
set -euo pipefail

registry="ghcr.io/tailor-dev"
tag="$(python3 -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])' 2>/dev/null || echo dev)"
push=false
kind_cluster=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --registry) registry="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --push) push=true; shift ;;
    --kind) kind_cluster="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build-images: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! command -v docker >/dev/null 2>&1; then
  echo "build-images: docker is not installed; this script needs a container engine" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
base_args=()
[[ -n "${BASE:-}" ]] && base_args=(--build-arg "BASE=${BASE}")

for target in operator stream-worker scorer; do
  image="${registry}/${target}:${tag}"
  echo "build-images: building ${image}"
  docker build -f pipeline_images/Dockerfile --target "${target}" "${base_args[@]}" -t "${image}" .
  if $push; then
    docker push "${image}"
  fi
  if [[ -n "${kind_cluster}" ]]; then
    kind load docker-image "${image}" --name "${kind_cluster}"
  fi
done
echo "build-images: done (${registry}/{operator,stream-worker,scorer}:${tag})"
