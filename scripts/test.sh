#!/usr/bin/env bash
# Run every test: unit tests and the end-to-end tests on a lab fleet (needs root).
# Does its own set-up (apt packages, virtualenv). Extra arguments go to pytest.
source "$(dirname "$0")/setup.sh"
cd "$ROOT"
exec "$PY" -m pytest "$@"
