# Shared shell helpers for scripts/*.sh (sourced, not run). Expects REPO and PYTHON set.

shopt -s inherit_errexit  # `x="$(f)"` fails when a command inside f fails

CACHE="${GRAPHPACK_CACHE:-$HOME/.cache/graphpack}"
export PIP_CACHE_DIR="$CACHE/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore DEBIAN_FRONTEND=noninteractive
mkdir -p "$CACHE/stamps" "$PIP_CACHE_DIR"

# still_running LABEL CMD...: run CMD; while it runs, print "still LABEL ... N s" every
# $GRAPHPACK_HEARTBEAT seconds (default 30) so that a long step is never silent. CMD's own
# output goes where the caller's goes. Returns CMD's exit status.
still_running() {
  local label="$1" every="${GRAPHPACK_HEARTBEAT:-30}" start=$SECONDS pid rc=0 next
  shift
  "$@" &
  pid=$!
  next=$every
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ $((SECONDS - start)) -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
      echo "still $label ... $((SECONDS - start)) s"
      next=$((next + every))
    fi
  done
  wait "$pid" || rc=$?
  return $rc
}

# Run a command as root (CI and the dev machines are root; sudo elsewhere).
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

# apt_install PKG...: install the Debian packages not installed yet. Callers running in
# parallel share one lock; the package lists are refreshed only when there are none or
# when the install cannot find or fetch a package.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then echo "already installed: $*"; return 0; fi
  (
    flock 9
    if ! compgen -G "/var/lib/apt/lists/*_Packages*" > /dev/null; then
      as_root apt-get update -q
    fi
    if ! as_root apt-get install -y -q --no-install-recommends "${missing[@]}"; then
      echo "apt-get install failed; refreshing the package lists and retrying"
      as_root apt-get update -q
      as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
  ) 9> "$CACHE/apt.lock"
  echo "installed: ${missing[*]}"
}

_INSTALLED_FROM_REPO='
import importlib.metadata as md, json, os, sys
try:
    url = json.loads(md.distribution("graphpack").read_text("direct_url.json") or "{}").get("url", "")
except md.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if url == "file://" + os.path.realpath(sys.argv[1]) else 1)
'

# pip_editable [EXTRAS]: `pip install -e .[EXTRAS]` unless a stamp for (python, repo path,
# extras, setup.cfg + pyproject.toml) exists and pip's record says graphpack is installed
# editable from this checkout. Prints "up to date" or "installed".
pip_editable() {
  local extras="${1:-}" target=. key stamp
  [ -n "$extras" ] && target=".[$extras]"
  key="$({ "$PYTHON" -c 'import sys; print(sys.executable, sys.version)'; echo "$REPO $extras";
           cat "$REPO/setup.cfg" "$REPO/pyproject.toml"; } | sha256sum | cut -c1-16)"
  stamp="$CACHE/stamps/pip-$key"
  if [ -f "$stamp" ] && (cd / && "$PYTHON" -c "$_INSTALLED_FROM_REPO" "$REPO"); then
    echo "up to date"; return 0
  fi
  echo "pip install -e '$target' (downloads and installs the dependencies; minutes on a fresh machine)"
  (cd "$REPO" && still_running "installing with pip (pip install -e '$target')" \
     "$PYTHON" -m pip install -q --progress-bar off -e "$target")
  touch "$stamp"
  echo "installed"
}
