"""Validate what a stand-in server answers against the vendor's own OpenAPI description (for the tests and
`bench/ticket_sync.py --validate`; needs the test extras: `pip install -e '.[test]'`).

`ResponseValidator(spec_path).errors(method, path, status, body)` lists the ways a JSON response body
breaks the schema the spec gives for (method, path, status); `check(...)` raises on the first problem.
`path` is a template from the spec (`/rest/api/3/issue/{issueIdOrKey}`) or a concrete request path
(`/rest/api/2/issue/CL-1`), which is matched against the templates. `$ref`s resolve against the whole
file through `referencing`, and bodies are checked with `openapi-schema-validator`'s OAS 3.0 validator.

The known quirks of the descriptions (/work/shared/specs/README.md) are applied to the spec on loading:

- `nullable: true` next to an `enum` without `null`: `null` is added to the enum (real responses carry it);
- `additionalProperties: false` is dropped wherever properties are listed (real servers add fields); on a
  schema without properties (GitHub's `empty-object`, told apart from a user in a `oneOf`) it stays;
- Jira v2 vs v3: `/rest/api/2/...` paths are checked against the `/rest/api/3/...` description, and the
  rich-text fields (`description`, `body`, `comment`, `environment`, `text`) accept a plain string where
  v3 expects an Atlassian Document Format object.

A status the spec does not document is an error for 2xx and ignored for error statuses (429, 500, 503
are served by every real API but rarely written down).

Swagger 2.0 descriptions (Slack's) are read too: the schema is `responses.<code>.schema`, `$ref`s point into
`definitions`, and bodies are checked with a Draft 4 validator (Swagger 2.0 schemas are Draft 4, with
`type: "null"` that OAS 3.0 does not know). Slack's own conventions on top of its description:

- every Slack method takes POST as well as the GET its description names (slack-sdk always POSTs): a POST
  to a path described only for GET is checked against the GET's responses;
- Slack answers errors with HTTP 200 and `{"ok": false, "error": ...}`: a 200 body whose `ok` is false is
  checked against the `default` (error) response;
- `minItems: 1` on the response's arrays is dropped: a page of history can be empty (`"messages": []`);
- the errors every method can answer (`ratelimited`, `invalid_cursor`, `internal_error`, `fatal_error`,
  `service_unavailable`, `token_revoked`, `token_expired`) are added to each method's `error` enum.

Errata of the PagerDuty description: `AcknowledgeLogEntry` names its type `acknowledgement_log_entry`,
while `LogEntry` (and the real API) say `acknowledge_log_entry`; both are accepted. `Channel` is a `oneOf`
of variants told apart only by their descriptions ("Will be `api`"), so any real channel matches several and
fails `oneOf`: it is read as the `anyOf` it means.

Errata of the GitHub description: a few error responses (`PUT /repos/{owner}/{repo}/contents/{path}` 409,
`POST /repos/{owner}/{repo}/git/blobs` 422) are a `oneOf` of `basic-error` and `repository-rule-violation-error`,
whose properties are all optional and a superset of the first's: every real error body matches both and fails
`oneOf`. They are read as the `anyOf` they mean.
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_URI = "urn:closeloop:spec"
# The official API descriptions live in ../shared/specs beside the checkout (CI clones beside it too);
# CLOSELOOP_SPECS_DIR points elsewhere.
SPECS_DIR = Path(os.environ.get("CLOSELOOP_SPECS_DIR")
                 or Path(__file__).resolve().parents[2].parent / "shared" / "specs")
RICH_TEXT_FIELDS = frozenset({"description", "body", "comment", "environment", "text"})
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class SpecViolation(AssertionError):
    pass


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _is_plain_string_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "string"


def _relax(node: Any) -> Any:
    """The spec with the README's quirks applied (on a copy)."""
    if isinstance(node, list):
        return [_relax(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _relax(v) for k, v in node.items()}
    if out.get("additionalProperties") is False and out.get("properties"):  # kept on an empty object: {} only
        del out["additionalProperties"]
    if out.get("nullable") is True and isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    props = out.get("properties")
    if isinstance(props, dict) and all(isinstance(v, dict) for v in props.values()):
        for name in RICH_TEXT_FIELDS & props.keys():
            sub = props[name]
            if sub and not _is_plain_string_schema(sub) and ("$ref" in sub or "allOf" in sub or "oneOf" in sub
                                                             or "anyOf" in sub or sub.get("type") == "object"):
                props[name] = {"anyOf": [sub, {"type": "string"}]}
    return out


SLACK_COMMON_ERRORS = ("ratelimited", "invalid_cursor", "internal_error", "fatal_error", "service_unavailable",
                       "token_revoked", "token_expired")


def _swagger2_quirks(node: Any) -> Any:
    """Slack's conventions (module docstring) applied to its Swagger 2.0 description (on a copy)."""
    if isinstance(node, list):
        return [_swagger2_quirks(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _swagger2_quirks(v) for k, v in node.items() if not (k == "minItems" and v == 1)}
    props = out.get("properties")
    if (isinstance(props, dict) and isinstance(props.get("ok"), dict)
            and props["ok"].get("$ref") == "#/definitions/defs_ok_false"
            and isinstance(props.get("error"), dict) and isinstance(props["error"].get("enum"), list)):
        props["error"]["enum"] += [e for e in SLACK_COMMON_ERRORS if e not in props["error"]["enum"]]
    return out


def _errata(spec: dict[str, Any]) -> dict[str, Any]:
    """Known mistakes of the vendors' descriptions (see the module docstring), fixed where present."""
    ack = spec.get("components", {}).get("schemas", {}).get("AcknowledgeLogEntry", {})
    for part in ack.get("allOf", []):
        enum = part.get("properties", {}).get("type", {}).get("enum") if isinstance(part, dict) else None
        if enum == ["acknowledgement_log_entry"]:
            enum.insert(0, "acknowledge_log_entry")
    rule_violation = "#/components/schemas/repository-rule-violation-error"
    for operations in spec.get("paths", {}).values():
        for operation in operations.values() if isinstance(operations, dict) else ():
            responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
            for response in responses.values():
                for media in ((response.get("content") or {}).values() if isinstance(response, dict) else ()):
                    schema = media.get("schema") if isinstance(media, dict) else None
                    if isinstance(schema, dict) and any(isinstance(v, dict) and v.get("$ref") == rule_violation
                                                        for v in schema.get("oneOf", ())):
                        schema["anyOf"] = schema.pop("oneOf")
    channel = spec.get("components", {}).get("schemas", {}).get("Channel", {})
    if isinstance(channel.get("oneOf"), list) and any(v.get("title") == "WebsiteChannel" for v in channel["oneOf"]):
        channel["anyOf"] = channel.pop("oneOf")
    return spec


class ResponseValidator:
    def __init__(self, spec_path: str | Path, *, path_aliases: dict[str, str] | None = None) -> None:
        self.spec_path = Path(spec_path)
        raw = json.loads(self.spec_path.read_text())
        self.swagger2 = str(raw.get("swagger", "")).startswith("2.")
        self.spec = _errata(_relax(_swagger2_quirks(raw) if self.swagger2 else raw))
        # Jira: the client speaks v2, the description is v3 (same resources).
        self.path_aliases = path_aliases if path_aliases is not None else {"/rest/api/2/": "/rest/api/3/"}
        self.registry = Registry().with_resource(SPEC_URI,
                                                 Resource.from_contents(self.spec, default_specification=DRAFT4))
        self._validators: dict[str, Any] = {}

    @cached_property
    def _templates(self) -> list[tuple[re.Pattern[str], str]]:
        items = []
        for template in self.spec["paths"]:
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            items.append((re.compile(pattern), template))
        # literal segments win over parameters: /search/jql before /search/{id}
        items.sort(key=lambda it: (it[1].count("{"), -len(it[1])))
        return items

    def template_for(self, path: str) -> str:
        path = path.split("?", 1)[0]
        for old, new in self.path_aliases.items():
            if path.startswith(old):
                path = new + path[len(old):]
        if path in self.spec["paths"]:
            return path
        for pattern, template in self._templates:
            if pattern.match(path):
                return template
        raise SpecViolation(f"no path in {self.spec_path.name} matches {path}")

    def _validator(self, pointer: str) -> Any:
        if pointer not in self._validators:
            cls = Draft4Validator if self.swagger2 else OAS30Validator
            self._validators[pointer] = cls({"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry)
        return self._validators[pointer]

    def errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        template = self.template_for(path)
        operation = self.spec["paths"][template].get(method.lower())
        if operation is None and self.swagger2 and method.lower() == "post":
            operation = self.spec["paths"][template].get("get")  # Slack: POST works wherever GET does
            method = "get" if operation is not None else method
        where = f"{method.upper()} {path} -> {status}"
        if operation is None:
            return [f"{where}: {method.upper()} {template} is not in the spec"]
        responses = operation.get("responses", {})
        if (self.swagger2 and status == 200 and isinstance(body, dict) and body.get("ok") is False
                and "default" in responses):
            key: str | None = "default"  # Slack: errors are HTTP 200 with ok: false
            return self._check(where, template, method, key, responses[key].get("schema"), body)
        key = str(status) if str(status) in responses else (f"{str(status)[0]}XX" if f"{str(status)[0]}XX" in responses
                                                          else ("default" if "default" in responses else None))
        if key is None:
            return [] if status >= 400 else [f"{where}: status {status} is not documented for {template}"]
        if self.swagger2:
            return self._check(where, template, method, key, responses[key].get("schema"), body)
        content = responses[key].get("content") or {}
        media = next((m for m in content if "json" in m), None)
        if media is None or "schema" not in content[media]:
            return []  # nothing described to check against
        pointer = "/" + "/".join(_escape(t) for t in ("paths", template, method.lower(), "responses", key,
                                                       "content", media, "schema"))
        return [f"{where}: {'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
                for e in self._validator(pointer).iter_errors(copy.deepcopy(body))]

    def _check(self, where: str, template: str, method: str, key: str, schema: Any, body: Any) -> list[str]:
        """Swagger 2.0: the schema sits at responses.<key>.schema."""
        if schema is None:
            return []
        pointer = "/" + "/".join(_escape(t) for t in ("paths", template, method.lower(), "responses", key, "schema"))
        return [f"{where}: {'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
                for e in self._validator(pointer).iter_errors(copy.deepcopy(body))]

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        errors = self.errors(method, path, status, body)
        if errors:
            raise SpecViolation("\n".join(errors))
