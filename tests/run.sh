#!/usr/bin/env bash
# The whole test suite: installs what it needs, then formatting, lints, docs and every test.
#
#   tests/run.sh
#
# The directory and binary suites start their own slapd on free loopback ports; nothing is
# left running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== one crypto provider"
if cargo tree --workspace --locked -i aws-lc-sys >/dev/null 2>&1; then
  echo "aws-lc-sys is in the dependency tree: rustls must use ring only" >&2
  exit 1
fi
echo "== build"
# The binary suites run target/debug/mailfold: build it before the tests.
cargo build --workspace --locked
echo "== tests"
cargo nextest run --workspace --locked --no-fail-fast
