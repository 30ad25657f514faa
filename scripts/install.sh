#!/usr/bin/env bash
# Idempotent set-up: creates .venv and installs gold-jax with every simulator and Ray (the
# `ray` extra: sweeps on a cluster).
# GPU: after this, run `.venv/bin/pip install -U "jax[cuda12]==0.10.2"` (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=.venv/.gold_jax_installed
HASH="$(cat scripts/requirements.txt setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r scripts/requirements.txt
# safety-gymnasium 1.0.0 pins versions that cannot resolve beside JAX on Python 3.11;
# its real runtime needs are installed above, so both go in without their pins.
.venv/bin/python -m pip install -q --no-deps safety-gymnasium==1.0.0 gymnasium-robotics==1.2.2
.venv/bin/python -m pip install -q --no-deps -e .
echo "$HASH" > "$STAMP"
