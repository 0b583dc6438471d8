"""Event types (hookscope.ops.groups): a capture's group under each way of grouping, and the one
chosen when none is asked for."""

from __future__ import annotations

import pytest

from hookscope.ops.groups import MISSING, Sample, check, choose, key
from hookscope.ops.pointer import resolve


def _sample(body=None, headers=(), path="/h/key"):
    return Sample(headers=[list(h) for h in headers], path=path, body=body)


@pytest.mark.parametrize(("group_by", "sample", "expected"), [
    ("header:X-GitHub-Event",
     _sample(headers=[("x-github-event", "push"), ("X-GitHub-Event", "x")]), "push"),
    ("header:X-GitHub-Event", _sample(), MISSING),
    ("pointer:/type", _sample({"type": "invoice.paid"}), "invoice.paid"),
    ("pointer:/event/type", _sample({"event": {"type": "message"}}), "message"),
    ("pointer:/version", _sample({"version": 2}), "2"),
    ("pointer:/ok", _sample({"ok": True}), "true"),
    ("pointer:/type", _sample({"type": {"nested": 1}}), MISSING),
    ("pointer:/type", _sample(None), MISSING),
    ("path", _sample(path="/h/key/github"), "/github"),
    ("path", _sample(path="/h/key"), "/"),
    ("none", _sample({"type": "x"}), "*"),
])
def test_a_capture_falls_in_the_group_its_field_names(group_by, sample, expected):
    assert key(sample, group_by) == expected


def test_auto_prefers_a_senders_event_header_then_the_body_field_every_capture_has():
    github = [_sample({"action": "opened"}, [("X-GitHub-Event", e)]) for e in ("push", "issues")]
    assert choose(github) == "header:X-GitHub-Event"
    stripe = [_sample({"type": t, "data": {}}) for t in ("invoice.paid", "charge.failed")]
    assert choose(stripe) == "pointer:/type"
    webengage = [_sample({"event_name": n, "category": "application"}) for n in ("a", "b")]
    assert choose(webengage) == "pointer:/event_name"
    flows = [_sample({"operationType": o}) for o in ("created", "updated")]
    assert choose(flows) == "pointer:/operationType"
    mixed = [_sample({"type": "x"}), _sample({"other": 1})]  # not every capture has /type
    assert choose(mixed) == "none"
    assert choose([]) == "none"


def test_too_many_distinct_values_is_no_grouping():
    assert choose([_sample({"type": f"t{n}"}) for n in range(51)]) == "none"


@pytest.mark.parametrize("group_by", ["auto", "none", "path", "header:X-Event", "pointer:/a/b",
                                      "pointer:"])
def test_groupings_are_checked(group_by):
    assert check(group_by) == group_by


@pytest.mark.parametrize("group_by", ["header:", "pointer:type", "body", "header:X Y"])
def test_bad_groupings_say_which_forms_there_are(group_by):
    with pytest.raises(ValueError, match="group_by must be auto, none, path"):
        check(group_by)


def test_pointers_unescape_and_index_arrays():
    doc = {"a/b": {"m~n": [10, 20]}}
    assert resolve(doc, "/a~1b/m~0n/1") == 20
    assert resolve(doc, "/a~1b/m~0n/9") is None
    assert resolve(doc, "") == doc
