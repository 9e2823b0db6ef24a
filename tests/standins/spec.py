"""Validate what a stand-in server answers against the vendor's own OpenAPI description.

`ResponseValidator(spec_path).errors(method, path, status, body)` lists the ways a JSON response body
breaks the schema the spec gives for (method, path, status); `check(...)` raises on the first problem.
`path` is a template from the spec (`/rest/api/3/issue/{issueIdOrKey}`) or a concrete request path
(`/rest/api/2/issue/CL-1`), which is matched against the templates. `$ref`s resolve against the whole
file through `referencing`, and bodies are checked with `openapi-schema-validator`'s OAS 3.0 validator.

The known quirks of the descriptions (/work/shared/specs/README.md) are applied to the spec on loading:

- `nullable: true` next to an `enum` without `null`: `null` is added to the enum (real responses carry it);
- `additionalProperties: false` is dropped everywhere (real servers add fields);
- Jira v2 vs v3: `/rest/api/2/...` paths are checked against the `/rest/api/3/...` description, and the
  rich-text fields (`description`, `body`, `comment`, `environment`, `text`) accept a plain string where
  v3 expects an Atlassian Document Format object.

A status the spec does not document is an error for 2xx and ignored for error statuses (429, 500, 503
are served by every real API but rarely written down).
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

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
    if out.get("additionalProperties") is False:
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


class ResponseValidator:
    def __init__(self, spec_path: str | Path, *, path_aliases: dict[str, str] | None = None) -> None:
        self.spec_path = Path(spec_path)
        raw = json.loads(self.spec_path.read_text())
        self.spec = _relax(raw)
        # Jira: the client speaks v2, the description is v3 (same resources).
        self.path_aliases = path_aliases if path_aliases is not None else {"/rest/api/2/": "/rest/api/3/"}
        self.registry = Registry().with_resource(SPEC_URI, Resource.from_contents(self.spec, default_specification=DRAFT4))
        self._validators: dict[str, OAS30Validator] = {}

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

    def _validator(self, pointer: str) -> OAS30Validator:
        if pointer not in self._validators:
            self._validators[pointer] = OAS30Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry)
        return self._validators[pointer]

    def errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        template = self.template_for(path)
        operation = self.spec["paths"][template].get(method.lower())
        where = f"{method.upper()} {path} -> {status}"
        if operation is None:
            return [f"{where}: {method.upper()} {template} is not in the spec"]
        responses = operation.get("responses", {})
        key = str(status) if str(status) in responses else (f"{str(status)[0]}XX" if f"{str(status)[0]}XX" in responses
                                                          else ("default" if "default" in responses else None))
        if key is None:
            return [] if status >= 400 else [f"{where}: status {status} is not documented for {template}"]
        content = responses[key].get("content") or {}
        media = next((m for m in content if "json" in m), None)
        if media is None or "schema" not in content[media]:
            return []  # nothing described to check against
        pointer = "/" + "/".join(_escape(t) for t in ("paths", template, method.lower(), "responses", key,
                                                       "content", media, "schema"))
        return [f"{where}: {'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
                for e in self._validator(pointer).iter_errors(copy.deepcopy(body))]

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        errors = self.errors(method, path, status, body)
        if errors:
            raise SpecViolation("\n".join(errors))
