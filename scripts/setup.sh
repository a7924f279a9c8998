#!/usr/bin/env bash
# Idempotent install of everything vlmdata needs: Debian packages, then a venv with the Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(openjdk-17-jre-headless chromium fonts-dejavu-core fonts-noto-cjk tuxpaint-stamps-default wordnet-base python3-doc debian-faq-zh-cn)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A JDK already on PATH satisfies Spark; do not pull a second one.
if command -v java >/dev/null 2>&1; then
  missing=("${missing[@]/openjdk-17-jre-headless}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.vlmdata-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
# pip names every local wheel folder it skips ("... is ignored"): drop that noise, keep pip's exit status.
pip_quiet() { .venv/bin/python -m pip "$@" 2> >(grep -v "is ignored" >&2); }
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing Python packages into .venv (first time: a few minutes)"
  pip_quiet install -q --upgrade pip
  # torch first, exactly pinned: pip takes these wheels from local disk.
  pip_quiet install -q "torch==2.14.1" "torchvision==0.29.1"
  # setuptools warns at every editable install of a layout with several top-level packages ("Editable installation.
  # ... Please be careful with folders ..."): nothing to act on, and it would fill a newcomer's first screen.
  PYTHONWARNINGS="ignore:Editable installation" pip_quiet install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
# The Spark driver's class-data archive (pipelines/engines/jvm_archive.py): about 8 s less start-up on every Spark
# run. Built once per environment (about a minute), kept after; a failure only costs that speed.
.venv/bin/python -m pipelines.engines.jvm_archive || echo "[setup] warning: no JVM class archive; Spark runs start without it" >&2
