#!/usr/bin/env bash
# The README's first command: install what is missing, build, start kilnd on its
# embedded defaults (SQLite in ./kiln-data, local backend, file artifacts) and run
# the example training job to completion.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
DATA=${KILN_DATA_DIR:-$PWD/kiln-data}
mkdir -p "$DATA"
if ! { [ -s "$DATA/kilnd.addr" ] && curl -sf "http://$(cat "$DATA/kilnd.addr")/v1/health" >/dev/null; }; then
  rm -f "$DATA/kilnd.addr"
  nohup build/cmd/kilnd --data-dir "$DATA" --listen 127.0.0.1:0 >>"$DATA/kilnd.log" 2>&1 &
  for _ in $(seq 100); do [ -s "$DATA/kilnd.addr" ] && break; sleep 0.05; done
  [ -s "$DATA/kilnd.addr" ] || { echo "kilnd did not start; see $DATA/kilnd.log"; tail "$DATA/kilnd.log"; exit 1; }
  echo "kilnd started (pid $!) on $(cat "$DATA/kilnd.addr"), data dir $DATA, log $DATA/kilnd.log"
fi
# --data-dir: the CLI reads kilnd's address and, on this host as root, the
# bootstrap admin token (admin.token, 0600) from there; no login needed.
KILN=(build/cmd/kiln --data-dir "$DATA")
NAME="train-sklearn-$(date +%Y%m%d-%H%M%S)"
"${KILN[@]}" run examples/train-sklearn/job.yaml --name "$NAME" --follow
ARTIFACT=$("${KILN[@]}" --json jobs describe "$NAME" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["model_artifact"])')
echo
echo "Model artifact: $ARTIFACT"
/usr/bin/python3 examples/train-sklearn/load_model.py "$ARTIFACT"
echo
echo "kilnd keeps running: build/cmd/kiln --data-dir $DATA jobs list"
