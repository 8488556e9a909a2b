"""Standard Webhooks adapter in Python: a thin component wrapper over `logic`.

Mount: /api/integrations/<mount>/webhook. Secret: `signing_secret` (`whsec_...`,
comma-separated for rotation). Tenant: lead_sources kind `standard`, key =
`data.source_key`.
"""

import time

import logic
from portico_sdk import FieldError, SignatureError, header
from portico_sdk import host
from portico_sdk.adapter import (
    Adapter, accept, from_field_error, ignore, item, lead, reject, types, webhook_route)


class Plugin(Adapter):
    def manifest(self) -> types.PluginManifest:
        warnings = []
        if not host.secret_list("signing_secret"):
            warnings.append("the signing secret is not set: every POST will be refused with 401")
        return types.PluginManifest(name="standard-webhooks-py", version="0.1.0",
                                    routes=[webhook_route()], outbox=[], warnings=warnings)

    def verify(self, req: types.Request) -> types.Verdict:
        try:
            logic.verify(lambda name: header(req, name), req.body,
                         host.secret_list("signing_secret"), int(time.time()))
        except SignatureError as e:
            return reject(str(e))
        return accept()

    def parse(self, req: types.Request):
        try:
            parsed = logic.parse(req.body, header(req, "webhook-id") or "")
        except FieldError as e:
            raise from_field_error(e)
        return [item(parsed.dedup_key, parsed.kind, parsed.payload,
                     logic.TENANT_KIND, parsed.tenant_key)]

    def map_to_domain(self, it: types.Item):
        if it.kind == "ignored":
            return [ignore(it.payload.decode("utf-8", "replace"))]
        try:
            out = logic.map_lead(it.payload)
        except FieldError as e:
            raise from_field_error(e)
        return [lead(logic.LEAD_SOURCE, out["external_id"], full_name=out["full_name"],
                     email=out["email"], phone=out["phone"], fields=out["fields"])]
