"""Validate JSON bodies against a Google API discovery document (the `calendar.v3.json` that google-api-python-client
ships in googleapiclient/discovery_cache/documents/), the way closeloop/standins/spec.py does for OpenAPI files.

    validator = DiscoveryValidator.shipped("calendar", "v3")
    validator.check("POST", "/calendar/v3/freeBusy", 200, body)      # raises SpecViolation
    validator.request_errors("POST", "/calendar/v3/calendars/x/events", body)

A path is matched against the document's methods (`servicePath` + `path`, e.g. `calendar/v3/` +
`calendars/{calendarId}/events/{eventId}`); the method's `response.$ref` schema checks a 2xx body, its
`request.$ref` a request body. A method with no response (events.delete) must answer without a body. An error
status (4xx, 5xx) is checked against Google's JSON error envelope (`{"error": {"code", "message", "errors",
"status"}}`), which discovery documents do not describe (GOOGLE_ERROR below, from Google's API design guide).

A discovery schema becomes a JSON Schema (Draft 7), one definition per `schemas` entry:
- `$ref: "Event"` -> `#/definitions/Event`; `type: "any"` -> any value;
- `properties` -> properties; with `strict` (the default) an object that lists its properties and has no
  `additionalProperties` takes no other field: a stand-in answers only what the document describes, so a
  misspelt field fails. `additionalProperties: {schema}` (a map, e.g. FreeBusyResponse.calendars) checks each
  value;
- `required: true` on a property, and the properties whose `annotations.required` names the method (Event's
  start and end for calendar.events.insert and update), are required (the latter for request bodies);
- `format`: `date-time` must be RFC 3339 with an offset or Z, `date` YYYY-MM-DD, `int32`/`uint32` integers in
  range, `int64`/`uint64` decimal strings (discovery's convention: 64-bit integers travel as strings);
- `enum`, `pattern`, `minimum`, `maximum` as written.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, FormatChecker

from closeloop.standins.spec import SpecViolation

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

# Google's error envelope (https://cloud.google.com/apis/design/errors#http_mapping, and the `errors` list of the
# older "global" domain that Calendar still sends).
GOOGLE_ERROR: dict[str, Any] = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message"], "additionalProperties": False,
        "properties": {
            "code": {"type": "integer", "minimum": 400, "maximum": 599},
            "message": {"type": "string"},
            "status": {"type": "string", "pattern": "^[A-Z_]+$"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["reason"], "additionalProperties": False,
                "properties": {k: {"type": "string"} for k in ("domain", "reason", "message", "location",
                                                                 "locationType")}}},
            "details": {"type": "array", "items": {"type": "object"}},
        }}},
}


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)) and date.fromisoformat(value) is not None
    except ValueError:
        return False


FORMATS = FormatChecker(formats=())
FORMATS.checks("date-time")(_date_time)
FORMATS.checks("date")(_date)
FORMATS.checks("int64")(lambda v: not isinstance(v, str) or re.fullmatch(r"-?\d+", v) is not None)
FORMATS.checks("uint64")(lambda v: not isinstance(v, str) or re.fullmatch(r"\d+", v) is not None)
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1)}


def to_json_schema(node: dict[str, Any], *, method_id: str | None = None, strict: bool = True) -> dict[str, Any]:
    """One discovery schema as JSON Schema; `method_id` makes its `annotations.required` properties required."""
    if "$ref" in node:
        return {"$ref": f"#/definitions/{node['$ref']}"}
    out: dict[str, Any] = {}
    kind = node.get("type")
    if kind and kind != "any":
        out["type"] = kind
    fmt = node.get("format")
    if fmt in INT_RANGES and kind == "integer":
        out["minimum"], out["maximum"] = INT_RANGES[fmt]
    elif fmt:
        out["format"] = fmt
    for key in ("enum", "pattern"):
        if key in node:
            out[key] = node[key]
    for key in ("minimum", "maximum"):
        if key in node:
            out[key] = float(node[key])
    if "items" in node:
        out["items"] = to_json_schema(node["items"], method_id=method_id, strict=strict)
    props = node.get("properties")
    if isinstance(props, dict):
        out["properties"] = {k: to_json_schema(v, method_id=method_id, strict=strict) for k, v in props.items()}
        required = [k for k, v in props.items()
                    if v.get("required") is True or (method_id and method_id in v.get("annotations", {})
                                                     .get("required", []))]
        if required:
            out["required"] = required
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"], method_id=method_id,
                                                     strict=strict)
    elif strict and isinstance(props, dict):
        out["additionalProperties"] = False
    return out


def shipped_document(api: str, version: str) -> dict[str, Any]:
    """The discovery document google-api-python-client ships for `api` `version`."""
    import googleapiclient

    path = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / f"{api}.{version}.json"
    return dict(json.loads(path.read_text()))


class DiscoveryValidator:
    def __init__(self, document: dict[str, Any], *, strict: bool = True) -> None:
        self.document = document
        self.strict = strict
        self.service_path = "/" + document["servicePath"].strip("/") + "/"
        self._validators: dict[tuple[str, str | None], Draft7Validator] = {}

    @classmethod
    def shipped(cls, api: str, version: str, *, strict: bool = True) -> DiscoveryValidator:
        return cls(shipped_document(api, version), strict=strict)

    @cached_property
    def methods(self) -> list[tuple[str, re.Pattern[str], dict[str, Any]]]:
        """(HTTP method, path regex, method description) of every method, literal segments first."""
        found: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []

        def walk(resources: dict[str, Any]) -> None:
            for resource in resources.values():
                for method in resource.get("methods", {}).values():
                    template = self.service_path + method["path"]
                    pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
                    found.append((method["httpMethod"], re.compile(pattern), method))
                walk(resource.get("resources", {}))

        walk(self.document.get("resources", {}))
        found.sort(key=lambda m: m[2]["path"].count("{"))
        return found

    def method_for(self, http_method: str, path: str) -> dict[str, Any]:
        path = path.split("?", 1)[0]
        for verb, pattern, method in self.methods:
            if verb == http_method.upper() and pattern.match(path):
                return method
        raise SpecViolation(f"no method of {self.document['id']} is {http_method.upper()} {path}")

    def _validator(self, schema_name: str | None, method_id: str | None) -> Draft7Validator:
        key = (schema_name, method_id)
        if key not in self._validators:
            definitions = {name: to_json_schema(s, method_id=method_id, strict=self.strict)
                           for name, s in self.document["schemas"].items()}
            root = {"$ref": f"#/definitions/{schema_name}"} if schema_name else copy.deepcopy(GOOGLE_ERROR)
            root["definitions"] = definitions
            Draft7Validator.check_schema(root)
            self._validators[key] = Draft7Validator(root, format_checker=FORMATS)
        return self._validators[key]

    def schema_errors(self, schema_name: str | None, body: Any, *, method_id: str | None = None,
                      where: str = "") -> list[str]:
        """How `body` breaks `schemas[schema_name]` (None: Google's error envelope)."""
        prefix = f"{where}: " if where else ""
        return [f"{prefix}{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
                for e in self._validator(schema_name, method_id).iter_errors(body)]

    def errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        where = f"{method.upper()} {path.split('?', 1)[0]} -> {status}"
        described = self.method_for(method, path)
        if status >= 400:
            return self.schema_errors(None, body, where=where)
        if not 200 <= status < 300:
            return [f"{where}: status {status} is not an answer of {described['id']}"]
        response = (described.get("response") or {}).get("$ref")
        if response is None:
            return [] if body is None else [f"{where}: {described['id']} answers no body, got one"]
        return self.schema_errors(response, body, where=where)

    def request_errors(self, method: str, path: str, body: Any) -> list[str]:
        """How a request body breaks the method's `request.$ref` (with the method's required properties)."""
        described = self.method_for(method, path)
        request = (described.get("request") or {}).get("$ref")
        if request is None:
            return [] if body is None else [f"{described['id']} takes no body"]
        return self.schema_errors(request, body, method_id=described["id"], where=described["id"])

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        errors = self.errors(method, path, status, body)
        if errors:
            raise SpecViolation("\n".join(errors))
