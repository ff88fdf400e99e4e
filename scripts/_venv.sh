# Sourced by scripts/run, scripts/test and the other scripts: make sure .venv holds the package
# (editable) and exactly the versions of uv.lock, syncing only when pyproject.toml or uv.lock has
# changed since the last sync. Its arguments say what besides the runtime dependencies:
# `source _venv.sh runtime` (scripts/run: nothing else), `source _venv.sh test` (scripts/test:
# the test extra), `test load` (the load extra too), `build` (the build group, for
# scripts/build_lambda). What was once installed stays: a .venv made for the tests serves
# scripts/run as it is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv_extras() {
  local -a wanted=() installed=()
  local word
  for word in "$@"; do
    case $word in
      runtime) ;;
      test | load | build) wanted+=("$word") ;;
      *)
        echo "scripts/_venv.sh: expected runtime, test, load or build, not '$word'" >&2
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
    printf '%s\n' "${wanted[@]}" | sort -u | paste -sd ' ' -
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
    if [[ $extra == build ]]; then
      options+=(--group build)
    else
      options+=(--extra "$extra")
    fi
  done
  echo "scripts/_venv.sh: installing uv.lock's versions into .venv: runtime${extras:+ + $extras}" >&2
  scripts/uv sync --locked --python python3 --no-python-downloads "${options[@]}"
  echo "$wanted" >"$stamp"
}

if [[ $# -eq 0 ]]; then
  echo "scripts/_venv.sh: say what to install: runtime, test, load or build" >&2
  return 2
fi
venv_sync "$@"
