"""`App.openapi`: the OpenAPI 3.1 document, built from what registration decided.

Strategy: every route already carries its `Binder` (parameters and body, with
their types and constraints) and its handler's return annotation, so building
the document only reads them. The JSON Schemas come from each library's own
generator, each called once for the whole app: msgspec's
`schema_components` for Structs, dataclasses, TypedDicts and every scalar,
pydantic's `TypeAdapter.json_schemas` for pydantic models. While the
operations are written, each schema is a placeholder dict, filled in place
once the generators have run; their components are merged into
``components.schemas`` under unique names (a pydantic model whose name a
msgspec type already has is renamed ``module__Name``). Nothing here runs per
request: the document is built on first use and kept by the app.
"""

from __future__ import annotations

import http
import inspect
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from ._matching import _Mixed, _Param, _Rest
from ._typed import Field, _strip_annotated, _uses_pydantic

if TYPE_CHECKING:
    from .applications import App
    from .routing import Route

__all__ = ["build"]

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{name}"
_REF_PREFIX = "#/components/schemas/"

#: The order operations take in a path item (Swagger UI shows them so).
_METHOD_ORDER = {m: i for i, m in enumerate(("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD"))}
_METHOD_ORDER_REST = len(_METHOD_ORDER)

#: FastAPI's 422 schemas, which API.md section 13's error shape follows.
_VALIDATION_ERROR = {
    "title": "ValidationError",
    "type": "object",
    "properties": {
        "loc": {
            "title": "Location",
            "type": "array",
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "msg": {"title": "Message", "type": "string"},
        "type": {"title": "Error Type", "type": "string"},
    },
    "required": ["loc", "msg", "type"],
}


#: The body of microweb's own errors (400, 404, 413, 415): ``{"detail": "..."}``.
_HTTP_ERROR = {
    "title": "HTTPError",
    "type": "object",
    "properties": {"detail": {"title": "Detail", "type": "string"}},
    "required": ["detail"],
}

#: What microweb answers, before the handler runs, to a body it cannot read,
#: documented on each route that reads one (JSON, or a form).
_BODY_ERRORS = {
    "body": {
        "400": "The body is not valid JSON",
        "413": "The body is larger than the app's max_body_size",
        "415": "The body is not JSON: its Content-Type is neither application/json nor *+json",
    },
    "form": {
        "400": "The form is malformed",
        "413": "The body, or a field of the form, is too large",
        "415": "The body is not a form: its Content-Type is neither "
        "application/x-www-form-urlencoded nor multipart/form-data",
    },
}

#: What a route with path parameters answers to a value that is not of its type
#: (``/items/abc`` for ``/items/{item_id:int}``): no route matches.
_NOT_FOUND = "Not Found: no route matches, as when a path parameter is not of its type"

#: The placeholders of the error responses' ``$ref``: "validation" (422), "http" (the others).
_ErrorRefs = dict[str, list[dict[str, Any]]]


def _http_validation_error(item_ref: str) -> dict[str, Any]:
    return {
        "title": "HTTPValidationError",
        "type": "object",
        "properties": {
            "detail": {"title": "Detail", "type": "array", "items": {"$ref": item_ref}},
        },
    }


def build(app: App) -> dict[str, Any]:
    """The OpenAPI document of `app` (see `App.openapi`)."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    # the $ref placeholders of the error responses: the 422s, the others
    error_refs: _ErrorRefs = {"validation": [], "http": []}
    for route in app.routes:
        if route.websocket or not route.doc.include_in_schema:
            continue
        item = paths.setdefault(_template(route.path), {})
        methods = sorted(route.methods, key=lambda m: _METHOD_ORDER.get(m, _METHOD_ORDER_REST))
        for method in methods:
            key = method.lower()
            if key in item:  # an earlier route answers it (the first registered wins)
                continue
            op_id = route.doc.operation_id or route.name
            if len(methods) > 1:
                op_id = f"{op_id}_{key}"
            item[key] = _operation(
                route, method, _unique(op_id, operation_ids), schemas, error_refs
            )
    components = schemas.generate()
    if error_refs["validation"]:
        item_name = _free_name("ValidationError", components)
        components[item_name] = _VALIDATION_ERROR
        error_name = _free_name("HTTPValidationError", components)
        components[error_name] = _http_validation_error(REF.format(name=item_name))
        for ref in error_refs["validation"]:
            ref["$ref"] = REF.format(name=error_name)
    if error_refs["http"]:
        http_name = _free_name("HTTPError", components)
        components[http_name] = _HTTP_ERROR
        for ref in error_refs["http"]:
            ref["$ref"] = REF.format(name=http_name)
    info: dict[str, Any] = {"title": app.title, "version": app.version}
    if app.description:
        info["description"] = app.description
    doc: dict[str, Any] = {"openapi": OPENAPI_VERSION, "info": info, "paths": paths}
    if components:
        doc["components"] = {"schemas": dict(sorted(components.items()))}
    return doc


# --------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------

_TEMPLATE_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[A-Za-z_][A-Za-z0-9_]*\}")


def _template(path: str) -> str:
    """``/users/{user_id:int}`` as OpenAPI writes it: ``/users/{user_id}``."""
    return _TEMPLATE_PARAM.sub(r"{\1}", path)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _operation(
    route: Route,
    method: str,
    operation_id: str,
    schemas: _Schemas,
    error_refs: _ErrorRefs,
) -> dict[str, Any]:
    doc = route.doc
    op: dict[str, Any] = {}
    if doc.tags:
        op["tags"] = list(doc.tags)
    op["summary"] = doc.summary or route.name.replace("_", " ").strip().title()
    description = doc.description
    if description is None and inspect.isroutine(route.handler) and route.handler.__doc__:
        description = inspect.cleandoc(route.handler.__doc__)
    if description:
        op["description"] = description
    op["operationId"] = operation_id
    parameters = [*_path_parameters(route, schemas), *_other_parameters(route, schemas)]
    if parameters:
        op["parameters"] = parameters
    binder = route.binder
    if binder is not None and binder.body is not None:
        body = binder.body
        schema = _body_schema(body, schemas)
        media = ["application/json"]
        if body.location == "form":
            media = ["application/x-www-form-urlencoded", "multipart/form-data"]
        request_body: dict[str, Any] = {"content": {m: {"schema": schema} for m in media}}
        if body.marker is not None and body.marker.description:
            request_body["description"] = body.marker.description
        request_body["required"] = _body_required(body)
        op["requestBody"] = request_body
    op["responses"] = _responses(route, schemas, error_refs)
    if doc.deprecated:
        op["deprecated"] = True
    return op


def _body_schema(body: Any, schemas: _Schemas) -> dict[str, Any]:
    """The schema of a JSON body (`BodyField`) or a form (`FormBody`): a form model's
    own, or for single ``Form()`` parameters an object with one property each."""
    extras = _marker_extras(body.marker)
    if body.location != "form":
        return schemas.add(body.type, "validation", extras)
    if body.annotation is not None:
        return schemas.add(body.annotation, "validation", extras)
    properties = {item.wire: schemas.add(item.type, "validation") for item in body.items}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [item.wire for item in body.items if item.required]
    if required:
        schema["required"] = required
    return schema


def _body_required(body: Any) -> bool:
    """Whether a request must carry the body: single ``Form()`` fields make it
    required when any of them is."""
    if body.location == "form" and body.annotation is None:
        return any(item.required for item in body.items)
    return bool(body.required)


def _path_parameters(route: Route, schemas: _Schemas) -> Iterator[dict[str, Any]]:
    typed = {}
    if route.binder is not None:
        typed = {f.name: f for f in route.binder.fields if f.location == "path"}
    for name, converter in _path_converters(route):
        field = typed.get(name)
        kind = _CONVERTER_SCHEMAS.get(type(converter).__name__)
        if kind is None:  # a custom converter: what its regex accepts
            kind = {"type": "string", "pattern": f"^(?:{converter.regex})$"}
        if field is None:
            schema = dict(kind)
        else:
            # the annotation's schema, within what the converter lets through
            schema = schemas.add(field.type, "validation", _marker_extras(field.marker))
            schemas.after(schema, lambda s, kind=kind: _within(s, kind))  # type: ignore[misc]
        param: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema}
        if field is not None:
            _document(param, field)
        yield param


def _within(schema: dict[str, Any], kind: dict[str, Any]) -> None:
    """Add the converter's bound (digits: never below zero; a custom one's pattern)
    to the annotation's `schema` where it has none of its own."""
    numeric = schema.get("type") in ("integer", "number")
    if "minimum" in kind and numeric and not {"minimum", "exclusiveMinimum"} & schema.keys():
        schema["minimum"] = kind["minimum"]
    if "pattern" in kind and schema.get("type") == "string" and "pattern" not in schema:
        schema["pattern"] = kind["pattern"]


_CONVERTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "_StrConverter": {"type": "string"},
    "_PathConverter": {"type": "string"},
    "_IntConverter": {"type": "integer", "minimum": 0},
    "_FloatConverter": {"type": "number", "minimum": 0},
    "_UUIDConverter": {"type": "string", "format": "uuid"},
}


def _path_converters(route: Route) -> Iterator[tuple[str, Any]]:
    for spec in route.segments:
        if isinstance(spec, _Param | _Rest):
            yield spec.name, spec.converter
        elif isinstance(spec, _Mixed):
            yield from spec.params


def _other_parameters(route: Route, schemas: _Schemas) -> Iterator[dict[str, Any]]:
    if route.binder is None:
        return
    for field in route.binder.fields:
        if field.location == "path":
            continue
        marker = field.marker
        if marker is not None and not marker.include_in_schema:
            continue
        extras = _marker_extras(marker)
        if not field.required and field.default is not None:
            try:
                extras["default"] = msgspec.to_builtins(field.default)
            except (TypeError, ValueError):
                pass  # a default JSON cannot show
        param: dict[str, Any] = {
            "name": field.wire,
            "in": field.location,
            "required": field.required,
            "schema": schemas.add(field.type, "validation", extras),
        }
        _document(param, field)
        yield param


def _document(param: dict[str, Any], field: Field) -> None:
    marker = field.marker
    if marker is None:
        return
    if marker.description:
        param["description"] = marker.description
    if marker.deprecated:
        param["deprecated"] = True


def _marker_extras(marker: Any) -> dict[str, Any]:
    """What a marker adds to its schema: its examples (JSON Schema's list)."""
    if marker is None or not marker.examples:
        return {}
    try:
        return {"examples": msgspec.to_builtins(list(marker.examples))}
    except (TypeError, ValueError):
        return {}


# --------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------

_MISSING = object()


def _return_annotation(route: Route) -> Any:
    """The return annotation, as resolved when the route was registered (models
    declared in the registering function included); _MISSING without one."""
    return route.hints.get("return", _MISSING)


def _phrase(status: int | str) -> str:
    try:
        return http.HTTPStatus(int(status)).phrase
    except ValueError:
        return "Response" if status == "default" else f"{status} response"


def _responses(route: Route, schemas: _Schemas, error_refs: _ErrorRefs) -> dict[str, Any]:
    from .responses import Response

    annotation = _return_annotation(route)
    inner = _strip_annotated(annotation)[0] if annotation is not _MISSING else _MISSING
    status = route.status or (204 if inner is None or inner is type(None) else 200)
    ok: dict[str, Any] = {"description": _phrase(status)}
    content: dict[str, Any] | None = None
    if inner is _MISSING or inner is Any or inner is None or inner is type(None):
        pass
    elif isinstance(inner, type) and issubclass(inner, Response):
        media = getattr(inner, "media_type", None)
        if media in ("application/json", "text/html", "text/plain"):
            content = {media: {"schema": {} if media == "application/json" else _STRING}}
    elif inner is str:
        content = {"text/html": {"schema": _STRING}}
    elif inner is bytes:
        content = {"application/octet-stream": {"schema": {}}}
    else:
        content = {"application/json": {"schema": schemas.add(annotation, "serialization")}}
    if content is not None:
        ok["content"] = content
    responses: dict[str, Any] = {str(status): ok}
    for key, value in route.doc.responses.items():
        responses[str(key)] = _extra_response(key, value, schemas)
    if "404" not in responses and next(_path_converters(route), None) is not None:
        # a path parameter that is not of its type matches no route (/items/abc)
        responses["404"] = _error_response(_NOT_FOUND, error_refs["http"])
    binder = route.binder
    if binder is not None and binder.body is not None:
        # what the app answers, before the handler runs, to a body it cannot read
        for code, description in _BODY_ERRORS[binder.body.location].items():
            if code not in responses:
                responses[code] = _error_response(description, error_refs["http"])
    if binder is not None and "422" not in responses:
        responses["422"] = _error_response("Validation Error", error_refs["validation"])
    return dict(sorted(responses.items()))


def _error_response(description: str, refs: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON error response whose schema (a ``$ref``) is filled in once the
    components are named."""
    ref: dict[str, Any] = {}
    refs.append(ref)
    return {"description": description, "content": {"application/json": {"schema": ref}}}


_STRING = {"type": "string"}


def _extra_response(key: int | str, value: Any, schemas: _Schemas) -> dict[str, Any]:
    """One entry of ``responses=``: a description, a model, or a Response Object."""
    if value is None:
        return {"description": _phrase(key)}
    if isinstance(value, str):
        return {"description": value}
    if isinstance(value, dict):
        response = dict(value)
        model = response.pop("model", None)
        response.setdefault("description", _phrase(key))
        if model is not None:
            schema = schemas.add(model, "serialization")
            response["content"] = {"application/json": {"schema": schema}}
        return response
    schema = schemas.add(value, "serialization")
    return {"description": _phrase(key), "content": {"application/json": {"schema": schema}}}


# --------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------


class _Schemas:
    """The schemas the document needs, each a placeholder until `generate` fills it."""

    def __init__(self) -> None:
        self._msgspec: list[tuple[Any, dict[str, Any]]] = []
        self._pydantic: list[tuple[Any, str, dict[str, Any]]] = []
        self._extras: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._after: list[tuple[dict[str, Any], Callable[[dict[str, Any]], None]]] = []

    def add(self, tp: Any, mode: str, extras: dict[str, Any] | None = None) -> dict[str, Any]:
        """A placeholder for the schema of `tp` (`mode`: pydantic's "validation" for
        what is read, "serialization" for what is written), with `extras` added."""
        placeholder: dict[str, Any] = {}
        if _uses_pydantic(tp):
            self._pydantic.append((tp, mode, placeholder))
        else:
            self._msgspec.append((tp, placeholder))
        if extras:
            self._extras.append((placeholder, extras))
        return placeholder

    def after(self, placeholder: dict[str, Any], fn: Callable[[dict[str, Any]], None]) -> None:
        """Call ``fn(schema)`` once `placeholder` is filled."""
        self._after.append((placeholder, fn))

    def generate(self) -> dict[str, Any]:
        """Fill every placeholder; the components they refer to, by name."""
        components: dict[str, Any] = {}
        if self._msgspec:
            types = [tp for tp, _ in self._msgspec]
            generated, components = _msgspec_schemas(types)
            for (_, placeholder), schema in zip(self._msgspec, generated, strict=True):
                placeholder.update(schema)
        if self._pydantic:
            _pydantic_schemas(self._pydantic, components)
        for placeholder, extras in self._extras:
            placeholder.update(extras)
        for placeholder, fn in self._after:
            fn(placeholder)
        return components


def _schema_hook(cls: type) -> dict[str, Any]:
    """The schema of a type msgspec does not know: an upload, or anything."""
    from .datastructures import UploadFile

    if isinstance(cls, type) and issubclass(cls, UploadFile):
        return {"type": "string", "format": "binary"}
    return {"title": getattr(cls, "__name__", "value")}  # no constraint msgspec can write


def _msgspec_schemas(types: list[Any]) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    try:
        return msgspec.json.schema_components(types, schema_hook=_schema_hook, ref_template=REF)
    except (TypeError, ValueError):
        # one type msgspec cannot describe (a return annotation that is no model):
        # left undescribed, the others as msgspec writes them
        usable = []
        for tp in types:
            try:
                msgspec.json.schema(tp, schema_hook=_schema_hook)
                usable.append(tp)
            except (TypeError, ValueError):
                usable.append(Any)
        return msgspec.json.schema_components(usable, schema_hook=_schema_hook, ref_template=REF)


def _pydantic_schemas(
    wanted: list[tuple[Any, str, dict[str, Any]]], components: dict[str, Any]
) -> None:
    """Fill pydantic's placeholders; add its definitions to `components`, renaming
    one whose name is taken by another schema to its module-qualified name."""
    import pydantic
    from pydantic.json_schema import GenerateJsonSchema

    qualified: dict[str, str] = {}  # short definition name -> module-qualified one

    class Generator(GenerateJsonSchema):
        def get_defs_ref(self, core_mode_ref: Any) -> Any:
            core_ref, mode = core_mode_ref
            if "[" not in core_ref:  # a plain class: "pkg.module.Name:id"
                path = core_ref.rsplit(":", 1)[0]
                short = self.normalize_name(path.rsplit(".", 1)[-1])
                long = self.normalize_name(path)
                qualified[short] = long
                suffix = "-Input" if mode == "validation" else "-Output"
                qualified[short + suffix] = long + suffix
            return super().get_defs_ref(core_mode_ref)

    inputs = [(i, mode, pydantic.TypeAdapter(tp)) for i, (tp, mode, _) in enumerate(wanted)]
    generated, definitions = pydantic.TypeAdapter.json_schemas(
        inputs,  # type: ignore[arg-type]
        ref_template=REF.replace("{name}", "{model}"),
        schema_generator=Generator,
    )
    renamed: dict[str, str] = {}
    own: list[Any] = [p for _, _, p in wanted]  # what refers to pydantic's names
    for name, schema in definitions.get("$defs", {}).items():
        final = name
        if name in components and components[name] != schema:
            final = _free_name(qualified.get(name, name), components)
            renamed[_REF_PREFIX + name] = _REF_PREFIX + final
        components[final] = schema
        own.append(schema)
    for i, (_, mode, placeholder) in enumerate(wanted):
        placeholder.update(generated[(i, mode)])  # type: ignore[index]
    if renamed:
        _rename_refs(own, renamed)


def _rename_refs(nodes: list[Any], renamed: dict[str, str]) -> None:
    todo = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref in renamed:
                node["$ref"] = renamed[ref]
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)


def _free_name(name: str, taken: dict[str, Any]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate
