#!/usr/bin/python3
"""An oracle for the SPA message written from doc/PROTOCOL.md section 6 alone, on libsodium's
Python bindings (python3-nacl) and, for AES-256-GCM, python3-cryptography.

  spa_nacl.py BIN_DIR         check knockclient -test and the spa_verify tool both ways
  spa_nacl.py --examples      print the worked examples of PROTOCOL.md section 6

Run with Debian's /usr/bin/python3 (the packages above are Debian's).
"""
import base64
import ipaddress
import os
import random
import subprocess
import sys
import tempfile

import nacl.bindings as B
import nacl.encoding
import nacl.hash
import nacl.pwhash

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # AES-256-GCM cases are skipped (reported)
    AESGCM = None

MAGIC = {"xchacha20poly1305": 0xA1, "aes256gcm": 0xA2}
NONCE_BYTES = {"xchacha20poly1305": 24, "aes256gcm": 12}
WIDTH = {"IP": 4, "CLIENT": 4, "IP6": 16, "PORT": 2, "CHECKSUM": 1, **{"FLAG%d" % i: 1 for i in range(10)}}
KEY_ID_CONTEXT = b"portknock spa key id v1"
ARGON2_OPS = 3
ARGON2_MEM = 64 * 1024 * 1024


def pack(fmt, values):
    """The `knock =` fields, big-endian, CHECKSUM = sum of the bytes before it mod 256."""
    out = bytearray()
    for f in fmt.split(","):
        f = f.strip()
        if f == "CHECKSUM":
            out.append(sum(out) % 256)
        else:
            v = values["IP" if f == "CLIENT" else f]
            out += v.to_bytes(WIDTH[f], "big")
    return bytes(out)


def key_id(key):
    return nacl.hash.blake2b(KEY_ID_CONTEXT, digest_size=32, key=key, encoder=nacl.encoding.RawEncoder)[:4]


def passphrase_key(passphrase, salt):
    return nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit=ARGON2_OPS, memlimit=ARGON2_MEM)


def aead_encrypt(cipher, key, nonce, ad, plain):
    if cipher == "xchacha20poly1305":
        return B.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, ad, nonce, key)
    return AESGCM(key).encrypt(nonce, plain, ad)


def aead_decrypt(cipher, key, nonce, ad, ct):
    if cipher == "xchacha20poly1305":
        return B.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, ad, nonce, key)
    return AESGCM(key).decrypt(nonce, ct, ad)


def seal(cipher, key, fmt, values, send_time, nonce, magic=None, kid=None):
    header = bytes([MAGIC[cipher] if magic is None else magic]) + (kid or key_id(key)) + \
        send_time.to_bytes(8, "big") + nonce
    return header + aead_encrypt(cipher, key, nonce, header, pack(fmt, values))


def open_message(cipher, key, fmt, message):
    """Our own reading of a message (for knockclient's output): the fields, or an exception."""
    head = 13 + NONCE_BYTES[cipher]
    assert message[0] == MAGIC[cipher] and message[1:5] == key_id(key)
    plain = aead_decrypt(cipher, key, message[13:head], message[:head], message[head:])
    assert plain == pack(fmt, unpack(fmt, plain))
    return unpack(fmt, plain), int.from_bytes(message[5:13], "big")


def unpack(fmt, plain):
    values, pos = {}, 0
    for f in fmt.split(","):
        f = f.strip()
        values["IP" if f == "CLIENT" else f] = int.from_bytes(plain[pos:pos + WIDTH[f]], "big")
        pos += WIDTH[f]
    values.pop("CHECKSUM", None)
    return values


def expand_span(text):
    ports = []
    for item in text.split(","):
        a, _, b = item.partition("-")
        ports += list(range(int(a), int(b or a) + 1))
    return ports


def to_ports(span_text, data):
    ports = expand_span(span_text)
    n = len(ports).bit_length() - 1
    bits = "".join(format(b, "08b") for b in data)
    bits += "0" * (-len(bits) % n)
    return [ports[int(bits[i:i + n], 2)] for i in range(0, len(bits), n)]


def ip_text(v):
    return ".".join(str((v >> s) & 255) for s in (24, 16, 8, 0))


def ip6_text(v):
    return str(ipaddress.IPv6Address(v))


def b64(b):
    return base64.b64encode(b).decode()


# ---- worked examples (PROTOCOL.md section 6.9) ------------------------------------------------
EX_KEY = bytes(range(32))
EX_TIME = 1700000000
EX_VALUES = {"IP": 0xC6120002, "PORT": 22, "FLAG0": 1}  # 198.18.0.2
EX_FMT = "IP,PORT,FLAG0,CHECKSUM"
EX_VALUES6 = {"IP6": 0x20010DB8000000000000000000000002, "PORT": 22, "FLAG0": 1}  # 2001:db8::2
EX_FMT6 = "IP6,PORT,FLAG0,CHECKSUM"
EX_NONCE24 = bytes(range(0x40, 0x58))
EX_NONCE12 = bytes(range(0x40, 0x4C))
EX_PASS = b"correct horse battery staple"
EX_SALT = bytes(range(0xF0, 0x100))
EX_SPAN = "1024-5000,6000-25000,26000-35789"


def examples():
    out = []
    out.append(("key", EX_KEY.hex(), b64(EX_KEY)))
    out.append(("key id", key_id(EX_KEY).hex()))
    out.append(("plain", pack(EX_FMT, EX_VALUES).hex()))
    a = seal("xchacha20poly1305", EX_KEY, EX_FMT, EX_VALUES, EX_TIME, EX_NONCE24)
    out.append(("a xchacha", a.hex()))
    if AESGCM:
        out.append(("b aesgcm", seal("aes256gcm", EX_KEY, EX_FMT, EX_VALUES, EX_TIME, EX_NONCE12).hex()))
    pk = passphrase_key(EX_PASS, EX_SALT)
    out.append(("c salt", b64(EX_SALT)))
    out.append(("c argon2id key", pk.hex(), "id", key_id(pk).hex()))
    out.append(("c message", seal("xchacha20poly1305", pk, "PORT,CHECKSUM", {"PORT": 443}, EX_TIME, EX_NONCE24).hex()))
    out.append(("d ports", ",".join(map(str, to_ports(EX_SPAN, a)))))
    out.append(("e plain", pack(EX_FMT6, EX_VALUES6).hex()))
    out.append(("e xchacha ip6", seal("xchacha20poly1305", EX_KEY, EX_FMT6, EX_VALUES6, EX_TIME, EX_NONCE24).hex()))
    return out


# ---- the checks ---------------------------------------------------------------------------------
class Oracle:
    def __init__(self, bin_dir):
        self.client = os.path.join(bin_dir, "knockclient")
        self.tool = os.path.join(bin_dir, "spa_verify")
        self.tmp = tempfile.mkdtemp(prefix="spa_nacl.")
        self.failures = 0
        self.checks = 0
        self.rng = random.Random(12)

    def fail(self, what):
        self.failures += 1
        print("FAIL:", what)

    def check(self, cond, what):
        self.checks += 1
        if not cond:
            self.fail(what)

    def write(self, name, text, mode=0o600):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def knockclient(self, conf_text, *args):
        conf = self.write("client.conf", conf_text)
        env = dict(os.environ, HOME=self.tmp)
        r = subprocess.run([self.client, "-conf", conf, "-test", *args], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            self.fail("knockclient %s exits %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
            return None
        return r.stdout.splitlines()

    def random_values(self, fmt):
        v = {"IP": 0xC6120000 | self.rng.randrange(1 << 17), "PORT": self.rng.randrange(65536),
             "IP6": (0x20010DB8 << 96) | self.rng.randrange(1, 1 << 96)}
        for i in range(10):
            v["FLAG%d" % i] = self.rng.randrange(256)
        return {k: val for k, val in v.items() if k in fmt.replace("CLIENT", "IP").split(",")}

    def values_args(self, values):
        args = []
        if "IP" in values:
            args += ["-client", ip_text(values["IP"])]
        if "IP6" in values:
            args += ["-client", ip6_text(values["IP6"])]
        for k, val in values.items():
            if k not in ("IP", "IP6"):
                args += ["-" + k.lower(), str(val)]
        return args

    # 1. knockclient's messages are the layout of the spec, byte for byte.
    def client_agrees(self):
        formats = ["IP,PORT,FLAG0,CHECKSUM", "PORT", "CLIENT,PORT,FLAG0,FLAG1,FLAG2,FLAG3,FLAG4,FLAG5,FLAG6,FLAG7,FLAG8,FLAG9,CHECKSUM",
                   "FLAG3,PORT,CHECKSUM,IP", "IP6,PORT,FLAG0,CHECKSUM", "PORT,IP6,FLAG9,CHECKSUM"]
        spans = ["1000-1255", "1000-1031", "2000-2127,3000-3127", EX_SPAN, "40000-40001"]
        ciphers = ["xchacha20poly1305"] + (["aes256gcm"] if AESGCM else [])
        n = 0
        for i in range(24):
            cipher = ciphers[i % len(ciphers)]
            fmt = formats[i % len(formats)]
            values = self.random_values(fmt)
            key = os.urandom(32)
            t = self.rng.randrange(1 << 40)
            nonce = os.urandom(NONCE_BYTES[cipher])
            span = spans[i % len(spans)]
            form = ["udp", "ports", "udpports"][i % 3]
            conf = "proto = spa\nknock = %s\nspacipher = %s\nspaform = %s\nportspan = %s\n" % (fmt, cipher, form, span)
            if i % 2:
                conf += "keyfile = %s\n" % self.write("k%d.key" % i, b64(key) + "\n")
            else:
                conf += "key = %s\n" % b64(key)
            lines = self.knockclient(conf, "-spatime", str(t), "-spanonce", nonce.hex(), *self.values_args(values))
            if lines is None:
                continue
            want = seal(cipher, key, fmt, values, t, nonce)
            self.check(lines[0] == want.hex(), "knockclient %s %s: %s, spec says %s" % (cipher, fmt, lines[0], want.hex()))
            if form != "udp":
                self.check(len(lines) == 2 and lines[1] == ",".join(map(str, to_ports(span, want))),
                           "knockclient port form over %s differs" % span)
            else:
                self.check(len(lines) == 1, "knockclient printed ports for the udp form")
            n += 1
        # A random nonce and the clock: we can still open it and find the values and the time.
        key = os.urandom(32)
        values = {"PORT": 8443}
        import time
        before = int(time.time())
        lines = self.knockclient("proto = spa\nknock = PORT,CHECKSUM\nkey = %s\n" % b64(key), "-port", "8443")
        after = int(time.time())
        if lines:
            got, t = open_message("xchacha20poly1305", key, "PORT,CHECKSUM", bytes.fromhex(lines[0]))
            self.check(got == values and before <= t <= after, "knockclient's live message opens to %s at %d" % (got, t))
            lines2 = self.knockclient("proto = spa\nknock = PORT,CHECKSUM\nkey = %s\n" % b64(key), "-port", "8443")
            self.check(lines2 and lines2[0][26:74] != lines[0][26:74], "two messages share a nonce")
        print("ok: %d knockclient messages identical to the spec's layout (+ a live one opened)" % n)

    # 2. Argon2id passphrase keys agree.
    def passphrase_agrees(self):
        for pw in [EX_PASS, "pässwörd with spaces and = signs".encode()]:
            salt = os.urandom(16)
            key = passphrase_key(pw, salt)
            nonce = os.urandom(24)
            conf = "proto = spa\nknock = PORT,FLAG0,CHECKSUM\npassphrase = %s\nsalt = %s\n" % (pw.decode(), b64(salt))
            lines = self.knockclient(conf, "-port", "22", "-flag0", "7", "-spatime", "1700000000", "-spanonce", nonce.hex())
            want = seal("xchacha20poly1305", key, "PORT,FLAG0,CHECKSUM", {"PORT": 22, "FLAG0": 7}, 1700000000, nonce)
            self.check(lines and lines[0] == want.hex(), "Argon2id passphrase key: knockclient disagrees")
        print("ok: Argon2id (t=3, m=64 MiB) passphrase keys agree")

    # 3. The verifier accepts what the spec builds and refuses every tampering.
    def verifier_agrees(self, cipher):
        now = 1700000000
        window = 60
        fmt = "IP,PORT,FLAG0,CHECKSUM"
        clients = {"alice": os.urandom(32), "bob": os.urandom(32), "carol": None}
        salt = os.urandom(16)
        clients["carol"] = passphrase_key(b"carol's passphrase", salt)
        conf = "knock = %s\nspacipher = %s\nspawindow = %d\nportspan = %s\n" % (fmt, cipher, window, EX_SPAN)
        conf += "<client alice>\n  key = %s\n</client>\n" % b64(clients["alice"])
        conf += "<client bob>\n  keyfile = %s\n</client>\n" % self.write("bob.key", b64(clients["bob"]) + "\n")
        conf += "<client carol>\n  passphrase = carol's passphrase\n  salt = %s\n</client>\n" % b64(salt)
        confpath = self.write("daemon.conf", conf)
        cases = []  # (input line, expected output prefix)
        nb = NONCE_BYTES[cipher]
        accepted = []
        for i in range(60):
            name = ["alice", "bob", "carol"][i % 3]
            values = self.random_values(fmt)
            t = now + self.rng.randint(-window, window)
            m = seal(cipher, clients[name], fmt, values, t, os.urandom(nb))
            fields = " ".join("%s=%d" % (f, values[f]) for f in ["IP", "PORT", "FLAG0"])
            want = "ok %s %d %s CHECKSUM=%d" % (name, t - now, fields, pack(fmt, values)[-1])
            cases.append((m.hex(), want))
            accepted.append((m, name))
        # The port form of one, then the same message again as a datagram: a replay.
        m, name = accepted[0]
        cases.append(("P " + ",".join(map(str, to_ports(EX_SPAN, m))), "replay %s" % name))
        m, name = accepted[1]
        cases.append((m.hex(), "replay %s" % name))
        # A fresh one over the port form.
        values = self.random_values(fmt)
        m = seal(cipher, clients["bob"], fmt, values, now, os.urandom(nb))
        cases.append(("P " + ",".join(map(str, to_ports(EX_SPAN, m))), "ok bob 0"))
        # Every bit of a message flipped, one at a time.
        m = seal(cipher, clients["alice"], fmt, self.random_values(fmt), now, os.urandom(nb))
        ids = {key_id(k) for k in clients.values()}
        for bit in range(8 * len(m)):
            b = bytearray(m)
            b[bit // 8] ^= 1 << (bit % 8)
            want = "tag alice" if bit // 8 not in range(1, 5) else ("tag" if bytes(b[1:5]) in ids else "unknownkey -")
            cases.append((b.hex(), want))
        # Truncated, padded, empty.
        cases += [(m[:-1].hex(), "size -"), ((m + b"\0").hex(), "size -"), ("", "size -"), (m[:13].hex(), "size -")]
        # An unknown key; a wrong key that claims alice's id.
        stranger = os.urandom(32)
        cases.append((seal(cipher, stranger, fmt, self.random_values(fmt), now, os.urandom(nb)).hex(), "unknownkey -"))
        cases.append((seal(cipher, stranger, fmt, self.random_values(fmt), now, os.urandom(nb),
                           kid=key_id(clients["alice"])).hex(), "tag alice"))
        # The other cipher's magic (authentic): version.
        other = MAGIC["aes256gcm" if cipher == "xchacha20poly1305" else "xchacha20poly1305"]
        cases.append((seal(cipher, clients["bob"], fmt, self.random_values(fmt), now, os.urandom(nb), magic=other).hex(),
                      "version bob"))
        # Beyond the window, with the offset reported; at the edges, accepted.
        for off, want in [(-window - 1, "tooold"), (window + 1, "toonew"), (-window, "ok"), (window, "ok"),
                          (-10 ** 9, "tooold"), ((1 << 64) - 1 - now, "toonew")]:
            m2 = seal(cipher, clients["carol"], fmt, self.random_values(fmt), now + off, os.urandom(nb))
            shown = min(off, (1 << 63) - 1)
            cases.append((m2.hex(), "%s carol %d" % (want, shown)))
        # An authentic message whose CHECKSUM is wrong (a broken client).
        header = bytes([MAGIC[cipher]]) + key_id(clients["alice"]) + now.to_bytes(8, "big") + os.urandom(nb)
        bad = pack(fmt, self.random_values(fmt))
        bad = bad[:-1] + bytes([(bad[-1] + 1) % 256])
        cases.append(((header + aead_encrypt(cipher, clients["alice"], header[13:], header, bad)).hex(), "fields alice"))

        r = subprocess.run([self.tool, confpath, str(now)], input="".join(c[0] + "\n" for c in cases),
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.fail("spa_verify exits %d: %s" % (r.returncode, r.stderr.strip()))
            return
        got = r.stdout.splitlines()
        self.check(len(got) == len(cases), "spa_verify answered %d lines for %d" % (len(got), len(cases)))
        for (line, want), answer in zip(cases, got):
            self.check(answer.startswith(want), "%s: spa_verify says '%s', want '%s' for %s" % (cipher, answer, want, line[:40]))
        print("ok: %s: %d spec-built messages accepted (3 clients, keyfile/key/Argon2id), %d bit flips and %d other attacks refused"
              % (cipher, 61, 8 * len(m), len(cases) - 61 - 8 * len(m)))

    def run(self):
        self.client_agrees()
        self.passphrase_agrees()
        self.verifier_agrees("xchacha20poly1305")
        if AESGCM:
            self.verifier_agrees("aes256gcm")
        else:
            print("skip: AES-256-GCM (python3-cryptography missing)")
        # The documented examples are what this oracle computes.
        doc = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "doc", "PROTOCOL.md")).read()
        flat = "".join(doc.split())
        before = self.failures
        for ex in examples():
            for item in ex[1:]:
                self.check("".join(item.split()) in flat, "PROTOCOL.md lacks the example %s: %s" % (ex[0], item))
        if self.failures == before:
            print("ok: PROTOCOL.md's SPA examples match the oracle")
        if self.failures:
            print("FAIL: %d of %d checks" % (self.failures, self.checks))
            return 1
        print("ok: %d checks" % self.checks)
        return 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--examples":
        for ex in examples():
            print(ex[0] + ":", *ex[1:])
        sys.exit(0)
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(Oracle(sys.argv[1]).run())
