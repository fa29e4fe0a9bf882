#!/usr/bin/env bash
# Installs every Debian package Herald needs to build, test and run its local stack.
# Idempotent and quick when everything is present. Run as root (or with sudo available).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
  build-essential cmake pkg-config git ca-certificates
  librdkafka-dev libpqxx-dev libhiredis-dev nlohmann-json3-dev libcurl4-openssl-dev
  libspdlog-dev libfmt-dev catch2 libcpp-httplib-dev libkainjow-mustache-dev
  libhowardhinnant-date-dev libcli11-dev libssl-dev tzdata
  postgresql redis-server python3 python3-aiosmtpd kcat curl procps
)

# --with-browser: also what the console's browser test drives; --with-fuzz: clang with its
# sanitizer and libFuzzer runtimes (scripts/fuzz.sh). The test command needs both, the quick
# start neither.
for arg in "$@"; do
  case "$arg" in
    --with-browser) packages+=(chromium chromium-driver python3-selenium) ;;
    --with-fuzz) packages+=(clang-14 libclang-rt-14-dev) ;;
    *) echo "bootstrap: unknown option $arg" >&2; exit 2 ;;
  esac
done

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo); else
    echo "bootstrap: run as root or install sudo" >&2; exit 1; fi
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# valijson is header-only; its Debian package depends on Qt and Poco for adapters Herald
# does not use, so only that one package is unpacked into the project's dependency folder.
deps="$here/.deps"
if [ ! -f "$deps/valijson/usr/include/valijson/validator.hpp" ]; then
  echo "bootstrap: unpacking libvalijson-dev into $deps/valijson"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq libvalijson-dev >/dev/null 2>&1 || {
     "${sudo_cmd[@]}" apt-get update -qq && apt-get download -qq libvalijson-dev; })
  mkdir -p "$deps/valijson"
  dpkg -x "$tmp"/libvalijson-dev_*.deb "$deps/valijson"
fi
echo "bootstrap: all dependencies present"
