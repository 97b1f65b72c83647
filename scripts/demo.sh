#!/usr/bin/env bash
# Run the demo (server, sandbox provider and example app): scripts/demo.sh [demo args...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh demo
exec .venv/bin/alloy-oauth demo "$@"
