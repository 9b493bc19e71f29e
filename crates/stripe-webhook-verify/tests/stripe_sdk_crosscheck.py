"""Cross-check helper for tests/stripe_sdk_crosscheck.rs, driving Stripe's official Python SDK.

Reads one JSON document on stdin:
  {"tolerance": 300, "cases": [{"body": str, "sign_secrets": [str], "verify_secrets": [str],
                                "timestamp": int, "verify_body": str, "rust_header": str,
                                "extra": str, "tamper_sig": bool}, ...]}
For each case it
  - builds the SDK's header: one generate_signature_header call per signing secret, merged into
    "t=<ts>,v1=<sig1>[,v1=<sig2>]" (+ the case's extra elements, optionally one hex char tampered),
  - asks the SDK's verify_header whether `verify_body` is accepted with the SDK header and with the
    Rust-built header, under any of `verify_secrets` (the SDK takes one secret at a time),
and writes {"stripe_version": ..., "results": [{"sdk_header", "sdk_accepts_sdk_header",
"sdk_accepts_rust_header"}, ...]} on stdout.
"""

import json
import sys

import stripe
from stripe import WebhookSignature
from stripe._error import SignatureVerificationError


def tamper(header: str) -> str:
    # Change the last hex character of the last v1 to a different lowercase hex character.
    last = header[-1]
    return header[:-1] + ("0" if last != "0" else "1")


def sdk_header(case) -> str:
    ts = case["timestamp"]
    sigs = []
    for secret in case["sign_secrets"]:
        one = WebhookSignature.generate_signature_header(case["body"], secret, timestamp=ts)
        t_part, v1_part = one.split(",")
        assert t_part == f"t={ts}", one
        sigs.append(v1_part)
    header = ",".join([f"t={ts}", *sigs])
    if case["tamper_sig"]:
        header = tamper(header)
    return header + case["extra"]


def sdk_accepts(body: str, header: str, secrets, tolerance: int) -> bool:
    for secret in secrets:
        try:
            WebhookSignature.verify_header(body, header, secret, tolerance)
            return True
        except SignatureVerificationError:
            pass
    return False


def main() -> None:
    doc = json.load(sys.stdin)
    tolerance = doc["tolerance"]
    results = []
    for case in doc["cases"]:
        header = sdk_header(case)
        results.append(
            {
                "sdk_header": header,
                "sdk_accepts_sdk_header": sdk_accepts(
                    case["verify_body"], header, case["verify_secrets"], tolerance
                ),
                "sdk_accepts_rust_header": sdk_accepts(
                    case["verify_body"], case["rust_header"], case["verify_secrets"], tolerance
                ),
            }
        )
    json.dump({"stripe_version": stripe.VERSION, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
