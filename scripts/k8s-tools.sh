#!/usr/bin/env bash
# Installs the pinned Kubernetes tools the tests run (issue 13), into a cache keyed by version so a
# second run does nothing:
#   <cache>/helm-v4.3.2/helm                        go install from the Go module proxy
#   <cache>/kube-apiserver-v1.37.2/kube-apiserver   built from the Go module proxy (~10–12 min on 2 cores
#                                                   the first time; the Go build cache makes rebuilds fast)
#   /usr/bin/etcd                                   Debian's etcd-server
# <cache> is ${AIRLOCK_TOOLS_DIR:-$HOME/.cache/airlock-tools}. Concurrent runs take turns (flock).
set -euo pipefail

HELM_VERSION=v4.3.2
KUBE_VERSION=v1.37.2
# The staging modules (k8s.io/api, k8s.io/apiserver, ...) are tagged v0.<minor>.<patch> for each release.
STAGING_VERSION=v0.${KUBE_VERSION#v1.}

cache="${AIRLOCK_TOOLS_DIR:-$HOME/.cache/airlock-tools}"
mkdir -p "$cache"
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "k8s-tools: the Go toolchain (go) is needed to build helm and kube-apiserver" >&2; exit 1; }

exec 9>"$cache/.lock"
flock 9

if [[ ! -x /usr/bin/etcd ]]; then
  echo "k8s-tools: installing etcd-server (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
fi

kube_dir="$cache/kube-apiserver-$KUBE_VERSION"
if [[ ! -x "$kube_dir/kube-apiserver" ]]; then
  echo "k8s-tools: building kube-apiserver $KUBE_VERSION (first time ~10–12 min on 2 cores)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  pushd "$work" >/dev/null
  go mod init airlock.local/kube-apiserver-build >/dev/null 2>&1
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging/...;
  # a dependency's replaces do not apply here, so the same list is generated from its go.mod and
  # pointed at the published modules.
  kube_gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$kube_gomod" ]] || { echo "k8s-tools: no go.mod for k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }
  mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$kube_gomod")
  ((${#staging[@]} > 10)) || { echo "k8s-tools: found only ${#staging[@]} staging modules in $kube_gomod" >&2; exit 1; }
  edits=(-require="k8s.io/kubernetes@$KUBE_VERSION")
  for m in "${staging[@]}"; do edits+=(-replace="$m=$m@$STAGING_VERSION"); done
  go mod edit "${edits[@]}"
  # A tools file keeps the command's packages in the module graph for `go mod tidy`; it is never compiled.
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' >tools.go
  nice go mod tidy
  # The version stamp matters to clients: helm checks a chart's kubeVersion against /version.
  pkg=k8s.io/component-base/version
  nice go build -o "$work/kube-apiserver" \
    -ldflags "-X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION")" \
    k8s.io/kubernetes/cmd/kube-apiserver
  mkdir -p "$kube_dir"
  mv "$work/kube-apiserver" "$kube_dir/kube-apiserver.tmp"
  mv "$kube_dir/kube-apiserver.tmp" "$kube_dir/kube-apiserver"
  popd >/dev/null
fi

helm_dir="$cache/helm-$HELM_VERSION"
if [[ ! -x "$helm_dir/helm" ]]; then
  echo "k8s-tools: installing helm $HELM_VERSION"
  mkdir -p "$helm_dir"
  GOBIN="$helm_dir" nice go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
fi

echo "k8s-tools: helm $helm_dir/helm, kube-apiserver $kube_dir/kube-apiserver, etcd /usr/bin/etcd"
