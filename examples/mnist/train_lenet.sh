#!/usr/bin/env bash
set -euo pipefail
"${NETDEF:-netdef}" train --solver=examples/mnist/lenet_solver.prototxt "$@"
