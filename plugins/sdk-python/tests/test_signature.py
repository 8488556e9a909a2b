"""The guest library's signature helpers: `python3 -m unittest discover -s tests`."""

import unittest

from portico_sdk import (
    SignatureError, constant_time_eq, hmac_sha256_base64, hmac_sha256_hex, hub_challenge,
    standard_webhook_key, verify_hmac_base64, verify_hmac_hex, verify_hub_sha256,
    verify_standard_webhook)


class HmacTest(unittest.TestCase):
    def test_rfc_4231_case_2(self):
        self.assertEqual(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        self.assertEqual(hmac_sha256_base64(b"Jefe", b"what do ya want for nothing?"),
                         "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=")

    def test_hex_and_base64_checks(self):
        self.assertTrue(verify_hmac_hex("Jefe", b"what do ya want for nothing?",
                                        "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843"))
        self.assertFalse(verify_hmac_hex("Jefe", b"what do ya want", "5bdc"))
        self.assertTrue(verify_hmac_base64(b"Jefe", b"what do ya want for nothing?",
                                           "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="))
        self.assertTrue(constant_time_eq("abc", b"abc"))
        self.assertFalse(constant_time_eq("abc", "abd"))


class MetaTest(unittest.TestCase):
    BODY = b'{"object":"page"}'

    def test_hub_signature(self):
        verify_hub_sha256("s3cret", self.BODY, "sha256=" + hmac_sha256_hex(b"s3cret", self.BODY))
        for header, message in ((None, "missing X-Hub-Signature-256"),
                                ("md5=00", "must be sha256=<64 hex digits>"),
                                ("sha256=" + "0" * 64, "does not match")):
            with self.assertRaises(SignatureError) as caught:
                verify_hub_sha256("s3cret", self.BODY, header)
            self.assertIn(message, str(caught.exception))

    def test_secrets_rotate_and_each_is_checked(self):
        signature = "sha256=" + hmac_sha256_hex(b"s3cret", self.BODY)
        verify_hub_sha256(["old", "s3cret"], self.BODY, signature)
        with self.assertRaises(SignatureError) as caught:
            verify_hub_sha256([], self.BODY, signature)
        self.assertIn("app secret is not set", str(caught.exception))

    def test_handshake(self):
        query = "hub.mode=subscribe&hub.verify_token=tok%20en&hub.challenge=1158201444"
        self.assertEqual(hub_challenge(query, "tok en"), "1158201444")
        self.assertIsNone(hub_challenge(query, "other"))
        self.assertIsNone(hub_challenge(query, None))
        self.assertIsNone(hub_challenge("hub.mode=unsubscribe&hub.verify_token=x", "x"))


class StandardWebhooksTest(unittest.TestCase):
    SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    def test_the_spec_example(self):
        h = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
             "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}.get
        verify_standard_webhook(h, b'{"test": 2432232314}', [self.SECRET], 1614265330)
        with self.assertRaises(SignatureError):
            verify_standard_webhook(h, b'{"test": 2432232315}', [self.SECRET], 1614265330)

    def test_bad_secrets_and_huge_timestamps_are_named(self):
        with self.assertRaises(SignatureError) as caught:
            standard_webhook_key("whsec_***")
        self.assertIn("whsec_ followed by base64", str(caught.exception))
        h = {"webhook-id": "m", "webhook-timestamp": str(2**70), "webhook-signature": "v1,AA"}.get
        with self.assertRaises(SignatureError) as caught:
            verify_standard_webhook(h, b"{}", [self.SECRET], 1614265330)
        self.assertIn("at most 300 s", str(caught.exception))


class StandardWebhooksFormsTest(unittest.TestCase):
    def test_unpadded_secrets_signed_timestamps_and_empty_keys(self):
        self.assertEqual(standard_webhook_key("whsec_aGk"), b"hi")
        with self.assertRaises(SignatureError):
            standard_webhook_key("whsec_")
        body = b"{}"
        sig = "v1," + hmac_sha256_base64(b"hi", b"m.+1614265330." + body)
        h = {"webhook-id": "m", "webhook-timestamp": "+1614265330", "webhook-signature": sig}.get
        verify_standard_webhook(h, body, ["whsec_aGk"], 1614265330)
        for stamp in ("1_614_265_330", "\u0661\u0662"):
            h = {"webhook-id": "m", "webhook-timestamp": stamp, "webhook-signature": sig}.get
            with self.assertRaises(SignatureError) as caught:
                verify_standard_webhook(h, body, ["whsec_aGk"], 1614265330)
            self.assertIn("unix seconds", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
