"""JSON Schema of a workload file, for editors and ``portway schema``.

Generated from the pydantic model with the file's camelCase names, then
adjusted where the model accepts more than its Python type says: quantities
such as ``cpu: 500m`` and ``memory: 64Mi`` are strings in files.
"""

from __future__ import annotations

from typing import Any

from portway.spec import model
from portway.spec.model import API_VERSION, KIND_WORKLOAD, Workload

__all__ = ["JSON_SCHEMA_DIALECT", "SCHEMA_ID", "workload_json_schema"]

SCHEMA_ID = "https://portway.dev/schemas/v1/workload.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_CPU_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?m?\s*$"
_SIZE_PATTERN = model._QUANTITY_RE.pattern

# (definition, property) -> pattern of the string form the validator also accepts
_QUANTITIES = {
    ("Resources", "cpu"): _CPU_PATTERN,
    ("Resources", "memory"): _SIZE_PATTERN,
    ("Volume", "sizeLimit"): _SIZE_PATTERN,
}


def workload_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one ``Workload`` document."""
    generated = Workload.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Any] = generated.get("$defs", {})
    for (definition, prop), pattern in _QUANTITIES.items():
        schema = defs[definition]["properties"][prop]
        schema["anyOf"] = [
            *schema.get("anyOf", [{"type": schema.pop("type", "number")}]),
            {"type": "string", "pattern": pattern},
        ]
    _drop_property_titles(generated)
    for definition in defs.values():
        _drop_property_titles(definition)
    generated.pop("title", None)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "Portway Workload",
        "description": (
            f"One workload, `apiVersion: {API_VERSION}`, `kind: {KIND_WORKLOAD}`. "
            "A file may hold several, separated by `---`."
        ),
        **generated,
    }


def _drop_property_titles(schema: dict[str, Any]) -> None:
    """Pydantic titles properties from Python names ("Containerport"); the key says it all."""
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
