#!/bin/sh
# Builds Berth's native helper (the ptrace side of `berth patch lib`) as a static binary.
# Runs from npm's postinstall; a machine without gcc gets a warning, and `berth patch lib` says why.
set -eu
cd "$(dirname "$0")/.."
mkdir -p build
if ! command -v gcc >/dev/null 2>&1; then
  echo "build-native: gcc not found; berth patch lib will be unavailable" >&2
  exit 0
fi
gcc -O2 -Wall -Wextra -static -o build/berth-ptrace.tmp native/berth-ptrace.c
mv build/berth-ptrace.tmp build/berth-ptrace
