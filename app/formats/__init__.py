"""Payload formats. Detection and validation arrive with their registry; API.md fixes the ids."""

FORMAT_IDS: tuple[str, ...] = (
    "avo.json-schema", "avo.ndjson", "avo.snowplow", "avo.avo-json",
    "virtuoso.ping", "virtuoso.execution",
    "webengage.event", "webengage.journey", "webengage.feedback", "webengage.feedback-reply",
    "webengage.survey-response",
    "flows.entity-event", "flows.packet-comment",
)
