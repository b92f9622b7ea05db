#!/usr/bin/env bash
# Set-up of the browser test tier (tests/test_browser.py): headless Chromium and poppler-utils
# (pdfinfo, pdftotext, pdfimages). `make test` runs this first; on a fresh Debian machine it
# installs them (as root, through apt-get). Where they cannot be installed, the browser tests are
# skipped with the reason, except in CI (CI=true), where this fails so that the tier never
# silently goes missing.
set -uo pipefail

packages=()
if [ -z "${MARROW_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
    && ! command -v chromium-browser >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1; then
    packages+=(chromium)
fi
for tool in pdfinfo pdftotext pdfimages; do
    if ! command -v "$tool" >/dev/null 2>&1; then packages+=(poppler-utils); break; fi
done
[ ${#packages[@]} -eq 0 ] && exit 0

fail() {
    echo "browser tests: $1" >&2
    if [ "${CI:-}" = "true" ]; then
        echo "browser tests: CI=true, so this is an error (the tier must run in CI)" >&2
        exit 1
    fi
    echo "browser tests: they will be skipped; install ${packages[*]} to run them" >&2
    exit 0
}

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    fail "${packages[*]} missing and cannot be installed here (needs root and apt-get)"
fi
echo "browser tests: installing ${packages[*]} (apt-get; about a minute on a fresh machine)" >&2
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -q >/dev/null || ! apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null; then
    fail "apt-get could not install ${packages[*]}"
fi
echo "browser tests: installed ${packages[*]} in $(( $(date +%s) - start )) s" >&2
