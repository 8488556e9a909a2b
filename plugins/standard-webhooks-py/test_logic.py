"""Native unit tests of the adapter's logic: `python3 -m unittest` (no host needed)."""

import base64
import hashlib
import hmac
import unittest

import logic
from portico_sdk import FieldError, SignatureError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = (b'{"type":"lead.created","timestamp":"2026-11-28T12:00:00Z","data":{"id":"L-1",'
        b'"source_key":"acme-site","full_name":"Ana Silva","email":"ana@example.com",'
        b'"phone":"+5511900000000","fields":{"city":"Recife"}}}')


def sign(msg_id, ts, body):
    key = base64.b64decode(SECRET[len("whsec_"):])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(msg_id, ts, sig):
    values = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}
    return values.get


class VerifyTest(unittest.TestCase):
    def test_the_spec_example_verifies(self):
        h = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
             "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}.get
        logic.verify(h, b'{"test": 2432232314}', [SECRET], 1614265330)

    def test_a_rotated_secret_and_several_signatures_verify(self):
        now = 1_800_000_000
        sig = "v1,bm90IGl0 " + sign("msg_1", now, BODY)
        logic.verify(headers("msg_1", now, sig), BODY, ["whsec_aGkh", SECRET], now + 10)

    def test_tampering_and_stale_timestamps_are_refused(self):
        now = 1_800_000_000
        sig = sign("msg_1", now, BODY)
        cases = [
            (headers("msg_1", now, sig), b"{}", [SECRET], now, "no v1 signature"),
            (headers("msg_2", now, sig), BODY, [SECRET], now, "no v1 signature"),
            (headers("msg_1", now, sig), BODY, [SECRET], now + 301, "-301 s from now"),
            (headers("msg_1", now, sig), BODY, [], now, "no signing secret"),
            ({}.get, BODY, [SECRET], now, "missing webhook-id"),
            (headers("msg_1", "soon", sig), BODY, [SECRET], now, "unix seconds"),
        ]
        for h, body, secrets, at, expected in cases:
            with self.assertRaises(SignatureError) as caught:
                logic.verify(h, body, secrets, at)
            self.assertIn(expected, str(caught.exception))


class ParseTest(unittest.TestCase):
    def test_lead_created_maps_to_a_lead(self):
        parsed = logic.parse(BODY, "msg_1")
        self.assertEqual((parsed.dedup_key, parsed.tenant_key, parsed.kind),
                         ("lead:L-1", "acme-site", "lead"))
        lead = logic.map_lead(parsed.payload)
        self.assertEqual(lead["external_id"], "L-1")
        self.assertEqual(lead["full_name"], "Ana Silva")
        self.assertEqual(lead["fields"], {"city": "Recife"})

    def test_other_types_are_ignored_and_bad_shapes_named(self):
        other = logic.parse(b'{"type":"lead.deleted","data":{"id":"1"}}', "msg_9")
        self.assertEqual((other.kind, other.dedup_key), ("ignored", "msg:msg_9"))
        with self.assertRaises(FieldError) as caught:
            logic.parse(b'{"type":"lead.created","data":{"id":"1"}}', "m")
        self.assertEqual(str(caught.exception), "data.source_key is missing")
        with self.assertRaises(FieldError) as caught:
            logic.parse(b'{"type":', "m")
        self.assertEqual(caught.exception.path, "$")
        with self.assertRaises(FieldError) as caught:
            logic.map_lead(b'{"id":"1","fields":[1]}')
        self.assertEqual(caught.exception.path, "data.fields")


if __name__ == "__main__":
    unittest.main()
