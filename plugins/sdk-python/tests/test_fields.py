"""The guest library's JSON helpers name the field that is wrong."""

import unittest

from portico_sdk import FieldError, at, obj_at, opt_str_at, parse_json, str_at


class FieldsTest(unittest.TestCase):
    DOC = parse_json(b'{"data":{"id":123456789012,"name":" ","tags":["a","b"],"n":null,"o":[]}}')

    def test_paths_reach_objects_and_arrays(self):
        self.assertEqual(str_at(self.DOC, "data.id"), "123456789012")
        self.assertEqual(at(self.DOC, "data.tags.1"), "b")
        self.assertIsNone(opt_str_at(self.DOC, "data.name"))
        self.assertIsNone(opt_str_at(self.DOC, "data.missing"))
        self.assertEqual(obj_at(self.DOC, "data.none"), {})

    def test_errors_name_the_path_and_the_problem(self):
        for call, path, problem in (
                (lambda: str_at(self.DOC, "data.email"), "data.email", "is missing"),
                (lambda: str_at(self.DOC, "data.n"), "data.n", "is missing"),
                (lambda: str_at(self.DOC, "data.tags"), "data.tags", "must be a string, not an array"),
                (lambda: at(self.DOC, "data.tags.9"), "data.tags.9", "is missing"),
                (lambda: obj_at(self.DOC, "data.o"), "data.o", "must be an object, not an array"),
                (lambda: parse_json(b"{"), "$", "is not valid JSON")):
            with self.assertRaises(FieldError) as caught:
                call()
            self.assertEqual(caught.exception.path, path)
            self.assertTrue(caught.exception.problem.startswith(problem), caught.exception.problem)
        with self.assertRaises(FieldError) as caught:
            parse_json(b"\xff")
        self.assertIn("UTF-8", str(caught.exception))


class StrictJsonTest(unittest.TestCase):
    def test_nan_deep_nesting_and_huge_numbers_are_named_errors(self):
        for raw in (b'{"id":NaN}', b'[1, Infinity]', b"[" * 100000, b"1" * 5000):
            with self.assertRaises(FieldError) as caught:
                parse_json(raw)
            self.assertEqual(caught.exception.path, "$")

    def test_to_json_matches_the_rust_adapters(self):
        from portico_sdk import to_json
        self.assertEqual(to_json({"z": "S\u00e3o Paulo", "a": {"y": 1, "b": 2}}),
                         '{"a":{"b":2,"y":1},"z":"S\u00e3o Paulo"}')


if __name__ == "__main__":
    unittest.main()
