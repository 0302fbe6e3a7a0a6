#!/usr/bin/env bash
# The bash completions (packaging/completion/*): each file is sourced as bash-completion would,
# its function is called with COMP_WORDS/COMP_CWORD as bash sets them, and COMPREPLY is checked:
# option names (one dash and two), the values of options with a fixed set (-proto, -spaform,
# -encrypt, ...), files for -conf/-keyfile/-pcap/-socket (also --conf=FILE), host names for
# -remote/-proxy, nothing for -proxy HOST's PORT, knockctl's verbs once and "all" after close.
# Every option offered for knockclient and knockdaemon is one the program accepts (the programs
# are the oracle: no "unknown option").
source "$(dirname "$0")/common.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
COMP=$SOURCE_DIR/packaging/completion
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
touch "$tmp/alpha.conf" "$tmp/alpine.key" "$tmp/beta"

for f in knockclient knockdaemon knockctl; do
  [ -f "$COMP/$f" ] || fail "no completion file $COMP/$f"
  bash -n "$COMP/$f" || fail "$f: syntax error"
  # shellcheck disable=SC1090
  source "$COMP/$f"
  [[ $(complete -p "$f" 2>/dev/null) == "complete -F _$f $f" ]] || fail "$f: no 'complete -F _$f $f'"
done

# complete LINE: COMPREPLY for the command line LINE (the cursor at its end; a trailing space
# starts an empty word), sorted, one a line. Words split as bash does, '=' a word of its own.
complete_line() {
  local line=$1
  read -r -a COMP_WORDS <<<"${line//=/ = }"
  [[ $line == *" " || $line == *"=" ]] && COMP_WORDS+=("")
  [[ $line == *"=" ]] && COMP_WORDS[-1]="="
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE=$line COMP_POINT=${#line}
  COMPREPLY=()
  "_${COMP_WORDS[0]}" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]:-}"
  printf '%s\n' "${COMPREPLY[@]}" | sort
}
# expect LINE WORD...: the completions of LINE are exactly WORD... (none when no WORD).
expect() {
  local line=$1; shift
  local got want
  got=$(complete_line "$line" | sed '/^$/d')
  want=$(printf '%s\n' "$@" | sed '/^$/d' | sort)
  [ "$got" = "$want" ] || fail "completing '$line': got [$(tr '\n' ' ' <<<"$got")], expected [$(tr '\n' ' ' <<<"$want")]"
}
# has LINE WORD...: the completions of LINE include each WORD.
has() {
  local line=$1 w got; shift
  got=$(complete_line "$line")
  for w in "$@"; do grep -qxF -- "$w" <<<"$got" || fail "completing '$line': '$w' missing from [$(tr '\n' ' ' <<<"$got")]"; done
}

say "-- knockclient"
expect "knockclient -pro" -proto -proxy
expect "knockclient --wa" --wait --waittime
expect "knockclient -spaf" -spaform
expect "knockclient -proto " spa tcp udp
expect "knockclient --proto=u" udp
expect "knockclient -spaform udp" udp udpports
expect "knockclient -encrypt y" yes
expect "knockclient -spacipher " aes256gcm xchacha20poly1305
expect "knockclient -cipher R" Rijndael
expect "knockclient -conf $tmp/al" "$tmp/alpha.conf" "$tmp/alpine.key"
expect "knockclient --conf=$tmp/b" "$tmp/beta"
expect "knockclient -keyfile $tmp/alpi" "$tmp/alpine.key"
expect "knockclient -keygen $tmp/be" "$tmp/beta"
expect "knockclient -port "
expect "knockclient -proxy localhost "
expect "knockclient -waittime "
has "knockclient -remote localh" localhost
has "knockclient -proxy localh" localhost
has "knockclient -" -remote -proxy -wait -waittime -keyfile -proto -man
expect "knockclient -remote localhost x"

say "-- knockdaemon"
expect "knockdaemon -ch" -check
expect "knockdaemon --d" --debug --dumpconfig
expect "knockdaemon -pcap $tmp/be" "$tmp/beta"
expect "knockdaemon -conf $tmp/alp" "$tmp/alpha.conf" "$tmp/alpine.key"
expect "knockdaemon -check "

say "-- knockctl"
expect "knockctl " close list metrics reload status
expect "knockctl l" list
expect "knockctl -" -json -socket -timeout
expect "knockctl metrics -" -json -socket -textfile -timeout
expect "knockctl --j" --json
expect "knockctl -json " close list metrics reload status
expect "knockctl -socket $tmp/be" "$tmp/beta"
expect "knockctl -socket $tmp/beta " close list metrics reload status
expect "knockctl close " all
expect "knockctl -json close a" all
expect "knockctl status "
expect "knockctl close all "
expect "knockctl list -" -json -socket -timeout

say "-- every option offered is one the program accepts"
for prog in knockclient knockdaemon; do
  for opt in $(complete_line "$prog -"); do
    # -conf to a missing file first: nothing is read, sent or started.
    out=$("$BIN/$prog" -conf "$tmp/none.conf" "$opt" </dev/null 2>&1 >/dev/null) || true
    ! grep -q "unknown option" <<<"$out" || fail "$prog offers $opt, which it does not know: $out"
  done
done
say "PASS: bash completions of knockclient, knockdaemon and knockctl"
