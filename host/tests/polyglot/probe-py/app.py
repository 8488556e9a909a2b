"""A test adapter: GET /probe?to=allowed|denied exercises the Python guest
library's host calls (config, log, cache, outbound) inside a component."""

from portico_sdk import host, query_param
from portico_sdk.adapter import Adapter, accept, json_response, types
from portico_sdk.outbound import OutboundError, send_json


class Plugin(Adapter):
    def manifest(self):
        route = types.Route(method="GET", path="probe", kind=types.RouteKind.CUSTOM,
                            auth=types.RouteAuth.NONE)
        return types.PluginManifest(name="probe-py", version="0.1.0", routes=[route],
                                    outbox=[], warnings=[])

    def verify(self, req):
        return accept()

    def parse(self, req):
        return []

    def map_to_domain(self, item):
        return []

    def handle(self, req):
        hits = int(host.cache_get("hits") or "0") + 1
        host.cache_put("hits", str(hits), 60_000)
        host.info(f"probe call {hits}")
        url = host.config("target_url") if query_param(req.query, "to") == "allowed" \
            else "http://203.0.113.9/denied"
        try:
            res = send_json("POST", url, {"hello": "from python"}, headers=[("x-probe", "py")],
                            timeout_ms=5000)
        except OutboundError as e:
            return json_response(502, {"error": e.kind, "message": e.message, "hits": hits})
        return json_response(200, {"status": res.status, "answer": res.json(),
                                   "content_type": res.header("Content-Type"), "hits": hits,
                                   "secret_set": host.secret("token") is not None})
