"""Typed handler parameters: decided once at registration, bound per request.

`analyse_typed` reads a handler's signature once and returns a `Binder` (or
None when the handler takes only the request and untyped path parameters:
those routes keep their cheaper calls). `Binder.bind` fills the handler's
keyword arguments from the query string, headers, cookies, path and JSON
body, converting each with msgspec, and raises `RequestValidationError`
(a 422 listing every invalid parameter) when any fails.

Strategy: every decision that depends on the signature (where a value is
read, its wire name, whether it is a list, which msgspec type checks it, the
body's decoder) is made here at registration; per request a binder only
looks values up and calls the converters it was given.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Union

import msgspec

from .exceptions import HTTPException
from .params import Param, Path

if TYPE_CHECKING:
    from ._typed_forms import FormBody

__all__ = [
    "Binder",
    "RequestValidationError",
    "analyse_typed",
    "is_model",
    "return_converter",
]

#: The longest message a 422 carries (no more than 100 characters of the input).
_MAX_MSG = 100

_BOOL_WORDS = {
    "true": "true",
    "1": "true",
    "yes": "true",
    "on": "true",
    "false": "false",
    "0": "false",
    "no": "false",
    "off": "false",
}


class RequestValidationError(HTTPException):
    """A 422 whose detail lists every invalid parameter (FastAPI's shape):
    ``[{"loc": ["query", "limit"], "msg": "...", "type": "..."}, ...]``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(422, errors)
        self.errors = errors


# --------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------


def _pydantic_model(tp: Any) -> bool:
    pydantic = sys.modules.get("pydantic")  # a model's class needs pydantic imported
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def is_model(tp: Any) -> bool:
    """True for a model type (msgspec Struct, pydantic model, dataclass, TypedDict)
    or a list of one: such a parameter is the JSON body."""
    tp = _strip_annotated(tp)[0]
    origin = typing.get_origin(tp)
    if origin is list:
        args = typing.get_args(tp)
        return bool(args) and is_model(args[0])
    if not isinstance(tp, type):
        return False
    return (
        issubclass(tp, msgspec.Struct)
        or dataclasses.is_dataclass(tp)
        or typing.is_typeddict(tp)
        or _pydantic_model(tp)
    )


def _uses_pydantic(tp: Any) -> bool:
    tp = _strip_annotated(tp)[0]
    if typing.get_origin(tp) is list:
        return _uses_pydantic(typing.get_args(tp)[0])
    return _pydantic_model(tp)


def _strip_annotated(tp: Any) -> tuple[Any, list[Any]]:
    """(the type inside ``Annotated``, its metadata)."""
    extras: list[Any] = []
    while typing.get_origin(tp) is Annotated:
        args = typing.get_args(tp)
        tp, extras = args[0], [*extras, *args[1:]]
    return tp, extras


def _without_none(tp: Any) -> tuple[Any, bool]:
    """(`tp` without ``None`` in its union, whether it had it)."""
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            rest = args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007
            return rest, True
    return tp, False


def _is_bool(tp: Any) -> bool:
    tp = _without_none(_strip_annotated(tp)[0])[0]
    return tp is bool


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\"?(.*?)\"?\]")


def _msgspec_error(exc: msgspec.ValidationError, loc: list[Any]) -> dict[str, Any]:
    """One 422 entry for msgspec's error: its message, the path after ``$`` in `loc`."""
    text = str(exc)
    msg, sep, at = text.rpartition(" - at `")
    if not sep:
        msg, at = text, ""
    path: list[Any] = []
    if at.startswith("$"):
        for m in _PATH_PART.finditer(at[1:].rstrip("`")):
            key, index, other = m.groups()
            path.append(key if key is not None else int(index) if index is not None else other)
    if msg.startswith("Object missing required field `"):
        path.append(msg.split("`")[1])
        return _entry([*loc, *path], "Field required", "missing")
    kind = "type_error" if msg.startswith("Expected `") and ", got `" in msg else "value_error"
    return _entry([*loc, *path], msg, kind)


def _entry(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    if len(msg) > _MAX_MSG:
        msg = msg[: _MAX_MSG - 3] + "..."
    if any(type(part) is str and len(part) > _MAX_MSG for part in loc):  # a key of the input's
        loc = [_short(part) if type(part) is str else part for part in loc]
    return {"loc": loc, "msg": msg, "type": kind}


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MSG else text[: _MAX_MSG - 3] + "..."


# --------------------------------------------------------------------------
# Fields
# --------------------------------------------------------------------------


def _meta_type(tp: Any, marker: Param | None) -> Any:
    """`tp` with the marker's constraints as a ``msgspec.Meta`` (on the element of a list)."""
    if marker is None:
        return tp
    constraints = marker.constraints()
    if not constraints:
        return tp
    meta = msgspec.Meta(**constraints)
    inner, extras = _strip_annotated(tp)
    inner, optional = _without_none(inner)
    if typing.get_origin(inner) is list and not {"min_length", "max_length"} & constraints.keys():
        (element,) = typing.get_args(inner) or (Any,)
        inner = list[Annotated[element, meta]]  # type: ignore[valid-type]
    else:
        inner = Annotated[inner, meta]
    if optional:
        inner = inner | None
    return Annotated[tuple([inner, *extras])] if extras else inner


def _present_type(tp: Any) -> Any:
    """What a present raw value converts to: `tp` without None."""
    if typing.get_origin(tp) is Annotated:
        # Annotated[X | None, Meta] -> Annotated[X, Meta]: a present value is never None
        base, extras = _strip_annotated(tp)
        return Annotated[tuple([_without_none(base)[0], *extras])]
    return _without_none(tp)[0]


def _bool_words(tp: Any, multi: bool) -> bool:
    """True when the raw words (yes/on/...) are mapped before conversion: a bool
    (or a list of bool) parameter."""
    inner = _without_none(_strip_annotated(tp)[0])[0]
    if multi:
        return _is_bool(typing.get_args(inner)[0] if typing.get_args(inner) else Any)
    return inner is bool


def _converter(tp: Any, multi: bool) -> Callable[[Any], Any] | None:
    """A function that converts a raw str (or list of str) to `tp`; None: as is."""
    if tp is Any or tp is str or tp is inspect.Parameter.empty:
        return None
    inner = _without_none(_strip_annotated(tp)[0])[0]
    target = _present_type(tp)
    if multi:
        element = typing.get_args(inner)[0] if typing.get_args(inner) else Any
        if _is_bool(element):

            def convert_list(raw: list[str]) -> Any:
                words = [_BOOL_WORDS.get(v.lower(), v) for v in raw]
                return msgspec.convert(words, target, strict=False)

            return convert_list

        def convert_many(raw: list[str]) -> Any:
            return msgspec.convert(raw, target, strict=False)

        return convert_many
    if inner is bool:

        def convert_bool(raw: str) -> Any:
            return msgspec.convert(_BOOL_WORDS.get(raw.lower(), raw), target, strict=False)

        return convert_bool

    def convert(raw: str) -> Any:
        return msgspec.convert(raw, target, strict=False)

    return convert


@dataclasses.dataclass(slots=True)
class Field:
    """One bound parameter: where it is read and how it is converted."""

    name: str
    location: str
    wire: str
    annotation: Any
    type: Any  # the annotation with the marker's constraints
    required: bool
    default: Any
    multi: bool
    marker: Param | None
    convert: Callable[[Any], Any] | None

    def missing(self) -> Any:
        """The default (a fresh copy of a mutable one), or raise if required."""
        default = self.default
        if type(default) in (list, dict, set):
            return copy.copy(default)
        return default


@dataclasses.dataclass(slots=True)
class BodyField:
    """The JSON body parameter (or the form model)."""

    name: str
    location: str  # "body" or "form"
    annotation: Any
    type: Any
    required: bool
    default: Any
    marker: Param | None
    decode: Callable[[bytes], Any]
    pydantic: bool


# --------------------------------------------------------------------------
# The binder
# --------------------------------------------------------------------------


class Binder:
    """Fills a typed handler's keyword arguments for one request."""

    __slots__ = ("body", "conn_names", "fast", "fields", "passthrough", "query", "rest")

    def __init__(
        self,
        conn_names: tuple[str, ...],
        passthrough: tuple[str, ...],
        fields: list[Field],
        body: BodyField | FormBody | None,
    ) -> None:
        self.conn_names = conn_names
        self.passthrough = passthrough  # untyped path parameters, given as matched
        self.fields = fields
        self.query = tuple(f for f in fields if f.location == "query")
        self.rest = tuple(f for f in fields if f.location != "query")
        self.body = body
        #: The plan of `bind_fast` (None: this binder has only the general path).
        self.fast = _fast_plan(fields) if body is None or body.location == "body" else None

    def bind(self, conn: Any, params: dict[str, Any]) -> dict[str, Any]:
        """The handler's keyword arguments; RequestValidationError lists what is wrong."""
        kwargs: dict[str, Any] = {}
        for name in self.conn_names:
            kwargs[name] = conn
        for name in self.passthrough:
            kwargs[name] = params[name]
        errors: list[dict[str, Any]] | None = None
        if self.query:
            qp = conn.query_params
            for f in self.query:
                raw = qp.getall(f.wire) if f.multi else qp.get(f.wire)
                error = _bind_one(f, raw, kwargs)
                if error is not None:
                    errors = [error] if errors is None else [*errors, error]
        for f in self.rest:
            loc = f.location
            if loc == "path":
                raw = params[f.name]
            elif loc == "header":
                raw = conn.headers.getall(f.wire) if f.multi else conn.headers.get(f.wire)
            else:  # cookie
                raw = conn.cookies.get(f.wire)
            error = _bind_one(f, raw, kwargs)
            if error is not None:
                errors = [error] if errors is None else [*errors, error]
        body = self.body
        if body is not None:
            try:
                if body.location == "form":
                    body.bind(conn, kwargs)  # type: ignore[union-attr]
                else:
                    kwargs[body.name] = _bind_body(body, conn)  # type: ignore[arg-type, index]
            except RequestValidationError as exc:
                errors = exc.errors if errors is None else [*errors, *exc.errors]
        if errors is not None:
            raise RequestValidationError(errors)
        return kwargs

    def bind_fast(self, conn: Any, params: dict[str, Any]) -> dict[str, Any]:
        """`bind` for requests whose values are all valid: every raw value is read
        into one dict, converted by one msgspec call into the binder's Struct;
        at the first problem, `bind` runs instead (it lists every error)."""
        plan: _FastPlan = self.fast  # type: ignore[assignment]
        raw: dict[str, Any] = {}
        if plan.query:
            qp = conn.query_params
            for name, wire, multi, words in plan.query:
                if multi:
                    value = qp.getall(wire)
                    if not value:
                        continue
                    if words:
                        value = [_BOOL_WORDS.get(v.lower(), v) for v in value]
                else:
                    value = qp.get(wire)
                    if value is None:
                        continue
                    if words:
                        value = _BOOL_WORDS.get(value.lower(), value)
                raw[name] = value
        for name, location, wire, multi, words in plan.rest:
            if location == "path":
                raw[name] = params[name]
                continue
            if location == "header":
                value = conn.headers.getall(wire) if multi else conn.headers.get(wire)
            else:  # cookie
                value = conn.cookies.get(wire)
            if value is None or (multi and not value):
                continue
            if words:
                value = (
                    [_BOOL_WORDS.get(v.lower(), v) for v in value]
                    if multi
                    else _BOOL_WORDS.get(value.lower(), value)
                )
            raw[name] = value
        if plan.struct is None:
            kwargs = {}
        else:
            try:
                kwargs = _asdict(_convert(raw, plan.struct, strict=False))
            except (msgspec.ValidationError, ValueError, TypeError, OverflowError):
                return self.bind(conn, params)  # lists every invalid or missing value
        for name in self.conn_names:
            kwargs[name] = conn
        for name in self.passthrough:
            kwargs[name] = params[name]
        body = self.body  # a JSON body: a form's binder has no fast plan
        if body is not None:
            try:
                kwargs[body.name] = _bind_body(body, conn)  # type: ignore[arg-type,index]
            except RequestValidationError:
                return self.bind(conn, params)  # the body's error beside the others
        return kwargs


_convert = msgspec.convert
_asdict = msgspec.structs.asdict


@dataclasses.dataclass(slots=True)
class _FastPlan:
    """What `Binder.bind_fast` reads and the one Struct it converts it to."""

    struct: type[msgspec.Struct] | None  # None: no parameter but the body
    query: tuple[tuple[str, str, bool, bool], ...]  # name, wire name, list?, bool words?
    rest: tuple[tuple[str, str, str, bool, bool], ...]  # name, location, wire, list?, words?


def _fast_plan(fields: list[Field]) -> _FastPlan | None:
    """The fast path's plan: a Struct with one field per parameter, of the type
    its raw value converts to (as `_bind_one` converts it), with its default
    (a fresh copy of a mutable one, as `Field.missing` gives it); None when
    msgspec cannot make that Struct."""
    spec: list[tuple[Any, ...]] = []
    query: list[tuple[str, str, bool, bool]] = []
    rest: list[tuple[str, str, str, bool, bool]] = []
    for f in fields:
        if f.location == "path":
            tp: Any = f.type  # as _path_converter converts it
            words = False
        elif f.convert is None:
            tp, words = Any, False  # passed as is
        else:
            tp, words = _present_type(f.type), _bool_words(f.type, f.multi)
        if f.required:
            spec.append((f.name, tp))
        elif type(f.default) in (list, dict, set):
            spec.append((f.name, tp, msgspec.field(default_factory=f.missing)))
        else:
            spec.append((f.name, tp, f.default))
        if f.location == "query":
            query.append((f.name, f.wire, f.multi, words))
        else:
            rest.append((f.name, f.location, f.wire, f.multi, words))
    if not fields:
        return _FastPlan(None, (), ())
    try:
        struct = msgspec.defstruct("Parameters", spec, kw_only=True, gc=False)
    except (TypeError, ValueError):
        return None
    return _FastPlan(struct, tuple(query), tuple(rest))


def _bind_one(f: Field, raw: Any, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    if raw is None or (f.multi and not raw):
        if f.required:
            return _entry([f.location, f.wire], "Field required", "missing")
        kwargs[f.name] = f.missing()
        return None
    convert = f.convert
    if convert is None:
        kwargs[f.name] = raw
        return None
    try:
        kwargs[f.name] = convert(raw)
    except msgspec.ValidationError as exc:
        return _msgspec_error(exc, [f.location, f.wire])
    except (ValueError, TypeError, OverflowError) as exc:  # a converter of the path's
        return _entry([f.location, f.wire], str(exc) or type(exc).__name__, "value_error")
    return None


def _json_media_type(conn: Any) -> bool:
    value: str | None = conn.headers.get("content-type")
    if not value:
        return False
    known = _JSON_MEDIA.get(value)
    if known is None:
        media = value.partition(";")[0].strip().lower()
        known = media == "application/json" or (
            media.startswith("application/") and media.endswith("+json")
        )
        if len(_JSON_MEDIA) < 64:  # a few values serve most requests
            _JSON_MEDIA[value] = known
    return known


#: `_json_media_type`'s answers, by Content-Type value.
_JSON_MEDIA: dict[str, bool] = {}


def _bind_body(body: BodyField, conn: Any) -> Any:
    data = conn._body  # read by the pipeline before the handler's arguments are bound
    if not data:
        if body.required:
            raise RequestValidationError([_entry(["body"], "Field required", "missing")])
        return copy.copy(body.default) if type(body.default) in (list, dict) else body.default
    if not _json_media_type(conn):
        raise HTTPException(
            415, "The body must be JSON: send it with Content-Type: application/json"
        )
    if body.pydantic:
        return _pydantic_body(body, data)
    try:
        return body.decode(data)
    except msgspec.ValidationError as exc:  # (a DecodeError too: caught first)
        error = exc
    except msgspec.DecodeError:
        raise HTTPException(400, "The body is not valid JSON") from None
    except RecursionError:  # msgspec's guard against deep nesting: no 500
        raise HTTPException(400, _TOO_DEEP) from None
    try:
        msgspec.json.decode(data)  # a body that is not JSON at all is a 400 first
    except msgspec.ValidationError:
        pass  # JSON, with a number out of range (5,000 digits): the 422
    except msgspec.DecodeError:
        raise HTTPException(400, "The body is not valid JSON") from None
    except RecursionError:
        raise HTTPException(400, _TOO_DEEP) from None
    raise RequestValidationError([_msgspec_error(error, ["body"])])


_TOO_DEEP = "The JSON body is nested too deeply"


def _pydantic_body(body: BodyField, data: bytes) -> Any:
    import pydantic

    try:
        return body.decode(data)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        invalid = [e for e in errors if e["type"] == "json_invalid"]
        if invalid and "number out of range" in invalid[0]["msg"]:
            # valid JSON, a number pydantic's parser will not hold (5,000 digits)
            raise RequestValidationError(
                [_entry(["body"], "Number out of range", "value_error")]
            ) from None
        if invalid:
            raise HTTPException(400, "The body is not valid JSON") from None
        raise RequestValidationError(
            [_entry(["body", *e["loc"]], e["msg"], e["type"]) for e in errors]
        ) from None


# --------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------


def _describe(fn: Any) -> str:
    mod = getattr(fn, "__module__", None) or "?"
    return f"{mod}:{getattr(fn, '__qualname__', repr(fn))}"


def _produced(converter: Any) -> Any:
    """The type a path converter gives (None: a custom one's, unknown)."""
    import uuid

    kinds = {
        "_StrConverter": str,
        "_PathConverter": str,
        "_IntConverter": int,
        "_FloatConverter": float,
        "_UUIDConverter": uuid.UUID,
    }
    return kinds.get(type(converter).__name__)


def analyse_typed(
    fn: Callable[..., Any],
    sig: inspect.Signature,
    hints: dict[str, Any],
    conn_names: tuple[str, ...],
    path_params: dict[str, Any],
) -> Binder | None:
    """The binder of `fn`, or None when nothing needs binding beyond the request
    and untyped path parameters (`path_params`: name -> its converter)."""
    fields: list[Field] = []
    body: BodyField | FormBody | None = None
    passthrough: list[str] = []
    where = _describe(fn)
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in conn_names:
            continue
        annotation = hints.get(p.name, Any)
        inner, extras = _strip_annotated(annotation)
        markers = [
            e
            for e in extras
            if isinstance(e, Param) or (isinstance(e, type) and issubclass(e, Param))
        ]
        if len(markers) > 1:
            raise TypeError(f"parameter {p.name!r} of handler {where} has two markers")
        marker = markers[0] if markers else None
        if isinstance(marker, type):
            raise TypeError(f"parameter {p.name!r} of handler {where}: write {marker.__name__}()")
        required = p.default is p.empty
        default = None if required else p.default
        if isinstance(default, Param):
            raise TypeError(
                f"parameter {p.name!r} of handler {where}: put {type(default).__name__}() "
                f"in Annotated[...] (`{p.name}: Annotated[{getattr(inner, '__name__', inner)}, "
                f"{type(default).__name__}(...)] = default`)"
            )
        if p.name in path_params:
            if marker is not None and not isinstance(marker, Path):
                raise TypeError(
                    f"parameter {p.name!r} of handler {where} is a path parameter, "
                    f"not {type(marker).__name__}()"
                )
            produced = _produced(path_params[p.name])
            plain = inner is Any or inner is inspect.Parameter.empty or inner is produced
            if plain and (marker is None or not marker.constraints()):
                passthrough.append(p.name)
                continue
            tp = _meta_type(annotation, marker)
            fields.append(
                Field(p.name, "path", p.name, annotation, tp, True, None, False, marker,
                      _path_converter(tp))
            )  # fmt: skip
            continue
        location = marker.location if marker is not None else None
        if location is None and is_model(annotation):
            location = "body"
        if location == "form":
            if body is not None and body.location != "form":
                raise TypeError(_json_and_form(where, body.name, p.name))  # type: ignore[arg-type]
            from ._typed_forms import form_body

            body = form_body(p.name, annotation, marker, required, default, where, body)  # type: ignore[arg-type]
            continue
        if location == "body":
            if body is not None and body.location == "form":
                raise TypeError(_json_and_form(where, p.name, _form_name(body)))  # type: ignore[arg-type]
            if body is not None:
                raise TypeError(
                    f"handler {where} has two body parameters ({body.name!r} and {p.name!r}): "
                    "a request has one body; put both in one model"
                )
            body = _body_field(p.name, annotation, marker, required, default, where)
            continue
        location = location or "query"
        if location == "path":
            raise TypeError(
                f"parameter {p.name!r} of handler {where} is marked Path() but the route's "
                f"path has no {{{p.name}}}"
            )
        if is_model(inner):
            raise TypeError(
                f"parameter {p.name!r} of handler {where}: a model cannot be a {location} parameter"
            )
        base = _without_none(inner)[0]
        multi = typing.get_origin(base) in (list, tuple, set, frozenset)
        if location == "cookie" and multi:
            raise TypeError(f"cookie parameter {p.name!r} of handler {where} cannot be a list")
        wire = marker.alias if marker is not None and marker.alias else p.name
        if location == "header" and not (marker is not None and marker.alias):
            wire = p.name.replace("_", "-")
        if location == "header":
            wire = wire.lower()
        tp = _meta_type(annotation, marker)
        _check_type(tp, p.name, where)
        convert = _converter(tp, multi)
        if not required and default is not None:
            _check_default(convert, default, tp, p.name, where)
        fields.append(
            Field(p.name, location, wire, annotation, tp, required, default, multi, marker, convert)
        )
    if not fields and body is None:
        return None
    return Binder(conn_names, tuple(passthrough), fields, body)


def _form_name(form: FormBody) -> str:
    return form.name if form.name is not None else form.items[0].name


def _json_and_form(where: str, json_name: str, form_name: str) -> str:
    return (
        f"handler {where} takes the JSON body {json_name!r} and the form field {form_name!r}: "
        "a request has one body, JSON or a form; put the JSON fields in the Form() model, "
        "or send JSON only"
    )


def _path_converter(tp: Any) -> Callable[[Any], Any]:
    def convert(raw: Any) -> Any:
        return msgspec.convert(raw, tp, strict=False)

    return convert


_SCALAR_INFO = (
    "StrType",
    "IntType",
    "FloatType",
    "BoolType",
    "DecimalType",
    "UUIDType",
    "DateTimeType",
    "DateType",
    "TimeType",
    "EnumType",
    "LiteralType",
    "NoneType",
    "AnyType",
)
_LIST_INFO = ("ListType", "SetType", "FrozenSetType", "VarTupleType")


def _readable(info: Any, top: bool) -> bool:
    kind = type(info).__name__
    if kind in _SCALAR_INFO:
        return True
    if kind == "UnionType":
        return all(_readable(t, top) for t in info.types)
    if kind in _LIST_INFO and top:
        return _readable(info.item_type, False)
    return False


def _check_type(tp: Any, name: str, where: str) -> None:
    """Refuse, at registration, a type a query parameter, header or cookie cannot
    be read as: the scalars of API.md section 13, optional, or a list of them."""
    try:
        readable = _readable(msgspec.inspect.type_info(tp), True)
    except (TypeError, ValueError):
        readable = False
    if not readable:
        from ._typed_forms import is_file_type

        if is_file_type(tp):
            raise TypeError(
                f"parameter {name!r} of handler {where}: an uploaded file is a form field; "
                f"write `{name}: Annotated[{_type_name(tp)}, Form()]`"
            )
        raise TypeError(
            f"parameter {name!r} of handler {where} has a type microweb cannot read from a "
            f"query string, header or cookie: {tp!r} (str, int, float, bool, Decimal, UUID, "
            "datetime, date, time, an Enum or Literal, optional, or a list of them; a model "
            "is the JSON body)"
        )


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp).replace("microweb.datastructures.", "")


def _check_default(
    convert: Callable[[Any], Any] | None, default: Any, tp: Any, name: str, where: str
) -> None:
    """A default that breaks its own constraints is a mistake of the handler's."""
    if convert is None or isinstance(default, enum.Enum):
        return
    try:
        msgspec.convert(default, tp, strict=False)
    except msgspec.ValidationError as exc:
        raise TypeError(
            f"the default of parameter {name!r} of handler {where} ({default!r}) breaks "
            f"its own type or constraints: {exc}"
        ) from None


def _body_field(
    name: str, annotation: Any, marker: Param | None, required: bool, default: Any, where: str
) -> BodyField:
    tp = _meta_type(annotation, marker)
    if _uses_pydantic(annotation):
        import pydantic

        adapter = pydantic.TypeAdapter(tp)
        return BodyField(name, "body", annotation, tp, required, default, marker,
                         adapter.validate_json, True)  # fmt: skip
    try:
        decoder = msgspec.json.Decoder(tp)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"body parameter {name!r} of handler {where} has a type msgspec cannot decode: "
            f"{tp!r} ({exc})"
        ) from None
    if not required and default is not None:
        _check_default(decoder.decode, default, tp, name, where)
    return BodyField(name, "body", annotation, tp, required, default, marker, decoder.decode, False)


def return_converter(
    fn: Callable[..., Any], hints: dict[str, Any] | None = None
) -> Callable[[Any], Any] | None:
    """For a handler whose return annotation is a model (or a list of one): what
    turns its return value into that type (undeclared fields dropped, never
    leaked); None for any other handler. A value already of the model's type
    is returned as it is, not validated again. `hints`: `fn`'s resolved
    annotations, when the caller has them already."""
    if hints is None:
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception:
            return None
    hint = hints.get("return")
    if hint is None or not is_model(hint):
        return None
    inner = _strip_annotated(hint)[0]
    cls = inner if isinstance(inner, type) and not typing.is_typeddict(inner) else None
    if _uses_pydantic(hint):
        import pydantic

        adapter = pydantic.TypeAdapter(hint)

        def to_pydantic(value: Any) -> Any:
            if cls is not None and type(value) is cls:
                return value
            if isinstance(value, pydantic.BaseModel):  # a subclass, another model:
                value = value.model_dump()  # by its fields (the undeclared dropped)
            return adapter.validate_python(value, from_attributes=True)

        return to_pydantic

    def to_model(value: Any) -> Any:
        if cls is not None and type(value) is cls:
            return value  # (a subclass is converted: the fields it adds never leak)
        if isinstance(value, msgspec.Struct) or (
            dataclasses.is_dataclass(value) and not isinstance(value, type)
        ):
            value = msgspec.to_builtins(value)  # another model: by its fields
        return msgspec.convert(value, hint, from_attributes=True)

    return to_model
