#!/usr/bin/env bash
# The SPA message against an oracle no one here wrote: tests/oracle/spa_nacl.py builds messages
# from doc/PROTOCOL.md section 6 with libsodium's Python bindings (python3-nacl; AES-256-GCM from
# python3-cryptography) and checks knockclient -test and the verifier (the spa_verify tool)
# both ways, Argon2id passphrase keys included. Debian's /usr/bin/python3 on purpose: the
# packages are Debian's, whatever python3 comes first on PATH.
set -euo pipefail
SOURCE_DIR=${SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN_DIR=${BIN_DIR:?BIN_DIR must name the build directory holding knockclient and spa_verify}
PY=/usr/bin/python3
for f in knockclient spa_verify; do
  [ -x "$BIN_DIR/$f" ] || { echo "FAIL: $BIN_DIR/$f not built"; exit 1; }
done
"$PY" -c 'import nacl.bindings, nacl.pwhash' || { echo "FAIL: python3-nacl missing (scripts/install-deps.sh)"; exit 1; }
exec "$PY" "$SOURCE_DIR/tests/oracle/spa_nacl.py" "$BIN_DIR"
