#!/usr/bin/env python3
"""An independent RFC 9162 proof verifier, for agora-stp's Merkle tests.

Written from the text of RFC 9162 (Certificate Transparency Version 2.0),
section 2.1.3.2 "Verifying an Inclusion Proof" and section 2.1.4.2
"Verifying Consistency between Two Tree Heads", with the hashing of
section 2.1.1. Standard library only.

Input (stdin), JSON:

    {"inclusion":   [{"leaf_hash": hex, "index": n, "size": n,
                      "path": [hex, ...], "root": hex, "expect": bool}, ...],
     "consistency": [{"old_size": n, "new_size": n, "old_root": hex,
                      "new_root": hex, "path": [hex, ...], "expect": bool}, ...]}

Every case is verified; each verdict whose value differs from its "expect"
is printed, then a summary line. The exit status is 0 only if every verdict
is the expected one (1 otherwise, 2 for unusable input).

The RFC's consistency algorithm covers 0 < first < second. The other size
pairs are decided as agora-stp documents them: first > second never
verifies; first == second verifies iff the path is empty and the roots are
equal; first == 0 verifies iff the path is empty and the first root is the
empty tree's, SHA-256 of the empty string (and, if second is 0 too, the
roots are equal).
"""

import hashlib
import json
import sys

HASH_LEN = 32
# A proof longer than this is refused, as by agora-stp (MAX_PROOF_LEN).
MAX_PATH = 64
EMPTY_TREE_ROOT = hashlib.sha256(b"").digest()


def interior(left, right):
    """HASH(0x01 || left || right), RFC 9162 section 2.1.1."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def lsb(x):
    return x & 1 == 1


class Unusable(Exception):
    """The input is not a proof at all (a hash of the wrong length...)."""


def as_hash(text):
    try:
        value = bytes.fromhex(text)
    except (TypeError, ValueError) as err:
        raise Unusable("not hex: %r" % (text,)) from err
    if len(value) != HASH_LEN:
        raise Unusable("a hash of %d bytes" % len(value))
    return value


def as_size(value):
    # bool is an int in Python: refuse it, and anything outside u64.
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unusable("not an integer: %r" % (value,))
    if not 0 <= value < 2**64:
        raise Unusable("out of the u64 range: %r" % (value,))
    return value


def inclusion_holds(hash_, leaf_index, tree_size, inclusion_path, root_hash):
    """RFC 9162 section 2.1.3.2, one numbered step at a time."""
    if len(inclusion_path) > MAX_PATH:
        return False
    # Step 1: leaf_index must be below tree_size.
    if leaf_index >= tree_size:
        return False
    # Step 2.
    fn, sn = leaf_index, tree_size - 1
    # Step 3.
    r = hash_
    # Step 4.
    for p in inclusion_path:
        if sn == 0:
            return False
        if lsb(fn) or fn == sn:
            r = interior(p, r)
            if not lsb(fn):
                while not (lsb(fn) or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = interior(r, p)
        fn >>= 1
        sn >>= 1
    # Step 5.
    return sn == 0 and r == root_hash


def consistency_holds(first, second, first_hash, second_hash, consistency_path):
    """RFC 9162 section 2.1.4.2 for 0 < first < second, and the documented
    answers for the other size pairs."""
    if len(consistency_path) > MAX_PATH:
        return False
    if first > second:
        return False
    if first == 0 and first_hash != EMPTY_TREE_ROOT:
        return False
    if first == second:
        return not consistency_path and first_hash == second_hash
    if first == 0:
        return not consistency_path

    # Step 1.
    if not consistency_path:
        return False
    # Step 2.
    path = list(consistency_path)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    # Step 3.
    fn, sn = first - 1, second - 1
    # Step 4.
    if lsb(fn):
        while lsb(fn):
            fn >>= 1
            sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if lsb(fn) or fn == sn:
            fr = interior(c, fr)
            sr = interior(c, sr)
            if not lsb(fn):
                while not (lsb(fn) or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = interior(sr, c)
        fn >>= 1
        sn >>= 1
    # Step 7.
    return fr == first_hash and sr == second_hash and sn == 0


def check_inclusion(case):
    return inclusion_holds(
        as_hash(case["leaf_hash"]),
        as_size(case["index"]),
        as_size(case["size"]),
        [as_hash(p) for p in case["path"]],
        as_hash(case["root"]),
    )


def check_consistency(case):
    return consistency_holds(
        as_size(case["old_size"]),
        as_size(case["new_size"]),
        as_hash(case["old_root"]),
        as_hash(case["new_root"]),
        [as_hash(p) for p in case["path"]],
    )


def main():
    try:
        document = json.load(sys.stdin)
    except ValueError as err:
        print("rfc9162.py: input is not JSON: %s" % err)
        return 2
    if not isinstance(document, dict):
        print("rfc9162.py: input is not a JSON object")
        return 2

    mismatches = 0
    counts = {}
    for kind, check in (("inclusion", check_inclusion), ("consistency", check_consistency)):
        cases = document.get(kind, [])
        counts[kind] = len(cases)
        for number, case in enumerate(cases):
            try:
                expect = case["expect"]
                if not isinstance(expect, bool):
                    raise Unusable("expect is not true or false: %r" % (expect,))
                verdict = check(case)
            except (KeyError, TypeError, Unusable) as err:
                print("rfc9162.py: %s case %d is unusable: %s" % (kind, number, err))
                return 2
            if verdict is not expect:
                mismatches += 1
                print(
                    "MISMATCH %s case %d: verifies=%s, expected %s: %s"
                    % (kind, number, verdict, expect, json.dumps(case))
                )

    print(
        "%d inclusion and %d consistency proofs checked, %d mismatches"
        % (counts["inclusion"], counts["consistency"], mismatches)
    )
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
