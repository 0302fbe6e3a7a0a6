#!/usr/bin/env bash
# Compares `knockdaemon -dumpconfig` with Perl's Config::General (default options) as the oracle.
#  - every tests/data/config/good/*.conf: stdout must equal tests/oracle/dump_config.pl byte for byte;
#  - every tests/data/config/bad/*.conf: knockdaemon must exit 2 with stderr starting
#    "FILE:LINE:" (LINE from the file's "# expect-line: N" comment). Config::General must fail too,
#    except on the files whose comment says why we are stricter: it accepts a mismatched end tag,
#    silently drops an unterminated here-document or a continued last line (or one that is just
#    "0"), skips an include loop with a warning, nests blocks without limit, ignores a here-document
#    whose key is 0 and, after a byte-order mark, takes Unicode white space for blanks.
# Both run from the file's directory on its absolute path: Config::General looks for <<include>>
# files in the current directory (then in the main file's directory); we look next to the
# including file (a deliberate difference, checked at the end). For files under good/ that
# include inc/*.inc the two agree.
set -euo pipefail

SOURCE_DIR=${SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DATA_DIR=${DATA_DIR:-$SOURCE_DIR/tests/data}
BIN_DIR=${BIN_DIR:?BIN_DIR must name the build directory holding knockdaemon}
DAEMON=$BIN_DIR/knockdaemon
ORACLE=$SOURCE_DIR/tests/oracle/dump_config.pl
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[ -x "$DAEMON" ] || { echo "FAIL: $DAEMON not built"; exit 1; }
perl -MConfig::General -MJSON::PP -e 1 || { echo "FAIL: Perl Config::General or JSON::PP missing"; exit 1; }

# Files where Config::General does not fail but we do (see the comment in each file).
STRICTER=" mismatched-end-tag.conf unterminated-heredoc.conf continued-at-eof.conf include-loop.conf too-deep.conf heredoc-key-zero.conf continued-zero.conf bom-unicode-space.conf "

failures=0
good=0
for f in "$DATA_DIR"/config/good/*.conf; do
  f=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
  dir=$(dirname "$f")
  if ! (cd "$dir" && perl "$ORACLE" "$f") >"$TMP/want" 2>"$TMP/perl.err"; then
    echo "FAIL: Config::General rejects good file $f: $(head -c 300 "$TMP/perl.err")"
    failures=$((failures + 1)); continue
  fi
  rc=0
  (cd "$dir" && "$DAEMON" -dumpconfig -conf "$f") >"$TMP/got" 2>"$TMP/err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "FAIL: knockdaemon -dumpconfig exits $rc on $f: $(head -c 300 "$TMP/err")"
    failures=$((failures + 1)); continue
  fi
  if ! cmp -s "$TMP/want" "$TMP/got"; then
    echo "FAIL: -dumpconfig differs from Config::General on $f (< perl, > knockdaemon):"
    diff "$TMP/want" "$TMP/got" | head -40 || true
    failures=$((failures + 1)); continue
  fi
  good=$((good + 1))
done

bad=0
for f in "$DATA_DIR"/config/bad/*.conf; do
  f=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
  dir=$(dirname "$f")
  name=$(basename "$f")
  line=$(sed -n '1s/^\xEF\xBB\xBF//; 1s/^# expect-line: \([0-9][0-9]*\).*/\1/p' "$f")
  if [ -z "$line" ]; then
    echo "FAIL: $f has no '# expect-line: N' first line"; failures=$((failures + 1)); continue
  fi
  if (cd "$dir" && perl "$ORACLE" "$f") >/dev/null 2>&1; then
    if [[ "$STRICTER" != *" $name "* ]]; then
      echo "FAIL: Config::General accepts bad file $f (not listed as a stricter case)"
      failures=$((failures + 1)); continue
    fi
  elif [[ "$STRICTER" == *" $name "* ]]; then
    echo "FAIL: Config::General now rejects $f: remove it from STRICTER"
    failures=$((failures + 1)); continue
  fi
  rc=0
  (cd "$dir" && "$DAEMON" -dumpconfig -conf "$f") >/dev/null 2>"$TMP/err" || rc=$?
  if [ "$rc" -ne 2 ]; then
    echo "FAIL: knockdaemon -dumpconfig exits $rc (want 2) on $f: $(head -c 300 "$TMP/err")"
    failures=$((failures + 1)); continue
  fi
  if ! grep -q "^$(printf '%s' "$f" | sed 's/[][\.*^$/]/\\&/g'):$line:" "$TMP/err"; then
    echo "FAIL: stderr for $f does not start with $f:$line: : $(head -c 300 "$TMP/err")"
    failures=$((failures + 1)); continue
  fi
  bad=$((bad + 1))
done

# Deliberate difference (doc/RULES.md): a relative <<include>> is read next to the including file
# here; Config::General looks in the current directory first, then in the main file's directory,
# at every depth. Checked both ways so that a change on either side shows.
mkdir -p "$TMP/inc/conf/sub" "$TMP/inc/cwd/sub"
printf '<<include sub/a.inc>>\n' >"$TMP/inc/conf/main.conf"
printf 'from = conf/sub\n<<include b.inc>>\n' >"$TMP/inc/conf/sub/a.inc"
printf 'nested = conf/sub\n' >"$TMP/inc/conf/sub/b.inc"
printf 'nested = conf\n' >"$TMP/inc/conf/b.inc"
printf 'from = cwd/sub\n<<include b.inc>>\n' >"$TMP/inc/cwd/sub/a.inc"
printf 'nested = cwd\n' >"$TMP/inc/cwd/b.inc"
want_perl='{"from":"cwd/sub","nested":"cwd"}'
want_ours='{"from":"conf/sub","nested":"conf/sub"}'
got_perl=$(cd "$TMP/inc/cwd" && perl "$ORACLE" "$TMP/inc/conf/main.conf" | perl -MJSON::PP -0777 -ne 'print JSON::PP->new->canonical->encode(decode_json($_))') || true
got_ours=$(cd "$TMP/inc/cwd" && "$DAEMON" -dumpconfig -conf "$TMP/inc/conf/main.conf" | perl -MJSON::PP -0777 -ne 'print JSON::PP->new->canonical->encode(decode_json($_))') || true
if [ "$got_perl" != "$want_perl" ]; then
  echo "FAIL: Config::General's relative includes: $got_perl, documented $want_perl"; failures=$((failures + 1))
fi
if [ "$got_ours" != "$want_ours" ]; then
  echo "FAIL: our relative includes: $got_ours, documented $want_ours"; failures=$((failures + 1))
fi
# Without the current directory's copies Config::General falls back to the main file's directory.
rm "$TMP/inc/cwd/sub/a.inc" "$TMP/inc/cwd/b.inc"
got_perl=$(cd "$TMP/inc/cwd" && perl "$ORACLE" "$TMP/inc/conf/main.conf" | perl -MJSON::PP -0777 -ne 'print JSON::PP->new->canonical->encode(decode_json($_))') || true
if [ "$got_perl" != '{"from":"conf/sub","nested":"conf"}' ]; then
  echo "FAIL: Config::General's include fallback: $got_perl"; failures=$((failures + 1))
fi

# The shipped configs must read the same under both rules: no relative include.
for f in "$SOURCE_DIR"/etc/*.conf; do
  if grep -Eiq '^[[:space:]]*<<include[[:space:]]+["'"'"']?[^/"'"'"'[:space:]]' "$f"; then
    echo "FAIL: $f has a relative <<include>>: make it absolute"; failures=$((failures + 1))
  fi
done

if [ "$failures" -ne 0 ]; then
  echo "FAIL: $failures config file(s) disagree with the oracle"
  exit 1
fi
[ "$good" -gt 0 ] && [ "$bad" -gt 0 ] || { echo "FAIL: empty corpus"; exit 1; }
echo "ok: $good good configs identical to Config::General, $bad bad configs rejected with FILE:LINE"
