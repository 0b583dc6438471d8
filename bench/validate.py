"""bench/validate: what format detection and validation cost on the capture path.

Times, best of several repeats on this machine: a ~5 KB valid payload (the Avo seed example,
the largest documented format) detected and validated (the fast road: jsonschema-rs), the same
payload made invalid (the slow road: jsonschema's full error list), and `auto` on a payload no
format recognises (most captures of most endpoints).

    .venv/bin/python bench/validate.py
"""

from __future__ import annotations

import json
import sys
import timeit
from pathlib import Path

from hookscope.formats import Validation, load_formats
from hookscope.ingest.parse import parse_body

ROOT = Path(__file__).resolve().parent.parent


def best_us(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main() -> int:
    validation = Validation(load_formats())
    seed = json.loads((ROOT / "tests/fixtures/formats/avo.json-schema/seed-example.json")
                      .read_text())["body"]
    body = json.dumps(seed).encode()
    broken = dict(seed, events=[dict(seed["events"][0], name=5), *seed["events"][1:]])
    other = json.dumps({"id": "evt_1", "type": "charge.succeeded",
                        "data": {"object": {"id": "ch_1", "amount": 4200}}}).encode()

    valid = parse_body(body, "application/json")
    invalid = parse_body(json.dumps(broken).encode(), "application/json")
    unknown = parse_body(other, "application/json")
    assert validation.check(valid, "auto", None)["status"] == "valid"
    assert validation.check(invalid, "auto", None)["status"] == "invalid"
    assert validation.check(unknown, "auto", None) is None

    rows = [
        (f"{len(body)} B valid avo.json-schema, auto (detect + validate)",
         best_us(lambda: validation.check(valid, "auto", None), 2000), 100),
        ("same payload, pinned format (validate only)",
         best_us(lambda: validation.check(valid, "avo.json-schema", None), 2000), 100),
        ("same payload with one wrong type: full error list",
         best_us(lambda: validation.check(invalid, "auto", None), 200), None),
        (f"{len(other)} B payload no format recognises, auto",
         best_us(lambda: validation.check(unknown, "auto", None), 5000), None),
        (f"parse {len(body)} B JSON (done for every capture anyway)",
         best_us(lambda: parse_body(body, "application/json"), 2000), None),
    ]
    print("# python bench/validate.py  (best of 7, microseconds per payload)")
    for label, us, budget in rows:
        note = f"  (budget <= {budget} us)" if budget else ""
        print(f"{us:9.1f} us  {label}{note}")
    print("\n# every format, its largest valid JSON fixture, detect + validate (auto)")
    for fmt in validation.registry.formats:
        cases = [json.loads(p.read_text()) for p in
                 (ROOT / "tests/fixtures/formats" / fmt.id).glob("*.json")]
        bodies = [json.dumps(c["body"]).encode() for c in cases
                  if c["expect"]["status"] == "valid" and "body" in c]
        largest = max(bodies, key=len)
        parsed = parse_body(largest, "application/json")
        us = best_us(lambda parsed=parsed: validation.check(parsed, "auto", None), 300)
        print(f"{us:9.1f} us  {fmt.id:<26} {len(largest):6d} B  "
              f"{us / (len(largest) / 1024):.1f} us/KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
