"""Verifies forwarded deliveries with Stripe's official Python SDK, as an application would.

Reads one JSON document on stdin:
  {"secret": str, "tolerance": int, "deliveries": [{"body": str, "header": str}, ...]}
and for each delivery calls stripe.Webhook.construct_event(body, header, secret, tolerance), the
call an application makes. Writes {"stripe_version": ..., "results": [{"ok": bool, "id": str or
null, "error": str or null}, ...]} on stdout.
"""

import json
import sys

import stripe


def main() -> None:
    doc = json.load(sys.stdin)
    results = []
    for delivery in doc["deliveries"]:
        try:
            event = stripe.Webhook.construct_event(
                delivery["body"], delivery["header"], doc["secret"], doc["tolerance"]
            )
            results.append({"ok": True, "id": event["id"], "error": None})
        except Exception as e:  # noqa: BLE001 - every failure is reported, by kind
            results.append({"ok": False, "id": None, "error": f"{type(e).__name__}: {e}"})
    json.dump({"stripe_version": stripe.VERSION, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
