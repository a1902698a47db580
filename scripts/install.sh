# Sourced by scripts/dev and scripts/test: idempotent installs into .venv, done only when something is missing.
# A stamp newer than pyproject.toml says the last install is current; without one, `installed` checks what is
# there (relay itself, from this folder, and every requirement at a matching version) before reaching for pip.

install_relay() {
  local extra="${1:-}" stamp=".venv/.installed${1:+-$1}"
  if [ ! -x .venv/bin/python ]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || { echo "relay needs Python 3.11 or newer (python3 is $(python3 --version))" >&2; exit 1; }
    python3 -m venv .venv
  fi
  if [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ]; then
    return 0
  fi
  if ! installed "$extra"; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".${extra:+[$extra]}"
  fi
  touch "$stamp"
}

installed() {
  [ -x .venv/bin/relay ] || return 1
  .venv/bin/python -I - "${1:-}" <<'PY' 2>/dev/null  # -I: not the relay.egg-info of this folder
import importlib.metadata as metadata
import json
import pathlib
import sys
import tomllib

try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement

here = pathlib.Path.cwd().resolve().as_uri()
if json.loads(metadata.distribution("relay").read_text("direct_url.json") or "{}").get("url") != here:
    sys.exit(1)  # not installed from this folder (or not editable)
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
wanted = project["dependencies"] + project.get("optional-dependencies", {}).get(sys.argv[1], [])


def present(text, extras=("",)):
    requirement = Requirement(text)
    if requirement.marker is not None and not any(requirement.marker.evaluate({"extra": e}) for e in extras):
        return True  # not for this platform, or not for the extras asked for
    if not requirement.specifier.contains(metadata.version(requirement.name), prereleases=True):
        return False
    # A requirement's own extras (uvicorn[standard]): the packages they add, at matching versions.
    return all(
        present(dependency, tuple(requirement.extras))
        for dependency in metadata.requires(requirement.name) or []
        if requirement.extras and "extra" in dependency
    )


sys.exit(0 if all(present(text) for text in wanted) else 1)
PY
}

install_fixtures() {
  # Real GitHub payloads for the tests; kept out of git (tests/.node is ignored).
  if [ ! -d tests/.node/node_modules/@octokit/webhooks-examples ]; then
    npm install --silent --no-audit --no-fund --prefix tests/.node @octokit/webhooks-examples >/dev/null
  fi
}
