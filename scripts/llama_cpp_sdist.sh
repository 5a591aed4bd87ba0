# Sourced by scripts/llama_cpp_golden.sh, llama_cpp_tokens.sh,
# fetch-vocab-tests.sh and fetch-chat-templates.sh: the llama-cpp-python
# sdist on PyPI whose vendored llama.cpp those scripts use, pinned by
# version and SHA-256, the function that downloads it (once) into the cache,
# and the one that extracts files of it into the cache. Nothing of it is
# committed.
#
# Environment: LLAMA_CPP_CACHE (default ~/.cache/gguf-loader/llama.cpp-$VERSION).

VERSION=0.3.36
SDIST_URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$VERSION.tar.gz"
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
CACHE="${LLAMA_CPP_CACHE:-$HOME/.cache/gguf-loader/llama.cpp-$VERSION}"
SDIST_TARBALL="$CACHE/llama_cpp_python-$VERSION.tar.gz"

# Downloads the sdist into $SDIST_TARBALL unless it is there with the
# pinned SHA-256; fails on a mismatch.
fetch_sdist() {
    mkdir -p "$CACHE"
    if ! echo "$SDIST_SHA256  $SDIST_TARBALL" | sha256sum -c --quiet >/dev/null 2>&1; then
        echo "downloading the llama-cpp-python $VERSION sdist" >&2
        curl -fsSL -o "$SDIST_TARBALL.part" "$SDIST_URL"
        echo "$SDIST_SHA256  $SDIST_TARBALL.part" | sha256sum -c --quiet
        mv "$SDIST_TARBALL.part" "$SDIST_TARBALL"
    fi
}

# extract_models_files NAME GLOB: the files of the vendored llama.cpp's
# models/ folder matching GLOB (e.g. 'templates/*.jinja'), extracted flat
# into the cache folder NAME (${GGUF_LOADER_CACHE:-~/.cache/gguf-loader}/NAME)
# once per sdist version; prints that folder.
extract_models_files() {
    local name=$1 glob=$2
    local out="${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}/$name"
    local stamp="$out/.complete-$VERSION"
    if [ -e "$stamp" ]; then
        echo "$out"
        return
    fi
    fetch_sdist
    mkdir -p "${out%/*}"
    # Global, so that the trap still sees it if tar fails.
    _extract_tmp="$(mktemp -d "${out%/*}/.$name.XXXXXX")"
    trap 'rm -rf "$_extract_tmp"' EXIT
    local models="llama_cpp_python-$VERSION/vendor/llama.cpp/models"
    tar -xzf "$SDIST_TARBALL" -C "$_extract_tmp" --wildcards "$models/$glob"
    mkdir -p "$out"
    find "$_extract_tmp/$models" -type f -exec mv -f {} "$out/" \;
    touch "$stamp"
    echo "$out"
}
