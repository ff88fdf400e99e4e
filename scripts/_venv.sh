# Sourced by scripts/run, scripts/test and the other scripts: make sure .venv holds the package
# (editable) and exactly the versions of uv.lock, syncing only when pyproject.toml or uv.lock has
# changed since the last sync. Its arguments say what besides the runtime dependencies:
# `source _venv.sh runtime` (scripts/run: nothing else), `source _venv.sh test` (scripts/test:
# the test extra), `source _venv.sh test load`. Extras once installed stay: a .venv made for the
# tests serves scripts/run as it is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv_extras() {
  local -a wanted=() installed=()
  local word
  for word in "$@"; do
    case $word in
      runtime) ;;
      test | load) wanted+=("$word") ;;
      *)
        echo "scripts/_venv.sh: expected runtime, test or load, not '$word'" >&2
        return 2
        ;;
    esac
  done
  # what the last sync installed (the stamp's words after the hash) stays installed
  if [[ -r .venv/.anb-installed ]]; then
    read -r -a installed <.venv/.anb-installed
    wanted+=("${installed[@]:1}")
  fi
  if [[ ${#wanted[@]} -gt 0 ]]; then
    printf '%s\n' "${wanted[@]}" | sort -u | tr '\n' ' '
  fi
}

venv_sync() {
  local stamp=.venv/.anb-installed extras wanted extra
  local -a options=()
  extras=$(venv_extras "$@") || return
  wanted="$(cat pyproject.toml uv.lock | sha256sum | cut -d' ' -f1) $extras"
  if [[ -x .venv/bin/python && "$(cat "$stamp" 2>/dev/null)" == "$wanted" ]]; then
    return
  fi
  for extra in $extras; do
    options+=(--extra "$extra")
  done
  echo "scripts/_venv.sh: installing the locked dependencies into .venv (extras: ${extras:-none})" >&2
  scripts/uv sync --locked --python python3 --no-python-downloads "${options[@]}"
  echo "$wanted" >"$stamp"
}

if [[ $# -eq 0 ]]; then
  echo "scripts/_venv.sh: say what to install: runtime, test or load" >&2
  return 2
fi
venv_sync "$@"
