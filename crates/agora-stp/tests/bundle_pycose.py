#!/usr/bin/env python3
"""Independent check of an STP proof bundle's signatures with pycose
(RFC 9052/9053), driven by tests/bundle.rs
(`every_signature_in_a_proof_bundle_verifies_with_pycose`).

Usage: bundle_pycose.py <items.json>

items.json: {"items": [{"what": str, "cose": hex COSE_Sign1,
                        "key": hex raw 32-byte Ed25519 public key}, ...]}
(every signed message of the bundle, and the CA's signed tree head).

For each item, pycose alone must:
  - decode it as a tagged COSE_Sign1 (CoseMessage.decode),
  - find alg EdDSA and kid = SHA-256(key) in the protected header and an
    empty unprotected header,
  - verify the signature under the key;
and must refuse a copy with one bit of its signature flipped, a copy with
one bit of its payload flipped, and the item under another item's key.

Exit 0 if every item passes, 1 if any fails, 2 on usage errors, 3 if
pycose or cbor2 is missing (the Rust test turns that into a failure).
"""
import hashlib
import json
import sys

try:
    import cbor2
    from pycose.algorithms import EdDSA
    from pycose.headers import KID, Algorithm
    from pycose.keys import OKPKey
    from pycose.keys.curves import Ed25519
    from pycose.messages import CoseMessage, Sign1Message
except ImportError as e:
    print(f"pycose is not installed: {e}", file=sys.stderr)
    sys.exit(3)

COSE_SIGN1_TAG = 18


def decode_sign1(data):
    """CoseMessage.decode(data) as a Sign1Message, also under cbor2 >= 6,
    which returns tuples and frozendicts where pycose 1.x expects lists and
    dicts (pycose then refuses every message); the same workaround as
    agora-core's tests/interop/cose_check.py."""
    try:
        msg = CoseMessage.decode(data)
    except TypeError:
        obj = cbor2.loads(data)
        if getattr(obj, "tag", None) != COSE_SIGN1_TAG or not isinstance(
            obj.value, (list, tuple)
        ):
            raise
        items = list(obj.value)
        if len(items) > 1 and hasattr(items[1], "items"):
            items[1] = dict(items[1])
        msg = Sign1Message.from_cose_obj(items, True)
    if not isinstance(msg, Sign1Message):
        raise TypeError(f"not a COSE_Sign1 but {type(msg).__name__}")
    return msg


def verifies(data, pub):
    """(True, "valid") if pycose verifies `data` under `pub`, else
    (False, why). Malformed input is a refusal, not a crash."""
    try:
        msg = decode_sign1(data)
        alg = msg.phdr.get(Algorithm)
        if alg is not EdDSA and alg != EdDSA:
            return False, "algorithm is not EdDSA"
        if msg.phdr.get(KID) != hashlib.sha256(pub).digest():
            return False, "kid is not SHA-256 of the public key"
        if msg.uhdr:
            return False, "unprotected header is not empty"
        msg.key = OKPKey(crv=Ed25519, x=pub)
        if msg.verify_signature():
            return True, "valid"
        return False, "bad signature"
    except Exception as e:  # noqa: BLE001 - any failure is a refusal
        return False, f"{type(e).__name__}: {e}"


def flip_signature(data):
    """A copy with one bit of the signature (the last bytes) flipped."""
    out = bytearray(data)
    out[-1] ^= 0x01
    return bytes(out)


def flip_payload(data):
    """A copy with one bit flipped in the middle of the payload, found by
    pycose's own decoding (the encoding keeps its shape)."""
    payload = decode_sign1(data).payload
    at = bytes(data).find(payload)
    if at < 0 or not payload:
        raise ValueError("payload not found in the encoding")
    out = bytearray(data)
    out[at + len(payload) // 2] ^= 0x01
    return bytes(out)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        items = json.load(f)["items"]
    if not items:
        print("no items", file=sys.stderr)
        return 2
    keys = [bytes.fromhex(i["key"]) for i in items]
    failed = 0
    for n, item in enumerate(items):
        what = item["what"]
        data = bytes.fromhex(item["cose"])
        pub = keys[n]
        problems = []
        ok, why = verifies(data, pub)
        if not ok:
            problems.append(why)
        else:
            for label, copy in (
                ("flipped signature", flip_signature(data)),
                ("flipped payload", flip_payload(data)),
            ):
                if verifies(copy, pub)[0]:
                    problems.append(f"a copy with a {label} verifies")
            others = [k for k in keys if k != pub]
            if others and verifies(data, others[0])[0]:
                problems.append("it verifies under another signer's key")
        if problems:
            failed += 1
            print(f"FAIL {what}: {'; '.join(problems)}")
        else:
            print(f"ok   {what}: valid; tampered copies and another key refused")
    print(f"{len(items) - failed} of {len(items)} signatures verified", end="")
    print(" (every item)" if failed == 0 else f" ({failed} items failed)")
    return 0 if failed == 0 else 1

if __name__ == "__main__":
    sys.exit(main(sys.argv))
