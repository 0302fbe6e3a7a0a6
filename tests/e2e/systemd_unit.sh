#!/usr/bin/env bash
# The shipped systemd unit (packaging/knockdaemon.service.in), rendered as CMake renders it but
# with ExecStart pointing at this build's knockdaemon: `systemd-analyze verify` says nothing
# (no unknown key, no missing program, its man page found), its
# `systemd-analyze security --offline=true` score is 2.0 or lower, and the directives the
# sandbox rests on are there: exactly the monitor's five capabilities, a system call allow list
# that refuses with EPERM, ProtectSystem=strict with only the state, runtime and xtables lock
# paths writable, NoNewPrivileges, the -check before start. Neither needs a running systemd.
#
# UNIT_TEMPLATE=FILE checks another template instead (the unit of an older commit:
#   git show HEAD~1:packaging/knockdaemon.service.in >/tmp/old.in
#   UNIT_TEMPLATE=/tmp/old.in BIN_DIR=build bash tests/e2e/systemd_unit.sh   -> FAIL).
source "$(dirname "$0")/common.bash"

MAX_SCORE=${MAX_SCORE:-2.0}
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing: run scripts/install-deps.sh"
[ -x "$BIN_DIR/knockdaemon" ] || fail "no knockdaemon in BIN_DIR=$BIN_DIR"
template=${UNIT_TEMPLATE:-$SOURCE_DIR/packaging/knockdaemon.service.in}
[ -r "$template" ] || fail "cannot read $template"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The build's own rendering (configure_file ... @ONLY) is this template with the install prefix.
built=$BIN_DIR/knockdaemon.service
if [ -z "${UNIT_TEMPLATE:-}" ] && [ -e "$built" ]; then
  sbindir=$(sed -n 's|^ExecStart=\(.*\)/knockdaemon .*|\1|p' "$built")
  sed "s|@CMAKE_INSTALL_FULL_SBINDIR@|$sbindir|g" "$template" | cmp -s - "$built" ||
    fail "$built is not packaging/knockdaemon.service.in rendered (reconfigure the build)"
fi
grep -q '@[A-Za-z_]*@' <(sed 's|@CMAKE_INSTALL_FULL_SBINDIR@||g' "$template") &&
  fail "the template has a placeholder CMake does not fill: $(grep -o '@[A-Za-z_]*@' "$template" | sort -u | tr '\n' ' ')"

# The unit as installed, its programs taken from this build (the verify checks they exist).
unit=$tmp/knockdaemon.service
bindir=$(cd "$BIN_DIR" && pwd)
sed "s|@CMAKE_INSTALL_FULL_SBINDIR@|$bindir|g" "$template" >"$unit"
# Documentation=man:knockdaemon(1) is looked up with man(1): the page of this tree.
mkdir -p "$tmp/man/man1"
cp "$SOURCE_DIR/doc/knockdaemon.1" "$tmp/man/man1/"

say "== systemd-analyze verify"
rc=0
MANPATH=$tmp/man systemd-analyze verify "$unit" >"$tmp/verify" 2>&1 || rc=$?
[ "$rc" = 0 ] && [ ! -s "$tmp/verify" ] || fail "systemd-analyze verify (exit $rc): $(cat "$tmp/verify")"
say "no complaints"

say "== systemd-analyze security --offline=true"
systemd-analyze security --offline=true --no-pager "$unit" >"$tmp/security" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for knockdaemon\.service: \([0-9]*\.[0-9]\).*/\1/p' "$tmp/security")
[ -n "$score" ] || fail "no score from systemd-analyze security: $(cat "$tmp/security")"
grep '^✗' "$tmp/security" || true
say "score: $score (at most $MAX_SCORE)"

# The directives, from the unit as systemd reads it: last assignment wins, except for the
# list-valued ones, which are gathered.
value() { sed -n "s/^$1=//p" "$unit" | tail -1; }
missing=()
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
[ "$caps" = "CAP_NET_ADMIN CAP_NET_RAW CAP_SETGID CAP_SETPCAP CAP_SETUID " ] ||
  missing+=("CapabilityBoundingSet= exactly CAP_NET_ADMIN CAP_NET_RAW CAP_SETUID CAP_SETGID CAP_SETPCAP (has: ${caps:-nothing})")
[ -z "$(value AmbientCapabilities)" ] || missing+=("no AmbientCapabilities= (root needs none)")
first_filter=$(sed -n 's/^SystemCallFilter=//p' "$unit" | head -1)
[ -n "$first_filter" ] && [ "${first_filter#\~}" = "$first_filter" ] ||
  missing+=("SystemCallFilter= as an allow list (first line without ~)")
[ "$(value SystemCallErrorNumber)" = EPERM ] || missing+=("SystemCallErrorNumber=EPERM")
[ "$(value SystemCallArchitectures)" = native ] || missing+=("SystemCallArchitectures=native")
[ "$(value ProtectSystem)" = strict ] || missing+=("ProtectSystem=strict")
[ "$(value NoNewPrivileges)" = yes ] || missing+=("NoNewPrivileges=yes")
[ "$(value StateDirectory)" = portknock ] && [ "$(value StateDirectoryMode)" = 0700 ] ||
  missing+=("StateDirectory=portknock with StateDirectoryMode=0700")
[ "$(value RuntimeDirectory)" = portknock ] && [ "$(value RuntimeDirectoryMode)" = 0755 ] ||
  missing+=("RuntimeDirectory=portknock with RuntimeDirectoryMode=0755")
rw=$(sed -n 's/^ReadWritePaths=//p' "$unit" | tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
[ "$rw" = "-/run/xtables.lock " ] || missing+=("ReadWritePaths=-/run/xtables.lock only (has: ${rw:-nothing})")
for d in PrivateTmp PrivateDevices PrivateMounts PrivateIPC ProtectKernelTunables ProtectKernelModules \
         ProtectKernelLogs ProtectControlGroups ProtectClock ProtectHostname RestrictNamespaces \
         RestrictRealtime RestrictSUIDSGID LockPersonality MemoryDenyWriteExecute ProtectHome; do
  [ "$(value $d)" = yes ] || missing+=("$d=yes")
done
[ "$(value ProtectProc)" = invisible ] || missing+=("ProtectProc=invisible")
[ "$(value ProcSubset)" = pid ] || missing+=("ProcSubset=pid")
[ "$(value DevicePolicy)" = closed ] || missing+=("DevicePolicy=closed")
[ "$(value UMask)" = 0077 ] || missing+=("UMask=0077")
grep -q "^ExecStartPre=$bindir/knockdaemon -check " "$unit" || missing+=("ExecStartPre=.../knockdaemon -check")
awk -v s="$score" -v m="$MAX_SCORE" 'BEGIN { exit !(s + 0 <= m + 0) }' ||
  missing+=("systemd-analyze security score $score is over $MAX_SCORE")
((${#missing[@]} == 0)) || fail "$(printf '%s; ' "${missing[@]}")"

# The drop-in for `realtime = N` (packaging/realtime.conf) is read and does what it says: verify
# stays silent, and the offline security check then counts RestrictRealtime= and CAP_SYS_NICE
# against the unit (it gives back nothing else).
say "== with packaging/realtime.conf as a drop-in"
mkdir -p "$tmp/knockdaemon.service.d"
cp "$SOURCE_DIR/packaging/realtime.conf" "$tmp/knockdaemon.service.d/"
rc=0
MANPATH=$tmp/man systemd-analyze verify "$unit" >"$tmp/verify" 2>&1 || rc=$?
[ "$rc" = 0 ] && [ ! -s "$tmp/verify" ] || fail "systemd-analyze verify with the drop-in (exit $rc): $(cat "$tmp/verify")"
systemd-analyze security --offline=true --no-pager "$unit" >"$tmp/security-rt" 2>&1 || true
grep '^✗' "$tmp/security-rt" | grep -q 'RestrictRealtime=' || fail "the drop-in was not read: $(grep '^✗' "$tmp/security-rt")"
grep '^✗' "$tmp/security-rt" | grep -q 'CAP_SYS_(NICE' || fail "CAP_SYS_NICE not given: $(grep '^✗' "$tmp/security-rt")"
extra=$(diff <(grep '^✗' "$tmp/security" | sed 's/ *[0-9.]*$//') <(grep '^✗' "$tmp/security-rt" | sed 's/ *[0-9.]*$//') |
  sed -n 's/^> //p' | grep -v 'RestrictRealtime=\|CAP_SYS_(NICE\|SystemCallFilter=' || true)
[ -z "$extra" ] || fail "the drop-in gives back more than it says: $extra"
say "score with it: $(sed -n 's/.*Overall exposure level for knockdaemon\.service: \([0-9]*\.[0-9]\).*/\1/p' "$tmp/security-rt")"
echo PASS
