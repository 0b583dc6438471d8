"""Contracts from real traffic (docs/contracts.md): a schema inferred from captures on a real
server, checked by jsonschema independently; pinned, then drift reported at the fields that
changed; `schema diff` and `?against=pinned`; "Pin as contract" in the page. The inference
(hookscope.ops.infer) and the comparison (hookscope.ops.schemadiff) are also tested on their own.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from hookscope.models import format_time, now_us
from hookscope.ops.groups import Sample
from hookscope.ops.infer import Options, formats_of, infer
from hookscope.ops.schemadiff import diff_schemas
from tests.clirun import hookscope
from tests.serverproc import local_tls

# -- traffic: two Stripe-like event types of different shapes, some keys optional ---------------


def invoice_paid(i: int) -> dict[str, Any]:
    invoice: dict[str, Any] = {
        "id": f"in_{i}", "amount_paid": 1000 + i, "currency": "usd",
        "customer_email": f"c{i}@example.com" if i != 4 else "unknown",
        "paid_at": f"2026-11-22T10:00:{i:02d}Z",
        "hosted_invoice_url": f"https://pay.example.com/in/{i}",
        "lines": [{"price": "price_1", "quantity": 1 + i % 3}],
    }
    if i % 4 == 0:
        invoice["discount"] = {"coupon": "WINTER", "percent_off": 10}
    if i % 3 == 0:
        invoice["lines"].append({"price": "price_2", "quantity": 1, "proration": True})
    return {"id": f"evt_{i}", "type": "invoice.paid", "created": 1_790_000_000 + i,
            "data": {"object": invoice}}


def charge_failed(i: int) -> dict[str, Any]:
    charge: dict[str, Any] = {
        "id": f"ch_{i}", "amount": 500 + i, "failure_code": "card_declined",
        "receipt_email": None if i % 2 else f"r{i}@example.com",
        "outcome": {"network_status": "declined_by_network", "reason": "generic_decline"},
    }
    if i % 5 == 0:
        charge["metadata"] = {"order": f"ord_{i}"}
    event = {"id": f"evt_c{i}", "type": "charge.failed", "created": 1_790_000_100 + i,
             "data": {"object": charge}}
    if i % 3 == 0:
        event["livemode"] = False
    return event


TRAFFIC = [invoice_paid(i) for i in range(16)] + [charge_failed(i) for i in range(14)]


def keys_every_sample_has(samples: list[dict[str, Any]], *path: str) -> list[str]:
    """The intersection of the key sets at `path`, computed here, not by the code under test."""
    sets = []
    for sample in samples:
        for name in path:
            sample = sample[name]
        sets.append(set(sample))
    return sorted(set.intersection(*sets))


def group_schema(schema: dict[str, Any], event: str) -> dict[str, Any]:
    return schema["$defs"][schema["x-hookscope"]["groups"][event]]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def http(shared_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url, verify=local_tls(), timeout=10) as client:
        yield client


def _endpoint(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    created = http.post("/api/endpoints", json=fields)
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


def _send(http: httpx.Client, token: str, body: Any, *, path: str = "",
          headers: dict[str, str] | None = None, content_type: str = "application/json"
          ) -> dict[str, Any]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = http.post(f"/h/{token}{path}", content=content,
                     headers={"Content-Type": content_type, **(headers or {})})
    assert sent.status_code == 200, sent.text
    return http.get(f"/api/captures/{sent.headers['x-hookscope-capture']}").json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def stripe_like(http: httpx.Client) -> dict[str, Any]:
    """An endpoint with the 30 captures of TRAFFIC, and the contract inferred from them."""
    endpoint = _endpoint(http, name="stripe-like")
    for body in TRAFFIC:
        _send(http, endpoint["token"], body)
    reply = http.get(f"/api/endpoints/{endpoint['token']}/schema")
    assert reply.status_code == 200, reply.text
    return {"endpoint": endpoint, "inferred": reply.json()}


# -- inferred from a real server ------------------------------------------------------------------


def test_the_inferred_schema_validates_every_capture_it_came_from(stripe_like):
    inferred = stripe_like["inferred"]
    assert (inferred["samples"], inferred["captures"], inferred["group_by"]) == (
        30, 30, "pointer:/type")
    assert inferred["groups"] == [{"key": "invoice.paid", "samples": 16},
                                  {"key": "charge.failed", "samples": 14}]
    schema = inferred["schema"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert [list(validator.iter_errors(body)) for body in TRAFFIC] == [[]] * 30


def test_required_is_exactly_what_every_sample_of_a_group_has(stripe_like):
    schema = stripe_like["inferred"]["schema"]
    for event in ("invoice.paid", "charge.failed"):
        samples = [body for body in TRAFFIC if body["type"] == event]
        own = group_schema(schema, event)
        assert own["required"] == keys_every_sample_has(samples)
        invoice_or_charge = own["properties"]["data"]["properties"]["object"]
        assert invoice_or_charge["required"] == keys_every_sample_has(samples, "data", "object")
        assert own["additionalProperties"] is False
    # Optional in one group only: `livemode` is in some charge.failed events, no invoice.paid.
    assert "livemode" not in group_schema(schema, "charge.failed")["required"]
    assert "livemode" not in group_schema(schema, "invoice.paid")["properties"]
    lines = (group_schema(schema, "invoice.paid")["properties"]["data"]["properties"]["object"]
             ["properties"]["lines"]["items"])
    assert lines["required"] == ["price", "quantity"]  # `proration` is in some items only


def test_a_format_is_said_only_when_every_sample_matches(stripe_like):
    invoice = (group_schema(stripe_like["inferred"]["schema"], "invoice.paid")
               ["properties"]["data"]["properties"]["object"]["properties"])
    assert invoice["paid_at"] == {"type": "string", "format": "date-time"}
    assert invoice["hosted_invoice_url"] == {"type": "string", "format": "uri"}
    assert invoice["customer_email"] == {"type": "string"}  # one sample is "unknown"
    charge = (group_schema(stripe_like["inferred"]["schema"], "charge.failed")
              ["properties"]["data"]["properties"]["object"]["properties"])
    assert charge["receipt_email"] == {"type": ["null", "string"], "format": "email"}


def test_groups_are_combined_so_each_is_checked_against_its_own_shape(stripe_like):
    schema = stripe_like["inferred"]["schema"]
    assert schema["properties"]["type"] == {"enum": ["charge.failed", "invoice.paid"]}
    validator = Draft202012Validator(schema)
    # An invoice.paid event in charge.failed's shape is not valid, and the errors are at fields.
    mixed = {**charge_failed(2), "type": "invoice.paid"}
    paths = {"/" + "/".join(map(str, e.absolute_path)) for e in validator.iter_errors(mixed)}
    assert "/data/object" in paths


def test_pinning_flags_what_changed_at_the_fields_pointer(http, shared_server, stripe_like):
    token = stripe_like["endpoint"]["token"]
    result = hookscope("schema", "pin", token, "--server", shared_server.url)
    assert result.code == 0, result.err
    assert "the contract inferred from 30 samples (30 captures)" in result.out
    pinned = http.get(f"/api/endpoints/{token}").json()["schema"]
    assert pinned == stripe_like["inferred"]["schema"]

    assert _send(http, token, invoice_paid(20))["validation"]["status"] == "valid"
    changed = invoice_paid(21)
    changed["data"]["object"]["amount_paid"] = "1021"
    assert _send(http, token, changed)["validation"] == {
        "format": "custom", "detected": False, "status": "invalid",
        "errors": [{"path": "/data/object/amount_paid",
                    "message": "expected integer, got string"}]}
    extra = charge_failed(22)
    extra["data"]["object"]["foo"] = 1
    assert _send(http, token, extra)["validation"]["errors"] == [
        {"path": "/data/object/foo", "message": "unexpected property /data/object/foo"}]
    missing = invoice_paid(23)
    del missing["id"]
    assert _send(http, token, missing)["validation"]["errors"] == [
        {"path": "/id", "message": "missing required /id"}]
    unknown = {**invoice_paid(24), "type": "refund.created"}
    errors = _send(http, token, unknown)["validation"]["errors"]
    assert errors[0]["path"] == "/type" and "refund.created" in errors[0]["message"]
    # Filterable like any verdict.
    invalid = http.get(f"/api/endpoints/{token}/captures?validation=invalid").json()["captures"]
    assert len(invalid) == 4


def test_against_pinned_lists_what_traffic_changed(http, shared_server):
    token = _endpoint(http)["token"]
    for body in TRAFFIC[:4] + TRAFFIC[-4:]:
        _send(http, token, body)
    assert hookscope("schema", "pin", token, "--server", shared_server.url).code == 0
    since = format_time(now_us())
    for i in (30, 31):
        body = invoice_paid(i)
        body["data"]["object"]["amount_paid"] = str(1000 + i)
        del body["data"]["object"]["hosted_invoice_url"]
        _send(http, token, body)
    reply = http.get(f"/api/endpoints/{token}/schema", params={"against": "pinned",
                                                              "since": since})
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["against"] == "pinned" and result["breaking"] is True
    assert result["group_by"] == "pointer:/type" and result["samples"] == 2
    found = {(c["kind"], c["change"], c["path"], c["group"]) for c in result["changes"]}
    assert ("breaking", "type-changed", "/data/object/amount_paid", "invoice.paid") in found
    assert ("breaking", "required-removed", "/data/object/hosted_invoice_url",
            "invoice.paid") in found
    assert ("breaking", "event-type-removed", "", "charge.failed") in found
    drift = hookscope("schema", "drift", token, "--since", since, "--server", shared_server.url)
    assert drift.code == 1, drift.err
    assert "/data/object/amount_paid: type changed: integer → string  [invoice.paid]" in (
        drift.out)


def test_against_pinned_without_a_pinned_schema_is_409(http, shared_server):
    endpoint = _endpoint(http)
    reply = http.get(f"/api/endpoints/{endpoint['token']}/schema?against=pinned")
    assert reply.status_code == 409
    assert hookscope("schema", "drift", endpoint["token"], "--server", shared_server.url).code == 2


def test_bad_parameters_are_400(http, stripe_like):
    token = stripe_like["endpoint"]["token"]
    for query in ("limit=0", "limit=10001", "group_by=body", "since=yesterday", "path=x",
                  "enum=yes", "nope=1", "against=traffic"):
        assert http.get(f"/api/endpoints/{token}/schema?{query}").status_code == 400, query


def test_a_header_names_the_group_and_validation_picks_it(http):
    endpoint = _endpoint(http)
    token = endpoint["token"]
    for i in range(4):
        _send(http, token, {"ref": "refs/heads/main", "commits": [{"id": f"{i}"}]},
              headers={"X-GitHub-Event": "push"})
        _send(http, token, {"action": "opened", "issue": {"number": i}},
              headers={"X-GitHub-Event": "issues"})
    inferred = http.get(f"/api/endpoints/{token}/schema").json()
    assert inferred["group_by"] == "header:X-GitHub-Event"
    schema = inferred["schema"]
    assert schema["anyOf"] == [{"$ref": "#/$defs/issues"}, {"$ref": "#/$defs/push"}]
    assert http.patch(f"/api/endpoints/{token}", json={"schema": schema}).status_code == 200
    # A push in the issues shape: checked as a push, so the errors name the push fields.
    wrong = _send(http, token, {"action": "opened", "issue": {"number": 9}},
                  headers={"X-GitHub-Event": "push"})["validation"]
    assert {e["path"] for e in wrong["errors"]} == {"/action", "/issue", "/commits", "/ref"}
    unknown = _send(http, token, {"action": "published"},
                    headers={"X-GitHub-Event": "release"})["validation"]
    assert unknown["status"] == "invalid"
    assert "no event type 'release'" in unknown["errors"][0]["message"]
    good = _send(http, token, {"ref": "x", "commits": []}, headers={"X-GitHub-Event": "push"})
    assert good["validation"]["status"] == "valid"


def test_ndjson_is_inferred_and_checked_per_line_and_forms_as_strings(http):
    endpoint = _endpoint(http)
    rows = "\n".join(json.dumps({"event": "view", "n": i}) for i in range(3)).encode()
    _send(http, endpoint["token"], rows, content_type="application/x-ndjson")
    _send(http, endpoint["token"], rows, content_type="application/x-ndjson")
    inferred = http.get(f"/api/endpoints/{endpoint['token']}/schema?group_by=none").json()
    assert (inferred["samples"], inferred["captures"]) == (6, 2)
    http.patch(f"/api/endpoints/{endpoint['token']}", json={"schema": inferred["schema"]})
    bad = b'{"event": "view", "n": 1}\n{"event": "view", "n": "2"}\n'
    verdict = _send(http, endpoint["token"], bad, content_type="application/x-ndjson")
    assert verdict["validation"]["errors"] == [{"path": "/1/n",
                                                "message": "expected integer, got string"}]

    form = _endpoint(http)
    for i in range(2):
        _send(http, form["token"], f"token=t{i}&count={i}".encode(),
              content_type="application/x-www-form-urlencoded")
    schema = http.get(f"/api/endpoints/{form['token']}/schema").json()["schema"]
    assert schema["properties"] == {"token": {"type": "string"}, "count": {"type": "string"}}


# -- schema diff ---------------------------------------------------------------------------------


@pytest.fixture
def contract_files(tmp_path, stripe_like):
    old = stripe_like["inferred"]["schema"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    return tmp_path, old


def _changed(old: dict[str, Any], change: Any) -> dict[str, Any]:
    new = copy.deepcopy(old)
    change(group_schema(new, "invoice.paid")["properties"]["data"]["properties"]["object"])
    return new


def test_schema_diff_exits_1_on_a_removed_required_field(contract_files):
    folder, old = contract_files

    def remove(invoice: dict[str, Any]) -> None:
        del invoice["properties"]["currency"]
        invoice["required"].remove("currency")

    (folder / "new.json").write_text(json.dumps(_changed(old, remove)))
    result = hookscope("schema", "diff", str(folder / "old.json"), str(folder / "new.json"))
    assert result.code == 1, result.err
    assert ("breaking  /data/object/currency: required property removed  [invoice.paid]"
            in result.out)
    assert "1 breaking, 0 additive" in result.out


def test_schema_diff_exits_0_on_an_added_optional_field(contract_files):
    folder, old = contract_files

    def add(invoice: dict[str, Any]) -> None:
        invoice["properties"]["tax"] = {"type": "integer"}

    (folder / "new.json").write_text(json.dumps(_changed(old, add)))
    result = hookscope("schema", "diff", str(folder / "old.json"), str(folder / "new.json"),
                       "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "breaking": False, "counts": {"breaking": 0, "additive": 1},
        "changes": [{"kind": "additive", "change": "property-added",
                     "path": "/data/object/tax", "group": "invoice.paid",
                     "message": "new optional property", "old": None, "new": None}]}
    same = hookscope("schema", "diff", str(folder / "old.json"), "-",
                     stdin=json.dumps(old).encode())
    assert (same.code, same.out.strip()) == (0, "no changes")


def test_schema_diff_exits_2_on_bad_input(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"type": "object"}')
    for name, text in (("not-json", "{"), ("not-a-schema", '{"type": 5}'), ("list", "[]")):
        (tmp_path / name).write_text(text)
        result = hookscope("schema", "diff", str(good), str(tmp_path / name))
        assert result.code == 2, (name, result.out)
        assert result.err.startswith("hookscope: ")
    assert hookscope("schema", "diff", str(good), str(tmp_path / "absent")).code == 2
    assert hookscope("schema", "diff", "-", "-").code == 2


# -- the inference and the comparison on their own ----------------------------------------------


def _samples(*bodies: Any) -> list[Sample]:
    return [Sample([], "/h/key", body) for body in bodies]


def test_formats_are_recognised_strictly():
    assert formats_of("2026-11-22T10:00:00.5+01:00") == {"date-time"}
    assert formats_of("2026-02-30") == set()  # not a date
    assert formats_of("2026-02-28") == {"date"}
    assert formats_of("0b9f3c1e-8f0e-4c1a-9d3e-2b7a6c5d4e3f") == {"uuid"}
    assert formats_of("ada@example.com") == {"email"}
    assert formats_of("https://example.com/a?b=1") == {"uri"}
    assert formats_of("invoice.paid") == formats_of("") == set()


def test_enums_only_when_asked_and_values_repeat():
    bodies = [{"status": s, "id": f"x{i}"} for i, s in enumerate(["a", "b", "a", "a"])]
    plain = infer(_samples(*bodies), Options(group_by="none"))["schema"]
    assert "enum" not in plain["properties"]["status"]
    asked = infer(_samples(*bodies), Options(group_by="none", enums=True))["schema"]
    assert asked["properties"]["status"]["enum"] == ["a", "b"]
    assert "enum" not in asked["properties"]["id"]  # every value different: not an enum


def test_types_merge_and_objects_can_be_left_open():
    result = infer(_samples({"n": 1, "v": None}, {"n": 1.5, "v": "x"}),
                   Options(group_by="none", additional_properties=True))
    schema = result["schema"]
    assert schema["properties"] == {"n": {"type": "number"}, "v": {"type": ["null", "string"]}}
    assert "additionalProperties" not in schema


def test_a_pointer_group_missing_in_some_samples_gets_its_own_branch():
    schema = infer(_samples({"type": "a", "x": 1}, {"y": "z"}),
                   Options(group_by="pointer:/type"))["schema"]
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"type": "a", "x": 2}) and validator.is_valid({"y": "w"})
    assert not validator.is_valid({"y": 1}) and not validator.is_valid({"type": "b", "x": 1})


@pytest.mark.parametrize(("old", "new", "expected"), [
    ({"type": "integer"}, {"type": "number"}, ("additive", "type-widened")),
    ({"type": "number"}, {"type": "integer"}, ("breaking", "type-narrowed")),
    ({"type": "string", "enum": ["a", "b"]}, {"type": "string", "enum": ["a"]},
     ("breaking", "enum-value-removed")),
    ({"type": "string", "enum": ["a"]}, {"type": "string", "enum": ["a", "b"]},
     ("additive", "enum-value-added")),
    ({"type": "object", "properties": {"a": {}}},
     {"type": "object", "properties": {"a": {}}, "required": ["a"]},
     ("breaking", "made-required")),
    ({"type": "object", "properties": {"a": {}}, "additionalProperties": False},
     {"type": "object", "properties": {}, "additionalProperties": False},
     ("breaking", "property-removed")),
    ({"type": "object", "properties": {"a": {}}},
     {"type": "object", "properties": {"a": {}, "b": {}}, "required": ["b"]},
     ("breaking", "required-added")),
    ({"type": "string", "format": "uuid"}, {"type": "string"}, ("breaking", "format-removed")),
    ({"type": "string"}, {"type": "string", "format": "uuid"}, ("additive", "format-added")),
    ({"type": "string", "maxLength": 3}, {"type": "string"},
     ("additive", "constraint-removed")),
])
def test_each_kind_of_change_is_classified(old, new, expected):
    changes = diff_schemas({"properties": {"f": old}}, {"properties": {"f": new}})["changes"]
    assert [(c["kind"], c["change"]) for c in changes] == [expected]
    assert changes[0]["path"].startswith("/f")


def test_array_items_are_compared_at_a_star():
    old = {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}}
    new = copy.deepcopy(old)
    new["items"]["properties"]["sku"]["type"] = "integer"
    assert [c["path"] for c in diff_schemas(old, new)["changes"]] == ["/*/sku"]


def test_a_recursive_schema_is_compared_without_looping():
    tree = {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}}
    assert diff_schemas(tree, copy.deepcopy(tree))["changes"] == []


def test_a_diff_compares_every_property_that_refers_to_a_definition_with_siblings():
    """Each `$ref` with a sibling resolves to a new schema: none may pass for one compared."""
    from hookscope.ops.schemadiff import diff_schemas

    def contract(first_type: str) -> dict[str, Any]:
        return {"type": "object",
                "properties": {f"p{n}": {"$ref": f"#/$defs/T{n}", "description": "d"}
                               for n in range(6)},
                "$defs": {f"T{n}": {"type": first_type if n == 0 else "string"}
                          for n in range(6)}}

    changed = diff_schemas(contract("string"), contract("integer"))
    assert changed["breaking"] is True
    assert [c["path"] for c in changed["changes"]] == ["/p0"]
