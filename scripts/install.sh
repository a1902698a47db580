# Sourced by scripts/dev and scripts/test: idempotent installs, redone only when pyproject.toml changes.

install_relay() {
  local extra="${1:-}" stamp=".venv/.installed${1:+-$1}"
  if [ ! -x .venv/bin/python ]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || { echo "relay needs Python 3.11 or newer (python3 is $(python3 --version))" >&2; exit 1; }
    python3 -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".${extra:+[$extra]}"
    touch "$stamp"
  fi
}

install_fixtures() {
  # Real GitHub payloads for the tests; kept out of git (tests/.node is ignored).
  if [ ! -d tests/.node/node_modules/@octokit/webhooks-examples ]; then
    npm install --silent --no-audit --no-fund --prefix tests/.node @octokit/webhooks-examples >/dev/null
  fi
}
