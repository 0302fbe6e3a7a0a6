#!/usr/bin/env bash
# The one list of what portknock needs from Debian, for building, testing and the demo.
# Installs only what is missing; safe to run again.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config clang-14 libclang-rt-14-dev
  # libraries
  libpcap-dev libpcre2-dev libcrypto++-dev libnftables-dev libipset-dev libnftnl-dev libmnl-dev libsodium-dev libnetfilter-log-dev
  libseccomp-dev libcap-dev libhiredis-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # oracles: Perl's Config::General and Crypt::CBC with every cipher module Debian packages
  perl libconfig-general-perl libjson-pp-perl libcrypt-cbc-perl libcrypt-blowfish-perl
  libcrypt-des-perl libcrypt-des-ede3-perl libcrypt-cast5-perl libcrypt-rijndael-perl
  libcrypt-twofish-perl
  # network tests and the demo
  iproute2 iptables ipset nftables tcpdump procps socat ulogd2
  # the shared store of a fleet (tests/e2e/netns_fleet.sh): a real Redis server and its client
  redis-server redis-tools
  # the SPA oracle (tests/oracle/spa_nacl.py): libsodium's Python bindings, AES-GCM from cryptography
  python3 python3-nacl python3-cryptography
  # the fwknop oracle (tests/oracle/fwknop_client.sh): Debian's real fwknop client, and faketime for its clock
  fwknop-client faketime
  # ssh through a closed door (tests/e2e/netns_ssh_proxy.sh): Debian's sshd and ssh
  openssh-server openssh-client
  # the Debian package (tests/e2e/deb_package.sh): build it, lint it, check its unit
  # (systemd-analyze; man-db for the unit's Documentation=man: pages)
  debhelper dpkg-dev lintian systemd man-db
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install packages" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
