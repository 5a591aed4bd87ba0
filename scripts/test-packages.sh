#!/usr/bin/env bash
# The three crates as crates.io would ship them: `cargo package` of the
# library, the llm crate and the CLI, unpacked side by side into a workspace
# of their own, far from the repository (the llm crate and the CLI take the
# library from its package: nothing is published yet), where their own
# tests run: the unit tests and the doc tests. The repository's integration
# tests stay in the repository (the packages leave `tests/` out); a unit
# test that needs the repository's data skips there, saying so.
#
#   scripts/test-packages.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
crates=(gguf-loader gguf-loader-llm gguf-loader-cli)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "no workspace version in Cargo.toml" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo package --quiet --allow-dirty --no-verify "${crates[@]/#/-p}"
members=""
for c in "${crates[@]}"; do
    tar -xzf "target/package/$c-$version.crate" -C "$work"
    members+="\"$c-$version\", "
done
cat >"$work/Cargo.toml" <<EOF
[workspace]
members = [${members%, }]
resolver = "2"

[patch.crates-io]
gguf-loader = { path = "gguf-loader-$version" }
gguf-loader-llm = { path = "gguf-loader-llm-$version" }
EOF
# The repository's dependency versions.
cp Cargo.lock "$work/"
cd "$work"
echo "== the packages' own tests (unit and doc tests), in $work"
CARGO_TARGET_DIR="$root/target/packages" cargo test --quiet --workspace --release
