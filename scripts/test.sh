#!/usr/bin/env bash
# The README test command: `bash scripts/test.sh [pytest args...]`.
#
# 1. Setup: independent steps run in parallel, each skips itself when its work is already
#    done, and each reports how long it took. A step is one function named step_<name>
#    (every such function is a step, in name order); it runs under `set -e`, writes its
#    progress to stdout (kept in a log, shown on failure) and may leave a one-line note
#    for the summary with `note TEXT`. Steps that depend on each other belong in one step.
#    Helpers in scripts/lib.sh: apt_install (serialised with a lock, `apt-get update` only
#    when a package cannot be found or downloaded) and pip_editable.
# 2. Tests: pytest over tests/ (or the paths given), skip reasons shown, then one line
#    `tests: N passed, N failed, N skipped`. Exits non-zero on failures, errors, or when no
#    test ran (pytest's exit code 5).
#
# Environment: PYTHON (default python3), GRAPHPACK_CACHE (default ~/.cache/graphpack; the
# pip cache and setup stamps live there, outside the repo), GRAPHPACK_SKIP_SETUP=1 to go
# straight to pytest.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

# ---------------------------------------------------------------- helpers

note() { echo "$*" > "$STEP_NOTE_FILE"; }

# prepare MODULE WHO: run `python -m MODULE`, which prints its progress and last a one-line summary;
# exit 0 means ready, 3 means it cannot be had here: the step then passes with a note, and WHO skip
# naming the reason. Any other exit fails the step.
prepare() {
  local out rc=0
  out="$("$PYTHON" -m "$1")" || rc=$?
  echo "$out"
  case $rc in
    0) note "${out##*$'\n'}" ;;
    3) note "UNAVAILABLE ($2 will skip): ${out##*$'\n'}" ;;
    *) return $rc ;;
  esac
}

# ---------------------------------------------------------------- setup steps

# Debian graphviz: `dot` renders graph plots (graph.plot, `graphpack graph`).
step_graphviz() {
  if command -v dot > /dev/null; then note "dot present"; return 0; fi
  apt_install graphviz
  dot -V
  note "installed graphviz"
}

# Debian chromium + chromium-driver (and a font): tests/observe drives `graphpack ui` in headless Chromium through
# selenium and /usr/bin/chromedriver (nothing downloaded by a driver manager).
step_chromium() {
  apt_install chromium chromium-driver fonts-dejavu-core
  note "$(chromium --version 2>/dev/null | head -n 1)"
}

# graphpack itself, editable, with the test extra (skipped when up to date, see lib.sh).
# Then graphpack's base image (tests/packager/images), built from Debian's python3 .debs and
# cached by content: done here, where its progress shows, rather than silently inside a test.
# Not fatal: the tests build it themselves (or skip, naming what is missing).
step_pip() {
  local r
  r="$(pip_editable test | tee /dev/stderr)"   # the step's log shows pip's progress as it goes
  if command -v dpkg-deb > /dev/null && command -v apt-get > /dev/null; then
    compgen -G "/var/lib/apt/lists/*_Packages*" > /dev/null || (flock 9; as_root apt-get update -q) 9> "$CACHE/apt.lock"
    if "$PYTHON" -m graphpack.cli base-image --no-push; then r="$r; base image cached"
    else r="$r; base image not built here (the tests build it)"; fi
  fi
  note "pip install -e .[test]: ${r##*$'\n'}"
}

# Container images (tests/packager/images, deploy --target docker): Debian docker.io, started
# here with --iptables=false --bridge=none (overlay2, vfs when overlay2 fails; containers use
# --network host), docker-registry (tests start their own instances on free loopback ports,
# with and without an htpasswd file made here), skopeo. The base image is built by the tests
# from Debian's python3 .deb closure and cached by content under $GRAPHPACK_CACHE/images.
step_docker() {
  apt_install docker.io docker-registry skopeo apache2-utils
  # the base image is unpacked from .deb files that `apt-get download` fetches: it needs the lists
  compgen -G "/var/lib/apt/lists/*_Packages*" > /dev/null || (flock 9; as_root apt-get update -q) 9> "$CACHE/apt.lock"
  mkdir -p "$CACHE/images"
  [ -s "$CACHE/images/htpasswd" ] || htpasswd -Bbn graphpack graphpack-test > "$CACHE/images/htpasswd"
  if docker info > /dev/null 2>&1; then note "dockerd running"; return 0; fi
  local driver
  for driver in overlay2 vfs; do
    as_root setsid nohup dockerd --storage-driver="$driver" --iptables=false --ip-masq=false --bridge=none \
      > "$CACHE/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 1 120); do
      docker info > /dev/null 2>&1 && { note "started dockerd ($driver)"; return 0; }
      kill -0 $! 2> /dev/null || break
      sleep 0.25
    done
    echo "dockerd with $driver did not start:"; tail -n 5 "$CACHE/dockerd.log"
    kill $! 2> /dev/null || true
  done
  return 1
}

# The real Nuclio processor for tests/nuclio (tests/nuclio/toolchain.py): `CGO_ENABLED=0 go
# install github.com/nuclio/nuclio/cmd/processor@1.14.1` (minutes on 2 cores the first time;
# GOBIN and GOCACHE under $GRAPHPACK_CACHE/nuclio/<version>), its _nuclio_wrapper.py from the
# module cache, a venv with nuclio-sdk 0.5.13 + msgpack 1.0.8, and Debian's wrk (bench/nuclio.py's
# load generator). When the processor cannot be had, the step passes with a note and tests/nuclio
# skip with the exact command and error.
step_nuclio() {
  apt_install wrk
  prepare tests.nuclio.toolchain "tests/nuclio"
}

# Knative manifest checker (tests/knative: Knative's own Go validation + the CRD schemas from the
# same modules), cached under $GRAPHPACK_CACHE/knative-check/<digest of go.mod, go.sum, main.go>.
step_knative_check() {
  prepare tests.knative.checker "the Knative checker tests"
}

# The real Nuclio dashboard (tests/packager/deploy/test_nuclio.py): the 1.14.1 binary under
# $GRAPHPACK_CACHE/nuclio/1.14.1/bin (go install from the Go module proxy only) and its store
# image gcr.io/iguazio/alpine:3.20 imported from static busybox.
# Waits for dockerd (the docker step starts it in parallel).
step_nuclio_dashboard() {
  apt_install busybox-static
  for _ in $(seq 1 240); do docker info > /dev/null 2>&1 && break; sleep 0.5; done
  prepare tests.packager.deploy.nuclio_dashboard "the real-dashboard tests"
}

# The real mlrun package for the differential test (tests/compat): a venv of its own under
# $GRAPHPACK_CACHE/mlrun-venv-<version> with the pinned mlrun + storey (about 50 s the first time,
# from PyPI), reused after that. Without a package index the step passes with a note and the test
# skips, naming the error.
step_mlrun_venv() {
  prepare tests.compat.mlrun_venv "tests/compat"
}

# The real Kafka broker for the kafka:// queue tests (tests/plugins/kafka_broker.py): Apache Kafka 4.x
# jars (KRaft, single node) resolved from Maven Central with `mvn dependency:copy-dependencies` on
# tests/plugins/kafka-pom.xml, cached under $GRAPHPACK_CACHE/kafka/<version>; the tests start the
# broker once per session on a free loopback port. When the jars cannot be had, the step passes
# with a note and the Kafka tests skip, naming the failure.
step_kafka() {
  command -v mvn > /dev/null || apt_install maven || true
  command -v java > /dev/null || apt_install default-jre-headless || true
  command -v openssl > /dev/null || apt_install openssl || true  # certificates of its TLS listeners
  prepare tests.plugins.kafka_broker "the Kafka tests"
}

# A real Kubernetes API server for the Knative deploy tests (tests/plugins/kube_cluster.py):
# Debian's etcd-server, kube-apiserver v1.37.2 built from the k8s.io/kubernetes Go module (about
# 10 minutes of both cores the first time, at low priority; then cached by version under
# $GRAPHPACK_CACHE/kube/), Knative's CRDs from the module versions tests/knative pins. The tests
# start etcd and the API server once per session on free loopback ports and stop them at the end.
step_kube() {
  apt_install openssl
  apt_install etcd-server || echo "no Debian etcd-server: etcd is built from its Go module instead"
  prepare tests.plugins.kube_cluster "the Knative deploy tests"
}

# ---------------------------------------------------------------- run the setup

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

run_setup() {
  local logdir step pid status=0 t0
  local -a SETUP_STEPS
  mapfile -t SETUP_STEPS < <(declare -F | awk '{print $3}' | sed -n 's/^step_//p')
  logdir="$(mktemp -d)"
  t0="$(now)"
  declare -A pids
  for step in "${SETUP_STEPS[@]}"; do
    (
      export STEP_NOTE_FILE="$logdir/$step.note"
      start="$(now)"
      set +e  # the step runs with -e in a subshell of its own (-e is ignored under `||`)
      ( set -e; "step_$step" ) > "$logdir/$step.log" 2>&1
      rc=$?
      echo "$(secs "$start" "$(now)")" > "$logdir/$step.time"
      exit $rc
    ) &
    pids[$step]=$!
  done
  # report each step as it ends; every $GRAPHPACK_HEARTBEAT s (default 30) name the ones still running
  local every="${GRAPHPACK_HEARTBEAT:-30}" start=$SECONDS next
  local -a running
  next=$every
  local -A done_steps=()
  while [ ${#done_steps[@]} -lt ${#SETUP_STEPS[@]} ]; do
    running=()
    for step in "${SETUP_STEPS[@]}"; do
      [ -n "${done_steps[$step]:-}" ] && continue
      pid="${pids[$step]}"
      if kill -0 "$pid" 2>/dev/null; then running+=("$step"); continue; fi
      done_steps[$step]=1
      if wait "$pid"; then
        printf 'setup: %-10s ok     %6ss  %s\n' "$step" "$(cat "$logdir/$step.time")" \
          "$(cat "$logdir/$step.note" 2>/dev/null || true)"
      else
        status=1
        printf 'setup: %-10s FAILED %6ss  (log below)\n' "$step" "$(cat "$logdir/$step.time" 2>/dev/null || echo '?')"
        tail -n 40 "$logdir/$step.log" | sed "s/^/  [$step] /"
      fi
    done
    [ ${#running[@]} -eq 0 ] && break
    if [ $((SECONDS - start)) -ge "$next" ]; then
      printf 'setup: still running after %s s: %s (last line: %s)\n' "$((SECONDS - start))" "${running[*]}" \
        "$(tail -n 1 "$logdir/${running[0]}.log" 2>/dev/null | cut -c1-100)"
      next=$((next + every))
    fi
    sleep 0.5
  done
  echo "setup: total $(secs "$t0" "$(now)")s"
  rm -rf "$logdir"
  return $status
}

if [ "${GRAPHPACK_SKIP_SETUP:-0}" != 1 ]; then
  # Not `run_setup || ...`: bash ignores -e inside anything run under `||`, steps included.
  set +e
  run_setup
  setup_rc=$?
  set -e
  if [ $setup_rc != 0 ]; then echo "tests: 0 passed, 1 failed, 0 skipped (setup failed)"; exit 1; fi
fi

# ---------------------------------------------------------------- tests

# Test under tests/ unless a path was given among the arguments.
targets=(tests)
for arg in "$@"; do
  case "$arg" in -*) ;; *) [ -e "${arg%%::*}" ] && targets=() ;; esac
done

junit="$(mktemp --suffix=.xml)"
trap 'rm -f "$junit"' EXIT
rc=0
"$PYTHON" -m pytest -p no:cacheprovider -rs --junitxml="$junit" "${targets[@]}" "$@" || rc=$?
"$PYTHON" scripts/junit_summary.py "$junit" "$rc"
