#!/usr/bin/env python3
"""An independent RFC 9421 implementation checks agora-lite's HTTP binding.

Reads a JSON list of cases on stdin and writes a JSON list of results, one
per case, on stdout. The checker is the `http-message-signatures` package
(PyPI, pyauth), which agora neither wrote nor shares code with.

Cases:
  {"kind": "verify-request", "key": b64, "keyid": str, "tag": str,
   "require": [components], "method": str, "url": str,
   "headers": [[name, value], ...], "body": b64}
  {"kind": "verify-response", same fields but "status": int, no method/url}
  {"kind": "sign-request", "key", "keyid", "tag", "nonce", "created": int,
   "components": [...], "method", "url", "headers", "body"}
Results: {"ok": true, "headers": {...}} or {"ok": false, "error": str}.
"""
import base64
import datetime
import json
import sys

from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)
from requests.structures import CaseInsensitiveDict


class Message:
    """The duck-typed request or response the library resolves components of."""

    def __init__(self, case):
        self.headers = CaseInsensitiveDict()
        for name, value in case["headers"]:
            if name in self.headers:
                self.headers[name] = self.headers[name] + ", " + value
            else:
                self.headers[name] = value
        if "status" in case:
            self.status_code = case["status"]
        else:
            self.method = case["method"]
            self.url = case["url"]


def resolver(case):
    key = base64.b64decode(case["key"])
    return MappingKeyResolver(
        public_keys={case["keyid"]: key}, private_keys={case["keyid"]: key}
    )


def verify(case):
    message = Message(case)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.HMAC_SHA256, key_resolver=resolver(case)
    )
    # Created is the tests' fixed clock (2023): no age limit here; agora
    # checks freshness by its unit of time and its replay cache.
    results = verifier.verify(
        message,
        max_age=None,
        expect_tag=case["tag"],
        require_components=case["require"],
        body=base64.b64decode(case["body"]),
    )
    if len(results) != 1:
        raise ValueError(f"{len(results)} signatures verified, expected 1")
    result = results[0]
    if result.label != "lite":
        raise ValueError(f"verified label {result.label!r}, expected 'lite'")
    params = dict(result.parameters)
    if params.get("keyid") != case["keyid"]:
        raise ValueError(f"keyid {params.get('keyid')!r}")
    return {"ok": True, "covered": [str(c) for c in result.covered_components]}


def sign(case):
    message = Message(case)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.HMAC_SHA256, key_resolver=resolver(case)
    )
    signer.sign(
        message,
        key_id=case["keyid"],
        created=datetime.datetime.fromtimestamp(case["created"], datetime.timezone.utc),
        nonce=case["nonce"],
        label="lite",
        tag=case["tag"],
        covered_component_ids=case["components"],
        use_existing_digest=True,
    )
    return {
        "ok": True,
        "headers": {
            "signature-input": message.headers["signature-input"],
            "signature": message.headers["signature"],
        },
    }


def main():
    out = []
    for case in json.load(sys.stdin):
        try:
            if case["kind"] == "sign-request":
                out.append(sign(case))
            else:
                out.append(verify(case))
        except Exception as e:  # every failure is a result, reported
            out.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
