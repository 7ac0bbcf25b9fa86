#!/usr/bin/env bash
# Acceptance check of `make demo` as a new user runs it: N times (default 5), clone this
# repository into a new folder, `make demo`, `make down`, remove the folder. Prints one line
# per round (exit code, wall time) and exits non-zero if any round failed. Logs stay in
# $LOG_DIR (default: a new temporary folder). Nothing of the stack may be running before.
#
#   scripts/fresh_clone_demo.sh [N]     MLOPS_CONFIG=... is passed through to make demo.
set -u
rounds=${1:-5}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
LOG_DIR=${LOG_DIR:-$(mktemp -d -t fresh-demo-XXXX)}
failed=0
for i in $(seq 1 "$rounds"); do
  dir=$(mktemp -d -t fresh-clone-XXXX)
  git clone -q "$repo" "$dir/repo"
  start=$(date +%s)
  (cd "$dir/repo" && make demo) > "$LOG_DIR/round-$i.log" 2>&1
  rc=$?
  wall=$(( $(date +%s) - start ))
  (cd "$dir/repo" && make down) >> "$LOG_DIR/round-$i.log" 2>&1
  echo "round $i: make demo exit $rc in ${wall}s (log $LOG_DIR/round-$i.log)"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  rm -rf "$dir"
done
echo "$((rounds - failed)) of $rounds succeeded"
[ "$failed" -eq 0 ]
