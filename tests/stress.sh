#!/usr/bin/env bash
# Runs the README's test command in several random test orders, on a quiet machine and with CPU hogs beside it,
# and prints one summary line per run. Not part of CI (it runs the suite 5 times); run it before a release or after
# touching shared state (registries, W&B, environment variables):
#
#   bash tests/stress.sh                 # seeds 1 2 3 quiet, then seed 1 and an unseeded run with 2 CPU hogs
#   SEEDS="4 5" HOGS=3 bash tests/stress.sh
#
# Exit status: the number of runs that failed (0: all passed). Logs go to $STRESS_LOG (default: a temp folder).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SEEDS=${SEEDS:-"1 2 3"}
HOG_SEEDS=${HOG_SEEDS:-"1 random"}
HOGS=${HOGS:-2}
LOG=${STRESS_LOG:-$(mktemp -d -t lbp-stress-XXXX)}
mkdir -p "$LOG"
export WANDB_MODE=offline MPLBACKEND=Agg PYTHONUNBUFFERED=1
failed=0
hog_pids=()

stop_hogs() { for p in "${hog_pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; hog_pids=(); }
trap stop_hogs EXIT

run() {  # run <label> <seed|random>
    local label=$1 seed=$2 args=(-n 2 -p randomly) out
    [ "$seed" != random ] && args+=(--randomly-seed="$seed")
    out="$LOG/$label-seed-$seed.log"
    local t0=$SECONDS
    python3 -m pytest "${args[@]}" >"$out" 2>&1
    local rc=$?
    local used=$(grep -oE 'Using --randomly-seed=[0-9]+' "$out" | head -1 | cut -d= -f2)
    local summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$out" | tail -1 | sed -E 's/=+//g; s/^ +| +$//g')
    printf '%-6s seed %-10s rc %d  %4ds  %s\n' "$label" "${used:-$seed}" "$rc" $((SECONDS - t0)) "$summary"
    [ $rc -ne 0 ] && { failed=$((failed + 1)); grep -E '^(FAILED|ERROR) ' "$out" | sed 's/^/         /'; }
}

echo "logs: $LOG"
for s in $SEEDS; do run quiet "$s"; done
for _ in $(seq "$HOGS"); do python3 -c 'while True: pass' & hog_pids+=($!); done
for s in $HOG_SEEDS; do run hog"$HOGS" "$s"; done
stop_hogs
echo "runs failed: $failed"
exit "$failed"
