"""The typed side of an adapter: the host's types, errors, answers, and an
`Adapter` base class with sensible defaults for what most adapters do not use.
Inside a component only (it uses the bindings generated from wit/adapter.wit).

    from portico_sdk.adapter import Adapter, types, webhook_route, lead

    class Plugin(Adapter):
        def manifest(self): ...
        def verify(self, req): ...
        def parse(self, req): ...
        def map_to_domain(self, item): ...
"""

import json
from typing import List, Optional, Sequence, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import plugin as plugin_types
from wit_world.imports import types

from .fields import FieldError, to_json

__all__ = [
    "Adapter", "types", "plugin_types", "accept", "reject", "webhook_route",
    "adapter_error", "invalid", "from_field_error", "item", "lead", "ignore",
    "text_response", "json_response", "respond_records",
]


def accept() -> types.Verdict:
    return types.Verdict_Accept()


def reject(reason: str) -> types.Verdict:
    """Refuse a request (401); the reason is shown to the caller, so no secrets in it."""
    return types.Verdict_Reject(reason)


def webhook_route(path: str = "webhook", method: str = "POST") -> types.Route:
    """A provider delivery route, open to anyone (the provider proves itself in verify)."""
    return types.Route(method=method, path=path, kind=types.RouteKind.WEBHOOK,
                       auth=types.RouteAuth.NONE)


def adapter_error(code: str, message: str, retryable: bool = False,
                  fields: Sequence[Tuple[str, str]] = ()) -> Err:
    """An error to `raise` from parse or map_to_domain: what is wrong and how to fix it."""
    return Err(types.AdapterError(code=code, message=message, retryable=retryable,
                                  fields=list(fields)))


def invalid(code: str, fields: Sequence[Tuple[str, str]]) -> Err:
    """Bad input, by field: each (path, problem)."""
    message = "; ".join(f"{path} {problem}" for path, problem in fields)
    return adapter_error(code, message, False, fields)


def from_field_error(e: FieldError, code: str = "invalid_payload") -> Err:
    return adapter_error(code, str(e), False, [(e.path, e.problem)])


def item(dedup_key: str, kind: str, payload, tenant_kind: Optional[str] = None,
         tenant_key: Optional[str] = None) -> types.Item:
    """An item; `payload` (bytes, str or a JSON-able value) comes back to map_to_domain."""
    if not isinstance(payload, (bytes, bytearray, str)):
        payload = to_json(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    tenant = types.TenantRef(kind=tenant_kind, key=tenant_key) if tenant_kind and tenant_key else None
    return types.Item(dedup_key=dedup_key, tenant=tenant, kind=kind, payload=bytes(payload))


def lead(source: str, external_id: str, *, form_id=None, ad_id=None, campaign_id=None,
         full_name=None, email=None, phone=None, fields=None) -> types.DomainOp:
    """A create-lead operation; `fields` (a dict) is every other field."""
    return types.DomainOp_CreateLead(types.Lead(
        source=source, external_id=external_id, form_id=form_id, ad_id=ad_id,
        campaign_id=campaign_id, full_name=full_name, email=email, phone=phone,
        fields_json=to_json(fields or {})))


def ignore(reason: str) -> types.DomainOp:
    """Nothing to do for this item; the reason is recorded on its event."""
    return types.DomainOp_Ignore(reason)


def text_response(status: int, body: str) -> types.Response:
    return types.Response(status=status, headers=[("content-type", "text/plain; charset=utf-8")],
                          body=body.encode())


def json_response(status: int, value) -> types.Response:
    return types.Response(status=status, headers=[("content-type", "application/json")],
                          body=json.dumps(value).encode())


def respond_records(records: List[types.RecordRef]) -> types.Response:
    """The default intake answer, as the Rust SDK's: 200 with {"id", "status"} for
    one record, {"records": [...]} for several."""
    if len(records) == 1:
        return json_response(200, {"id": records[0].id, "status": records[0].status})
    return json_response(200, {"records": [_record_json(r) for r in records]})


def _record_json(r: types.RecordRef) -> dict:
    out = {"kind": r.kind, "id": r.id, "status": r.status}
    if r.external_id is not None:
        out["external_id"] = r.external_id
    if r.error is not None:
        out["error"] = r.error
    return out


class Adapter(exports.Plugin):
    """Defaults for what an adapter without custom routes or an outbox does not use."""

    def handle(self, req: types.Request) -> Optional[types.Response]:
        return None

    def deliver(self, kind: str, rows: List[plugin_types.OutboxRow]) -> List[plugin_types.RowOutcome]:
        raise Err(plugin_types.BatchError_Stop(
            f"this adapter declares no outbox kind {kind!r}; check the plugin's manifest and version"))

    def respond(self, req: types.Request, records: List[types.RecordRef]) -> types.Response:
        return respond_records(records)
