"""Standard Webhooks (standardwebhooks.com) logic, free of host calls: the Python
port of plugins/standard-webhooks (same routes, keys and answers).

Signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 with the
key inside `whsec_<base64>`, sent as `webhook-signature: v1,<base64>`.
`lead.created` events become leads; other types are recorded as ignored.
"""

import json

from portico_sdk import (
    FieldError, obj_at, opt_str_at, parse_json, str_at, to_json, verify_standard_webhook)

LEAD_SOURCE = "Standard"
TENANT_KIND = "standard"


def verify(header, body: bytes, secrets, now: int) -> None:
    """Raises portico_sdk.SignatureError naming what is wrong."""
    verify_standard_webhook(header, body, secrets, now)


class Parsed:
    def __init__(self, dedup_key, tenant_key, kind, payload: bytes):
        self.dedup_key = dedup_key
        self.tenant_key = tenant_key
        self.kind = kind
        self.payload = payload


def parse(body: bytes, webhook_id: str) -> Parsed:
    """`lead.created` is a lead item (its `data`); other types are ignored items."""
    event = parse_json(body)
    if not isinstance(event, dict):
        raise FieldError("$", "must be an object")
    kind = str_at(event, "type")
    if kind != "lead.created":
        return Parsed(f"msg:{webhook_id}", opt_str_at(event, "data.source_key"), "ignored",
                      f"event type {json.dumps(kind, ensure_ascii=False)} is not handled (only lead.created)".encode())
    lead_id = str_at(event, "data.id")
    source_key = str_at(event, "data.source_key")
    data = event["data"]
    return Parsed(f"lead:{lead_id}", source_key, "lead", to_json(data).encode())


def map_lead(payload: bytes) -> dict:
    """The lead a lead item's payload (the event's `data`) makes."""
    data = parse_json(payload)
    try:
        fields = obj_at(data, "fields")
    except FieldError:
        raise FieldError("data.fields", "must be an object") from None
    return {
        "external_id": str_at(data, "id"),
        "full_name": opt_str_at(data, "full_name"),
        "email": opt_str_at(data, "email"),
        "phone": opt_str_at(data, "phone"),
        "fields": fields,
    }
