#!/usr/bin/env bash
# The heavy abuse tests (#[ignore]d in the default run), in release mode:
# 1 GB of stanzas just under max_stanza_size routed through one pair, with the
# daemon's VmRSS printed and bounded. About a minute on a 2-core machine.
#
#   scripts/abuse-heavy.sh            # all ignored tests in tests/abuse.rs
#   scripts/abuse-heavy.sh one_gb     # a filter
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release --test abuse -- --ignored --nocapture "$@"
