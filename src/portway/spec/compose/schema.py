"""Compose files checked against the Compose Specification's JSON Schema.

The schema is vendored as data (``compose_spec.json``: Apache-2.0, from the
Compose Specification project, as Debian's docker-compose 1.29.2 ships it;
see docs/compose.md). That schema predates keys the Compose Specification
added later and that real files use (compose-go's golden files: ``name``,
``include``, ``post_start``, ``depends_on.required``, string ``published``
ports, ...). ``NEWER_KEYS`` lists each one explicitly and the schema is
widened for exactly those when it is loaded, so the vendored file stays as
published and every widening is visible here. Keys the widening admits with
any value are typed by portway's own key table (``keys.SERVICE_KEYS``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft201909Validator  # type: ignore[import-untyped]

from portway.errors import Issue
from portway.spec.compose.source import ComposeFile
from portway.spec.schema_errors import explain, format_path

__all__ = ["NEWER_KEYS", "SCHEMA_FILE", "schema_issues"]

SCHEMA_FILE = Path(__file__).with_name("compose_spec.json")

_ANY: dict[str, Any] = {}
_INT_OR_STRING = {"type": ["integer", "string"]}
_BOOLEAN = {"type": "boolean"}

#: (JSON pointer of an object schema's "properties", key, its schema): keys of
#: the current Compose Specification that the vendored 1.29-era schema lacks
NEWER_KEYS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    # top level: project name, include (portway resolves it), AI models
    ("/properties", "name", {"type": "string"}),
    ("/properties", "include", _ANY),
    ("/properties", "models", {"type": "object"}),
    # service keys added since 1.29 (portway's key table types them)
    *(
        ("/definitions/service/properties", key, _ANY)
        for key in (
            "annotations",
            "attach",
            "cgroup",
            "develop",
            "gpus",
            "label_file",
            "models",
            "post_start",
            "pre_stop",
            "provider",
            "use_api_socket",
            "uts",
        )
    ),
    # build: BuildKit-era options (portway builds nothing; the key is dropped)
    *(
        ("/definitions/service/properties/build/oneOf/1/properties", key, _ANY)
        for key in (
            "additional_contexts",
            "ssh",
            "secrets",
            "tags",
            "platforms",
            "privileged",
            "no_cache",
            "pull",
            "cache_to",
            "dockerfile_inline",
            "ulimits",
            "entitlements",
        )
    ),
    # ports: published may be a string (a range such as "8000-8010"), and
    # ports gained name, app_protocol and host_ip
    ("/definitions/service/properties/ports/items/oneOf/2/properties", "published", _INT_OR_STRING),
    ("/definitions/service/properties/ports/items/oneOf/2/properties", "target", _INT_OR_STRING),
    ("/definitions/service/properties/ports/items/oneOf/2/properties", "name", {"type": "string"}),
    (
        "/definitions/service/properties/ports/items/oneOf/2/properties",
        "app_protocol",
        {"type": "string"},
    ),
    (
        "/definitions/service/properties/ports/items/oneOf/2/properties",
        "host_ip",
        {"type": "string"},
    ),
    # depends_on: required and restart (condition became optional, below)
    (
        "/definitions/service/properties/depends_on/oneOf/1/patternProperties/^[a-zA-Z0-9._-]+$"
        "/properties",
        "required",
        _BOOLEAN,
    ),
    (
        "/definitions/service/properties/depends_on/oneOf/1/patternProperties/^[a-zA-Z0-9._-]+$"
        "/properties",
        "restart",
        _BOOLEAN,
    ),
    # long volume syntax: sizes as strings, subpath, create_host_path, selinux
    (
        "/definitions/service/properties/volumes/items/oneOf/1/properties/tmpfs/properties",
        "size",
        _INT_OR_STRING,
    ),
    (
        "/definitions/service/properties/volumes/items/oneOf/1/properties/tmpfs/properties",
        "mode",
        _INT_OR_STRING,
    ),
    (
        "/definitions/service/properties/volumes/items/oneOf/1/properties/volume/properties",
        "subpath",
        {"type": "string"},
    ),
    (
        "/definitions/service/properties/volumes/items/oneOf/1/properties/bind/properties",
        "create_host_path",
        _BOOLEAN,
    ),
    (
        "/definitions/service/properties/volumes/items/oneOf/1/properties/bind/properties",
        "selinux",
        {"type": "string"},
    ),
    # healthcheck.start_interval, deploy's pids limit
    ("/definitions/healthcheck/properties", "start_interval", {"type": "string"}),
    (
        "/definitions/deployment/properties/resources/properties/limits/properties",
        "pids",
        _INT_OR_STRING,
    ),
    # secrets and configs from an environment variable; configs inline
    ("/definitions/secret/properties", "environment", {"type": "string"}),
    ("/definitions/config/properties", "environment", {"type": "string"}),
    ("/definitions/config/properties", "content", {"type": "string"}),
)


def _at(schema: dict[str, Any], pointer: str) -> Any:
    node: Any = schema
    for part in pointer.strip("/").split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


@cache
def _validator() -> Any:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    for pointer, key, sub in NEWER_KEYS:
        _at(schema, pointer)[key] = sub
    # newer files leave condition out (it defaults to service_started)
    _at(
        schema,
        "/definitions/service/properties/depends_on/oneOf/1/patternProperties/^[a-zA-Z0-9._-]+$",
    ).pop("required", None)
    # env_file entries may be {path, required} since Compose 2.24
    _at(schema, "/definitions/service/properties")["env_file"] = {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "object"}]}},
        ]
    }
    return Draft201909Validator(schema)


def schema_issues(source: ComposeFile) -> list[Issue]:
    """Every place where the file (after interpolation) breaks the Compose
    schema, as issues with file, line and key path (``services.web.ports[1]``)."""
    issues = []
    for error in sorted(_validator().iter_errors(source.data), key=lambda e: list(e.path)):
        path, message, hint = explain(error)
        where = format_path(path)
        issues.append(source.issue(f"{message} (Compose schema)", where, hint))
    return issues
