"""Signature schemes. Verification itself arrives with its registry; the ids are fixed by API.md."""

SCHEME_IDS: tuple[str, ...] = (
    "auto", "standard-webhooks", "svix", "github", "stripe", "shopify", "slack", "avo",
    "virtuoso", "webengage", "hmac", "token",
)
