#!/usr/bin/env python3
"""Independent COSE check for agora (ARCHITECTURE section 3: signed evidence
must verify with an independent COSE implementation). Driven by
tests/cose_interop.rs and agora-cpo's tests/evidence_interop.rs; uses pycose
(RFC 9052/9053).

Modes (all keys and messages are files; keys as hex):
  verify-sign1 <cose_sign1> <ed25519_pub_hex>
      exit 0 if pycose verifies the COSE_Sign1 (EdDSA, kid = SHA-256(pub)), 1 if not
  verify-sign1-payload <cose_sign1> <ed25519_pub_hex> <out>
      as verify-sign1, and if it verifies, write the payload pycose read to <out>
  verify-mac0 <cose_mac0> <hmac_key_hex>
      exit 0 if pycose verifies the COSE_Mac0 (HMAC 256/256), 1 if not
  make-sign1 <ed25519_seed_hex> <ed25519_pub_hex> <payload> <out>
      write a COSE_Sign1 made by pycose: EdDSA, kid = SHA-256(pub) protected
Exit 2 on usage or environment errors.
"""
import hashlib
import sys

try:
    from pycose.algorithms import EdDSA, HMAC256
    from pycose.headers import KID, Algorithm
    from pycose.keys import OKPKey, SymmetricKey
    from pycose.keys.curves import Ed25519
    from pycose.messages import Mac0Message, Sign1Message
except ImportError as e:  # the Rust test turns this into a clear failure
    print(f"pycose is not installed: {e}", file=sys.stderr)
    sys.exit(3)


def decode_compat(cls, data, cbor_tag):
    """cls.decode(data), also under cbor2 >= 6, which returns tuples and
    frozendicts where pycose 1.x expects lists and dicts (pycose then refuses
    every message)."""
    try:
        return cls.decode(data)
    except TypeError:
        import cbor2

        obj = cbor2.loads(data)
        if getattr(obj, "tag", None) != cbor_tag or not isinstance(obj.value, (list, tuple)):
            raise
        items = list(obj.value)
        if len(items) > 1 and hasattr(items[1], "items"):
            items[1] = dict(items[1])
        return cls.from_cose_obj(items, True)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def read_hex(path):
    return bytes.fromhex(read(path).decode().strip())


def verify_sign1(cose_path, pub_path):
    return check_sign1(cose_path, pub_path)[0]


def verify_sign1_payload(cose_path, pub_path, out_path):
    code, payload = check_sign1(cose_path, pub_path)
    if code == 0:
        with open(out_path, "wb") as f:
            f.write(payload)
    return code


def check_sign1(cose_path, pub_path):
    """(exit code, payload): (0, payload) if pycose verifies, (1, None) if not."""
    pub = read_hex(pub_path)
    try:
        msg = decode_compat(Sign1Message, read(cose_path), 18)
        if msg.phdr.get(Algorithm) is not EdDSA and msg.phdr.get(Algorithm) != EdDSA:
            print("algorithm is not EdDSA")
            return 1, None
        if msg.phdr.get(KID) != hashlib.sha256(pub).digest():
            print("kid is not SHA-256 of the public key")
            return 1, None
        if msg.uhdr:
            print("unprotected header is not empty")
            return 1, None
        msg.key = OKPKey(crv=Ed25519, x=pub)
        ok = msg.verify_signature()
    except Exception as e:  # malformed input is a rejection, not a crash
        print(f"rejected: {type(e).__name__}: {e}")
        return 1, None
    print("valid" if ok else "bad signature")
    return (0, msg.payload) if ok else (1, None)


def verify_mac0(cose_path, key_path):
    key = read_hex(key_path)
    try:
        msg = decode_compat(Mac0Message, read(cose_path), 17)
        if msg.phdr.get(Algorithm) is not HMAC256 and msg.phdr.get(Algorithm) != HMAC256:
            print("algorithm is not HMAC 256/256")
            return 1
        msg.key = SymmetricKey(k=key)
        ok = msg.verify_tag()
    except Exception as e:
        print(f"rejected: {type(e).__name__}: {e}")
        return 1
    print("valid" if ok else "bad tag")
    return 0 if ok else 1


def make_sign1(seed_path, pub_path, payload_path, out_path):
    seed = read_hex(seed_path)
    pub = read_hex(pub_path)
    msg = Sign1Message(
        phdr={Algorithm: EdDSA, KID: hashlib.sha256(pub).digest()},
        payload=read(payload_path),
    )
    msg.key = OKPKey(crv=Ed25519, d=seed, x=pub)
    with open(out_path, "wb") as f:
        f.write(msg.encode(tag=True))
    return 0


def main(argv):
    modes = {
        "verify-sign1": (verify_sign1, 2),
        "verify-sign1-payload": (verify_sign1_payload, 3),
        "verify-mac0": (verify_mac0, 2),
        "make-sign1": (make_sign1, 4),
    }
    if len(argv) < 2 or argv[1] not in modes or len(argv) - 2 != modes[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    fn, _ = modes[argv[1]]
    return fn(*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
