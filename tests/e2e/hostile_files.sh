#!/usr/bin/env bash
# Files another user could have planted or changed (issue 11): knockdaemon refuses, with exit 2
# and one line FILE:LINE, an <<include>>d file (or the folder holding it, or the main file's
# folder) that other users can write, a `key =` in a file every user can read, and a key file
# every user can read; knockclient refuses the readable key and key file too. In file mode, a
# log another user can write stops the daemon; a log folder others can write gets a warning.
source "$(dirname "$0")/common.bash"
D="$BIN_DIR/knockdaemon"; K="$BIN_DIR/knockclient"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export HOME="$tmp"; : >"$HOME/.knockclient.conf"; chmod 600 "$HOME/.knockclient.conf"

# refused WHAT CONF FILE:LINE PATTERN: -check exits 2 with one line starting FILE:LINE.
refused() {
  local what=$1 conf=$2 at=$3 want=$4 rc=0
  "$D" -check -conf "$conf" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" -eq 2 ] || fail "$what: -check exit $rc (want 2): $(cat "$tmp/err")"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$what: not one line: $(cat "$tmp/err")"
  [ ! -s "$tmp/out" ] || fail "$what: stdout: $(cat "$tmp/out")"
  grep -q "^$at: .*$want" "$tmp/err" || fail "$what: want '$at: ...$want', got: $(cat "$tmp/err")"
  say "ok: $what: $(cat "$tmp/err")"
}
accepted() {  # accepted WHAT CONF
  "$D" -check -conf "$2" >"$tmp/out" 2>"$tmp/err" || fail "$1: refused: $(cat "$tmp/err")"
}

mkdir -m 700 "$tmp/etc" "$tmp/etc/inc"
base() {  # base DIR: a main config whose line 3 includes inc/templates.conf
  cat >"$1/main.conf" <<CONF
runmode  = network
interface = lo
<<include inc/templates.conf>>
knock    = IP,PORT,FLAG0,CHECKSUM
portspan = 2000-2255
encrypt  = yes
cipher   = Blowfish
iv       = yes
keyfile  = $tmp/etc/key
CONF
  cat >"$1/inc/templates.conf" <<'CONF'
<actions>
  <action open>
    condition = PORT == 22
    template  = open
    use       = yes
  </action>
</actions>
<template open>
  system = "/bin/true IP"
</template>
CONF
  chmod 600 "$1/main.conf" "$1/inc/templates.conf"
}
base "$tmp/etc"
printf 'a-secret-key\n' >"$tmp/etc/key"; chmod 600 "$tmp/etc/key"
accepted "the base config" "$tmp/etc/main.conf"
chmod 640 "$tmp/etc/main.conf" "$tmp/etc/inc/templates.conf" "$tmp/etc/key"
accepted "files the group can read" "$tmp/etc/main.conf"

# 1. an include other users can write: they could add a `system` template run as root
chmod 666 "$tmp/etc/inc/templates.conf"
refused "a world-writable include" "$tmp/etc/main.conf" "$tmp/etc/main.conf:3" "templates.conf is writable by other users"
chmod 600 "$tmp/etc/inc/templates.conf"
# 2. the folder of an include: anyone could replace the file
chmod 777 "$tmp/etc/inc"
refused "an include in a world-writable folder" "$tmp/etc/main.conf" "$tmp/etc/main.conf:3" "folder $tmp/etc/inc .*writable by other users"
chmod 1777 "$tmp/etc/inc"
refused "an include in a sticky world-writable folder" "$tmp/etc/main.conf" "$tmp/etc/main.conf:3" "writable by other users"
chmod 700 "$tmp/etc/inc"
# 3. the main file's folder
mkdir -m 700 "$tmp/open"; mkdir -m 700 "$tmp/open/inc"; base "$tmp/open"; chmod 777 "$tmp/open"
refused "the main config in a world-writable folder" "$tmp/open/main.conf" "$tmp/open/main.conf" "folder $tmp/open .*writable by other users"
# 4. key = in a file every user can read (the main file, then an include)
sed -i "s|^keyfile .*|key      = a-secret-key|" "$tmp/etc/main.conf"; chmod 644 "$tmp/etc/main.conf"
refused "key = in a world-readable config" "$tmp/etc/main.conf" "$tmp/etc/main.conf:9" "every user can read"
chmod 600 "$tmp/etc/main.conf"
accepted "key = in a private config" "$tmp/etc/main.conf"
sed -i '/^key /d' "$tmp/etc/main.conf"; echo "key = a-secret-key" >>"$tmp/etc/inc/templates.conf"; chmod 644 "$tmp/etc/inc/templates.conf"
refused "key = in a world-readable include" "$tmp/etc/main.conf" "$tmp/etc/inc/templates.conf:11" "every user can read"
chmod 600 "$tmp/etc/inc/templates.conf"
accepted "key = in a private include" "$tmp/etc/main.conf"
sed -i '/^key /d' "$tmp/etc/inc/templates.conf"; echo "keyfile = $tmp/etc/key" >>"$tmp/etc/main.conf"
# 5. a key file every user can read
chmod 644 "$tmp/etc/key"
refused "a world-readable key file" "$tmp/etc/main.conf" "$tmp/etc/main.conf:9" "key file .* readable by every user"
chmod 600 "$tmp/etc/key"
accepted "the config restored" "$tmp/etc/main.conf"
# -dumpconfig only prints the tree (it runs nothing): it still reads such files.
chmod 666 "$tmp/etc/inc/templates.conf"
"$D" -dumpconfig -conf "$tmp/etc/main.conf" >/dev/null || fail "-dumpconfig refused a writable include"
chmod 600 "$tmp/etc/inc/templates.conf"

# knockclient: the same rule for the key, in its config and in a key file
printf 'knock = IP,PORT,FLAG0,CHECKSUM\nportspan = 2000-2255\nencrypt = yes\nkey = a-secret-key\n' >"$tmp/client.conf"
chmod 644 "$tmp/client.conf"
rc=0; "$K" -conf "$tmp/client.conf" -test -client 198.18.0.2 -port 22 2>"$tmp/err" >/dev/null || rc=$?
[ "$rc" -eq 2 ] && grep -q "$tmp/client.conf:4: .*every user can read" "$tmp/err" ||
  fail "knockclient: key = in a world-readable config: exit $rc: $(cat "$tmp/err")"
chmod 600 "$tmp/client.conf"
"$K" -conf "$tmp/client.conf" -test -client 198.18.0.2 -port 22 >/dev/null || fail "knockclient: private config refused"
chmod 644 "$tmp/etc/key"
rc=0; "$K" -keyfile "$tmp/etc/key" -knock IP,PORT -portspan 2000-2255 -encrypt yes -test -client 198.18.0.2 -port 22 \
  2>"$tmp/err" >/dev/null || rc=$?
[ "$rc" -eq 2 ] && grep -q "readable by every user" "$tmp/err" ||
  fail "knockclient: a world-readable -keyfile: exit $rc: $(cat "$tmp/err")"

# File mode: a log another user can write is refused at start (exit 1, the reason); a folder
# where others can create files gets a warning naming the risk.
mkdir -m 755 "$tmp/logs"; : >"$tmp/logs/fw.log"; chmod 666 "$tmp/logs/fw.log"
cat >"$tmp/file.conf" <<CONF
runmode      = file
logfile      = $tmp/logs/fw.log
uselogformat = iptables
<<include $SOURCE_DIR/etc/logformats.conf>>
knock    = IP,PORT,FLAG0,CHECKSUM
portspan = 2000-2255
encrypt  = yes
key      = a-secret-key
CONF
chmod 600 "$tmp/file.conf"
rc=0; timeout 10 "$D" -conf "$tmp/file.conf" -test >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "fw.log is writable by every user.*refusing to read it" "$tmp/err" ||
  fail "a world-writable log: exit $rc: $(cat "$tmp/err")"
say "ok: a world-writable log: $(grep refusing "$tmp/err")"
chmod 644 "$tmp/logs/fw.log"; chmod 1777 "$tmp/logs"
"$D" -conf "$tmp/file.conf" -test >/dev/null 2>"$tmp/err" & pid=$!
wait_for 10 "the daemon watches the log" grep -q "watching log file" "$tmp/err"
kill "$pid"; wait "$pid" || true
grep -q "users other than root can create files in $tmp/logs" "$tmp/err" || fail "no warning for a 1777 log folder: $(cat "$tmp/err")"
say "ok: a world-writable log folder: a warning"
say "PASS: writable includes and folders, readable keys and key files, writable logs refused"
