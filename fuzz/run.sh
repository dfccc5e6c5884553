#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     default: 60 s each, all targets
#   SLOW=N fuzz/run.sh ...                also flag slow inputs: libFuzzer's
#                                         -report_slow_units=N (an input that takes
#                                         N s or more is saved as slow-unit-* and
#                                         fails the run) and -timeout=5N
#
# With a nightly toolchain (`cargo +nightly`), targets run with AddressSanitizer
# (cargo fuzz's default); otherwise on stable with `--sanitizer none`. Force one
# with FUZZ_TOOLCHAIN=stable|nightly. The committed seeds (fuzz/seeds/TARGET) are
# copied into the working corpus (fuzz/corpus/TARGET, not committed) first.
# Crashes land in fuzz/artifacts/TARGET; the script exits 1 if any target
# failed. Per target it prints libFuzzer's last status line (execs, exec/s, cov).
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

toolchain="${FUZZ_TOOLCHAIN:-}"
if [ -z "$toolchain" ]; then
  if cargo +nightly --version >/dev/null 2>&1; then toolchain=nightly; else toolchain=stable; fi
fi
if [ "$toolchain" = nightly ]; then
  run=(cargo +nightly fuzz run)
  label="nightly, ASan"
else
  run=(cargo fuzz run --sanitizer none)
  label="stable, no sanitizer"
fi

slow=()
if [ -n "${SLOW:-}" ]; then
  slow=(-report_slow_units="$SLOW" -timeout=$((SLOW * 5)))
fi

mkdir -p logs
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  if [ -d "seeds/$t" ]; then cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true; fi
  log="logs/$t.log"
  echo "== $t ($label, ${secs} s)"
  # -rss_limit_mb: the framer must stay far below it (docs/behaviour.md#limits);
  # -max_len: inputs up to 64 KiB, enough for limits and chunkings.
  mkdir -p "artifacts/$t"
  slow_before=$(find "artifacts/$t" -name 'slow-unit-*' | wc -l)
  if "${run[@]}" "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 "${slow[@]}" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
  fi
  slow_units=$(( $(find "artifacts/$t" -name 'slow-unit-*' | wc -l) - slow_before ))
  if [ "${#slow[@]}" -gt 0 ] && [ "$slow_units" -gt 0 ] && [ "$status" = ok ]; then
    status="FAILED (slow units)"
    failed+=("$t")
  fi
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' || true)
  slowest=$(grep -E '^stat::slowest_unit_time_sec' "$log" | awk '{print $2}' || true)
  echo "   $status: ${execs:-?} executions, ${rate:-?} exec/s, corpus $(ls "corpus/$t" | wc -l) files"
  if [ "${#slow[@]}" -gt 0 ]; then
    echo "   slowest input: ${slowest:-?} s; slow units (>= ${SLOW} s) saved: $slow_units"
  fi
  echo "   last: $last"
  if [ "$status" = FAILED ]; then
    grep -E 'panicked|ERROR: AddressSanitizer|SUMMARY|Test unit written' "$log" | head -5 | sed 's/^/   /'
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]} (logs in fuzz/logs, inputs in fuzz/artifacts)"
  exit 1
fi
echo "all targets ok"
