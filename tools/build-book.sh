#!/usr/bin/env bash
# Build the HTML book into _build/html with every chapter executed (cached),
# warnings as errors, nitpicky references; the log goes to _build/build.log.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
mkdir -p _build
start=$(date +%s)

# Binder launch buttons need the public repository: with BOOK_REPOSITORY_URL
# set, build from a copy of _config.yml that names it.
config_args=()
if [ -n "${BOOK_REPOSITORY_URL:-}" ]; then
  "$VENV/bin/python" - "$BOOK_REPOSITORY_URL" "${BOOK_REPOSITORY_BRANCH:-main}" > _build/_config.launch.yml <<'PY'
import sys, yaml
config = yaml.safe_load(open("_config.yml", encoding="utf-8"))
config["repository"] = {"url": sys.argv[1], "branch": sys.argv[2], "path_to_book": ""}
config.setdefault("launch_buttons", {})["binderhub_url"] = "https://mybinder.org"
yaml.safe_dump(config, sys.stdout, allow_unicode=True, sort_keys=False)
PY
  config_args=(--config _build/_config.launch.yml)
  printf '==> Binder launch buttons point at %s\n' "$BOOK_REPOSITORY_URL"
fi
# The execution cache knows the chapters' text, not the code and data they
# call: when lab/ or data/ changed since the last build, execute everything again.
inputs=$(find lab data requirements.txt -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
if [ -e _build/.doctrees ] && [ "$(cat _build/.inputs 2>/dev/null)" != "$inputs" ]; then
  printf '==> lab/ or data/ changed since the last build: the chapters will be executed again\n'
  rm -rf _build/.jupyter_cache _build/.doctrees
fi
echo "$inputs" > _build/.inputs

printf '==> building the book into _build/html (chapters are executed; results cached in _build/.jupyter_cache)\n'
# -W: warnings are errors; -n: every reference must resolve; --keep-going: report all of them.
if ! "$VENV/bin/jupyter-book" build . "${config_args[@]}" --warningiserror --nitpick --keep-going 2>&1 | tee _build/build.log; then
  printf '==> the book build FAILED after %ss; see the warnings above (also in _build/build.log)\n' "$(( $(date +%s) - start ))" >&2
  exit 1
fi
printf '==> book built in %ss: open _build/html/index.html\n' "$(( $(date +%s) - start ))"
