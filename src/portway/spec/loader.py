"""Read workload files: multi-document YAML in, validated ``Workload`` (and
``Namespace`` policy) objects out. One file may mix both kinds.

Every problem becomes an :class:`~portway.errors.Issue` that says where it is
(file, document, field path in the file's camelCase names, line) and, when we
can guess, what was meant. All problems of all documents are reported in one
:class:`~portway.errors.SpecError`; nothing else leaves this module, whatever
the input text.

The YAML is composed with PyYAML's safe machinery, so node line numbers survive,
and then turned into plain data here. That is stricter than ``yaml.safe_load``:
anchors and aliases, duplicate keys, non-string keys and tags other than the
core scalar ones are refused. Timestamps (``2024-01-01``) stay strings, since
no field in the model is a date.
"""

from __future__ import annotations

import difflib
import inspect
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from portway.errors import Issue, PortwayError, SpecError
from portway.spec.model import API_VERSION, KIND_WORKLOAD, Workload
from portway.spec.namespace import KIND_NAMESPACE, Namespace

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_ISSUES",
    "MAX_NODES",
    "Loaded",
    "format_path",
    "line_of",
    "load_documents",
    "load_documents_text",
    "load_objects",
    "load_objects_text",
    "load_workloads",
    "load_workloads_text",
]

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Larger files are refused before parsing."""
MAX_NODES = 100_000
"""Most YAML nodes (scalars, lists, mappings) one file may hold, over all documents."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings one document may hold."""
MAX_ISSUES = 100
"""Issues beyond this many are summarised in one final issue."""

FieldPath = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT = (_TAG + t for t in ("str", "null", "bool", "int", "float"))
_TIMESTAMP, _MAP, _SEQ, _MERGE = (_TAG + t for t in ("timestamp", "map", "seq", "merge"))
_SCALAR_KIND = {_NULL: "a null", _BOOL: "a boolean", _INT: "an integer", _FLOAT: "a number"}

_HEADER_HINT = f"a workload starts with `apiVersion: {API_VERSION}` and `kind: {KIND_WORKLOAD}`"
#: the kinds a file may hold, each with its model
_KINDS: dict[str, type[Workload] | type[Namespace]] = {
    KIND_WORKLOAD: Workload,
    KIND_NAMESPACE: Namespace,
}
_KIND_HINT = " or ".join(f"`kind: {k}`" for k in _KINDS)
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


# --- public API ----------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """One validated document: its 1-based number, the object, and the line
    of each field path the file holds (``spec.volumes[2].source`` -> 14), so
    later checks (policy) can point at lines too."""

    document: int
    object: Workload | Namespace
    lines: dict[str, int]

    def line_of(self, path: str) -> int | None:
        return line_of(self.lines, path)


def line_of(lines: Mapping[str, int], path: str) -> int | None:
    """Line of field ``path`` (``spec.volumes[2].source``) in ``lines``, or of
    its nearest ancestor the file has (the field may have been left out)."""
    while True:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            return lines.get("")
        path = path[:cut]


def load_objects(path: str | Path) -> list[Loaded]:
    """Every document of the file at ``path``, workloads and namespaces.

    Raises :class:`SpecError` (and nothing else) if the file cannot be read,
    does not parse, holds nothing, or any document is invalid.
    """
    return load_objects_text(_read(path), str(path))


def load_objects_text(text: str, filename: str) -> list[Loaded]:
    """Like :func:`load_objects`; ``filename`` is used in messages only."""
    try:
        found = _load(text, filename)
    except PortwayError:
        raise
    except Exception as e:  # a bug here must still reach the user as a SpecError
        raise SpecError(
            Issue(f"internal error while loading workloads: {type(e).__name__}: {e}", file=filename)
        ) from e
    return [
        Loaded(doc.index, obj, {format_path(p): line for p, line in doc.lines.items()})
        for doc, obj in found
    ]


def load_workloads(path: str | Path) -> list[Workload]:
    """Read and validate every workload in the YAML file at ``path``.

    Raises :class:`SpecError` (and nothing else) if the file cannot be read,
    does not parse, holds no workload, or any document is invalid.
    """
    return [w for _, w in load_documents(path)]


def load_workloads_text(text: str, filename: str) -> list[Workload]:
    """Validate every workload in ``text``; ``filename`` is used in messages only."""
    return [w for _, w in load_documents_text(text, filename)]


def load_documents(path: str | Path) -> list[tuple[int, Workload]]:
    """Like :func:`load_workloads`, each workload with its 1-based document number."""
    return load_documents_text(_read(path), str(path))


def load_documents_text(text: str, filename: str) -> list[tuple[int, Workload]]:
    """Like :func:`load_workloads_text`, each workload with its 1-based document
    number. Namespace documents in the file are validated, then left out."""
    return [
        (item.document, item.object)
        for item in load_objects_text(text, filename)
        if isinstance(item.object, Workload)
    ]


def _read(path: str | Path) -> str:
    name = str(path)
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(Issue("file not found", file=name)) from None
    except IsADirectoryError:
        raise SpecError(Issue("is a directory, not a workload file", file=name)) from None
    except PermissionError:
        raise SpecError(Issue("permission denied: cannot read the file", file=name)) from None
    except (OSError, ValueError) as e:  # ValueError: e.g. a NUL byte in the path
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SpecError(Issue(f"cannot read the file: {reason}", file=name)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(_too_large(name))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError(
            Issue(
                f"the file is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})",
                file=name,
                line=line,
                hint="save the file as UTF-8",
            )
        ) from None


# --- reading YAML into data with line numbers ------------------------------


class _RefusedError(yaml.MarkedYAMLError):
    """YAML that parses but that we do not accept (aliases, bombs, deep nesting)."""


class _Loader(yaml.SafeLoader):
    """Safe loader whose composer refuses anchors, aliases and huge or deep documents.

    Without aliases a document cannot expand beyond the text, so counting nodes
    bounds the work; pure-Python PyYAML composes about 30k nodes a second.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def compose_document(self) -> Node | None:
        self._depth = 0
        return super().compose_document()

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        # peek_event is untyped in the stubs; events all carry start_mark and anchor.
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise _RefusedError(
                None, None, f"YAML aliases (*{event.anchor}) are not supported", mark
            )
        if event.anchor is not None:
            raise _RefusedError(
                None, None, f"YAML anchors (&{event.anchor}) are not supported", mark
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _RefusedError(None, None, f"the file has more than {MAX_NODES} values", mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _RefusedError(
                    None, None, f"document is nested more than {MAX_DEPTH} levels deep", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


@dataclass
class _Document:
    """One non-empty YAML document turned into plain data."""

    index: int  # 1-based, counting empty documents too
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)  # 1-based
    scalars: dict[FieldPath, ScalarNode] = field(default_factory=dict)  # non-string scalars
    issues: list[Issue] = field(default_factory=list)

    def line_of(self, path: FieldPath) -> int | None:
        """Line of ``path`` or of its nearest ancestor that the file has."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


class _Invalid:
    """Placeholder for a value we refused; the document is then not validated."""


_INVALID = _Invalid()


def _line(node: Node) -> int:
    mark = node.start_mark
    return 1 if mark is None else mark.line + 1


class _Builder:
    """Turns a composed node tree into dicts, lists and scalars, noting lines."""

    def __init__(self, loader: _Loader, doc: _Document, filename: str) -> None:
        self.loader = loader
        self.doc = doc
        self.filename = filename

    def issue(
        self, message: str, path: FieldPath, line: int | None, hint: str | None = None
    ) -> None:
        self.doc.issues.append(
            Issue(
                message,
                file=self.filename,
                document=self.doc.index,
                path=format_path(path),
                line=line,
                hint=hint,
            )
        )

    def build(self, node: Node, path: FieldPath) -> Any:
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                return self.bad_tag(node, path)
            items: list[Any] = []
            for i, item in enumerate(node.value):
                item_path = (*path, i)
                self.doc.lines[item_path] = _line(item)
                items.append(self.build(item, item_path))
            return items
        if isinstance(node, MappingNode):
            if node.tag != _MAP:
                return self.bad_tag(node, path)
            mapping: dict[str, Any] = {}
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = self.key(key_node, path)
                if key is None:
                    continue
                key_path = (*path, key)
                if key in mapping:
                    self.issue(
                        f"duplicate key {_short(key)!r}",
                        key_path,
                        _line(key_node),
                        f"first given on line {first_line[key]}",
                    )
                    continue
                first_line[key] = _line(key_node)
                self.doc.lines[key_path] = _line(key_node)
                mapping[key] = self.build(value_node, key_path)
            return mapping
        return self.bad_tag(node, path)  # pragma: no cover - the composer makes only these

    def key(self, node: Node, path: FieldPath) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == _STR:
            return str(node.value)
        if isinstance(node, ScalarNode) and node.tag == _MERGE:
            self.issue("merge keys (<<) are not supported", path, _line(node))
            return None
        if isinstance(node, ScalarNode) and node.tag in _SCALAR_KIND:
            text = _short(str(node.value))
            self.issue(
                f"key {text!r} is read as {_SCALAR_KIND[node.tag]}; keys must be strings",
                path,
                _line(node),
                f'quote it: "{text}"',
            )
            return None
        found = "a list" if isinstance(node, SequenceNode) else "a mapping"
        if isinstance(node, ScalarNode):
            found = f"a value tagged {node.tag}"
        self.issue(f"keys must be strings, found {found}", path, _line(node))
        return None

    def scalar(self, node: ScalarNode, path: FieldPath) -> Any:
        tag = node.tag
        if tag == _STR:
            return str(node.value)
        if tag == _TIMESTAMP:
            return str(node.value)
        constructors = {
            _NULL: self.loader.construct_yaml_null,
            _BOOL: self.loader.construct_yaml_bool,
            _INT: self.loader.construct_yaml_int,
            _FLOAT: self.loader.construct_yaml_float,
        }
        construct = constructors.get(tag)
        if construct is None:
            return self.bad_tag(node, path)
        try:
            value = construct(node)
        except Exception:  # e.g. "!!int abc", or an int of more than 4300 digits
            self.issue(
                f"{_short(str(node.value))!r} is not {_SCALAR_KIND[tag]}",
                path,
                _line(node),
            )
            return _INVALID
        self.doc.scalars[path] = node
        return value

    def bad_tag(self, node: Node, path: FieldPath) -> _Invalid:
        tag = node.tag.replace(_TAG, "!!")
        self.issue(
            f"YAML tag {tag!r} is not supported",
            path,
            _line(node),
            "use plain strings, numbers, booleans, lists and mappings",
        )
        return _INVALID


def _compose(text: str, filename: str) -> tuple[list[_Document], list[Issue]]:
    """Parse all documents; a YAML syntax error ends the stream with one issue."""
    docs: list[_Document] = []
    issues: list[Issue] = []
    loader: _Loader | None = None
    index = 0
    current = 1
    try:
        loader = _Loader(text)  # checks for characters YAML forbids
        while True:
            current = index + 1
            if not loader.check_node():
                break
            index = current
            node = loader.get_node()
            if node is None or (isinstance(node, ScalarNode) and node.tag == _NULL):
                continue  # an empty document
            doc = _Document(index=index, data=None)
            doc.lines[()] = _line(node)
            doc.data = _Builder(loader, doc, filename).build(node, ())
            docs.append(doc)
    except yaml.MarkedYAMLError as e:
        issues.append(_yaml_issue(e, filename, current))
    except yaml.YAMLError as e:  # ReaderError: a character YAML does not allow
        issues.append(_reader_issue(e, text, filename, current))
    finally:
        if loader is not None:
            loader.dispose()
    return docs, issues


def _yaml_issue(e: yaml.MarkedYAMLError, filename: str, document: int) -> Issue:
    mark = e.problem_mark or e.context_mark
    problem = e.problem or e.context or "invalid YAML"
    message = "invalid YAML: " + problem
    if mark is not None:
        message += f" (line {mark.line + 1}, column {mark.column + 1})"
    if e.context and e.problem:
        context = e.context
        if e.context_mark is not None and e.context_mark is not mark:
            context += f" at line {e.context_mark.line + 1}, column {e.context_mark.column + 1}"
        message += f", {context}"
    hint = None
    if isinstance(e, _RefusedError):
        message = problem
        if "alias" in problem or "anchor" in problem:
            hint = "write the repeated values out in full"
        if mark is not None:
            message += f" (line {mark.line + 1}, column {mark.column + 1})"
    elif "'\\t'" in problem:
        hint = "indent with spaces, not tabs"
    return Issue(
        message,
        file=filename,
        document=document,
        line=None if mark is None else mark.line + 1,
        hint=hint,
    )


def _reader_issue(e: yaml.YAMLError, text: str, filename: str, document: int) -> Issue:
    position = getattr(e, "position", None)
    character = getattr(e, "character", None)
    line = None
    if isinstance(position, int):
        line = text.count("\n", 0, position) + 1
    what = "a character YAML does not allow"
    if isinstance(character, str) and len(character) == 1:
        character = ord(character)
    if isinstance(character, int):
        what = f"character U+{character:04X}, which YAML does not allow"
    return Issue(
        f"invalid YAML: the file contains {what}",
        file=filename,
        document=document,
        line=line,
        hint="remove control characters from the file",
    )


# --- validation ----------------------------------------------------------


def _load(text: str, filename: str) -> list[tuple[_Document, Workload | Namespace]]:
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecError(_too_large(filename))
    docs, yaml_issues = _compose(text, filename)
    issues: list[Issue] = []
    workloads: list[tuple[_Document, Workload | Namespace]] = []
    for doc in docs:
        doc_issues = list(doc.issues)
        loaded = None
        if not doc_issues:
            doc_issues = _header_issues(doc, filename)
        if not doc_issues:
            loaded, doc_issues = _validate(doc, filename, _KINDS[doc.data["kind"]])
        issues += doc_issues
        if loaded is not None:
            workloads.append((doc, loaded))
    issues += _duplicate_issues(workloads, filename)
    issues += yaml_issues
    if not issues and not workloads:
        issues.append(
            Issue(
                "no workload found: the file is empty or holds only empty documents",
                file=filename,
                hint=_HEADER_HINT,
            )
        )
    if issues:
        issues.sort(key=lambda i: (i.document or 0, i.line or 0))
        if len(issues) > MAX_ISSUES:
            rest = len(issues) - MAX_ISSUES
            more = Issue(f"{rest} more problems not shown", file=filename)
            issues = [*issues[:MAX_ISSUES], more]
        raise SpecError(issues)
    return workloads


def _too_large(filename: str) -> Issue:
    return Issue(
        f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; refusing to read it",
        file=filename,
        hint="split it into several files",
    )


def _header_issues(doc: _Document, filename: str) -> list[Issue]:
    """A document must be a mapping with the right apiVersion and kind."""

    def issue(message: str, path: FieldPath, hint: str | None = None) -> Issue:
        return Issue(
            message,
            file=filename,
            document=doc.index,
            path=format_path(path),
            line=doc.line_of(path),
            hint=hint,
        )

    if not isinstance(doc.data, dict):
        found = _describe(doc.data)
        return [issue(f"a workload document must be a mapping, found {found}", (), _HEADER_HINT)]
    issues = []
    for key, expected in (("apiVersion", API_VERSION), ("kind", "")):
        hint = _KIND_HINT if key == "kind" else f"expected `{key}: {expected}`"
        if key not in doc.data:
            issues.append(issue(f"missing required field '{key}'", (key,), hint))
        elif not _header_ok(key, doc.data[key]):
            value = doc.data[key]
            found = f" {_short(value)!r}" if isinstance(value, str) else f": {_describe(value)}"
            issues.append(issue(f"unsupported {key}{found}", (key,), hint))
    return issues


def _header_ok(key: str, value: Any) -> bool:
    if key == "kind":
        return isinstance(value, str) and value in _KINDS
    return bool(value == API_VERSION)


def _validate(
    doc: _Document, filename: str, root: type[Workload] | type[Namespace]
) -> tuple[Workload | Namespace | None, list[Issue]]:
    issues = _snake_case_issues(doc, filename, root)
    try:
        loaded = root.model_validate(doc.data)
    except ValidationError as e:
        # a Python name given next to its alias is unknown to both checks: say it once
        unique = dict.fromkeys(issues + _pydantic_issues(e, doc, filename, root))
        return None, list(unique)
    return (None if issues else loaded), issues


def _pydantic_issues(
    error: ValidationError, doc: _Document, filename: str, root: type[BaseModel]
) -> list[Issue]:
    issues: list[Issue] = []
    suggested: set[FieldPath] = set()  # fields an unknown field probably meant
    for err in error.errors(include_url=False):
        path = _loc_to_path(err["loc"], doc.data)
        kind = err["type"]
        value = err.get("input")
        hint: str | None = None
        if kind == "extra_forbidden":
            name = str(path[-1]) if path else ""
            message = f"unknown field {_short(name)!r}"
            hint, meant = _suggest(name, path[:-1], root)
            if meant:
                suggested.add((*path[:-1], meant))
        elif kind == "missing":
            message = f"missing required field '{path[-1] if path else ''}'"
        elif kind in _EXPECTED:
            message = f"expected {_EXPECTED[kind]}, found {_describe(value)}"
            node = doc.scalars.get(path)
            if kind == "string_type" and node is not None and node.style is None:
                hint = f'quote it to make it a string: "{_short(str(node.value), 60)}"'
        elif kind in ("value_error", "assertion_error"):
            message = str(err["msg"]).removeprefix("Value error, ")
            message = message.removeprefix("Assertion failed, ")
        else:
            message = str(err["msg"])
            if message.startswith("Input should be "):
                message = "must be " + message.removeprefix("Input should be ")
                message += f", found {_describe(value)}"
        issues.append(
            Issue(
                message,
                file=filename,
                document=doc.index,
                path=format_path(path),
                line=doc.line_of(path),
                hint=hint,
            )
        )
    # "unknown field 'contianerPort' (did you mean 'containerPort'?)" says it all:
    # drop the "missing required field 'containerPort'" that comes with it.
    return [
        i
        for i in issues
        if not (i.message.startswith("missing required field") and _is_suggested(i, suggested))
    ]


def _is_suggested(issue: Issue, suggested: set[FieldPath]) -> bool:
    return any(format_path(path) == issue.path for path in suggested)


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _loc_to_path(loc: tuple[str | int, ...], data: Any) -> FieldPath:
    """Pydantic's error location as a path through the file's data.

    Parts that name nothing in the data (e.g. a union member's tag) are
    dropped, except the last, which may be a missing or unknown field.
    """
    path: list[str | int] = []
    current = data
    for n, part in enumerate(loc):
        in_dict = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
        elif n == len(loc) - 1 and part != "[key]":
            current = None
        else:
            continue
        path.append(part)
    return tuple(path)


def format_path(path: FieldPath) -> str:
    """``("spec", "ports", 1, "containerPort")`` -> ``spec.ports[1].containerPort``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER_RE.match(part):
            text += f".{part}" if text else part
        else:
            text += '["' + part.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return text


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    """How a found value reads in a message: ``integer 80``, ``a list``, ..."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return "a very large integer" if value.bit_length() > 128 else f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {_short(repr(value))}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


# --- walking the model by the file's field names ---------------------------


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``; other types unchanged."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _field_type(model: type[BaseModel], alias: str) -> Any:
    for name, info in model.model_fields.items():
        if (info.alias or name) == alias:
            return info.annotation
    return None


def _type_at(path: FieldPath, root: type[BaseModel]) -> Any:
    """The type the model expects at ``path`` (file names), or None if unknown."""
    tp: Any = root
    for part in path:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if isinstance(part, int):
            if origin is not list:
                return None
            tp = get_args(tp)[0]
        elif _is_model(tp):
            tp = _field_type(tp, part)
            if tp is None:
                return None
        elif origin is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return _unwrap(tp)


def _aliases(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _suggest(name: str, parent: FieldPath, root: type[BaseModel]) -> tuple[str | None, str | None]:
    """A hint for an unknown field at ``parent``, and the field it probably meant."""
    model = _type_at(parent, root)
    if not _is_model(model):
        return None, None
    valid = _aliases(model)
    camel = to_camel(name)
    if camel in valid:
        return f"did you mean '{camel}'? field names are camelCase", camel
    by_lower = {v.lower(): v for v in valid}
    if name.lower() in by_lower:
        meant = by_lower[name.lower()]
        return f"did you mean '{meant}'?", meant
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        meant = by_lower[close[0]]
        return f"did you mean '{meant}'?", meant
    return "valid fields: " + ", ".join(valid), None


def _snake_case_issues(doc: _Document, filename: str, root: type[BaseModel]) -> list[Issue]:
    """Pydantic also accepts Python names (``container_port``); files may not."""
    issues: list[Issue] = []

    def walk(data: Any, tp: Any, path: FieldPath) -> None:
        tp = _unwrap(tp)
        if _is_model(tp) and isinstance(data, dict):
            fields = tp.model_fields
            by_alias = {info.alias or name: info for name, info in fields.items()}
            for key, value in data.items():
                if key in by_alias:
                    walk(value, by_alias[key].annotation, (*path, key))
                elif key in fields and fields[key].alias not in (None, key):
                    meant = str(fields[key].alias)
                    issues.append(
                        Issue(
                            f"unknown field {_short(key)!r}",
                            file=filename,
                            document=doc.index,
                            path=format_path((*path, key)),
                            line=doc.line_of((*path, key)),
                            hint=f"did you mean '{meant}'? field names are camelCase",
                        )
                    )
        elif get_origin(tp) is list and isinstance(data, list):
            for i, item in enumerate(data):
                walk(item, get_args(tp)[0], (*path, i))
        elif get_origin(tp) is dict and isinstance(data, dict):
            for key, value in data.items():
                walk(value, get_args(tp)[1], (*path, key))

    walk(doc.data, root, ())
    return issues


# --- across documents ------------------------------------------------------


def _duplicate_issues(
    loaded: list[tuple[_Document, Workload | Namespace]], filename: str
) -> list[Issue]:
    issues = []
    first: dict[tuple[str, str], int] = {}
    for doc, obj in loaded:
        kind, key = ("workload", obj.key) if isinstance(obj, Workload) else ("namespace", obj.name)
        if (kind, key) in first:
            issues.append(
                Issue(
                    f"duplicate {kind} {key!r}: documents {first[kind, key]} "
                    f"and {doc.index} both define it",
                    file=filename,
                    document=doc.index,
                    path="metadata.name",
                    line=doc.line_of(("metadata", "name")),
                    hint="give each workload its own name or namespace"
                    if kind == "workload"
                    else "define each namespace's policy once",
                )
            )
        else:
            first[kind, key] = doc.index
    return issues
