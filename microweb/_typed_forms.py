"""``Form()`` parameters: a model, or single fields, filled from a request's form.

`form_body` (called by `analyse_typed` at registration) turns a ``Form()``
model parameter, or the handler's scalar ``Form()`` parameters, into a
`FormBody`; per request, `FormBody.bind` reads the form the pipeline parsed
(`forms.read_form_sync` / `read_form_async`, before binding) and fills the
handler's arguments, or raises `RequestValidationError` listing every bad
field with ``loc`` ``["form", field, ...]``.

Strategy: a form is a multi-dict of strings and files, so each field is
read like a query parameter (a list field takes every repeated key, bool
words are understood) and converted by msgspec against the field's own type,
so every invalid field is listed. A msgspec model (Struct, dataclass,
TypedDict) is then built by one ``msgspec.convert`` of the converted values,
which applies defaults, renames and ``__post_init__``; a pydantic model gets
the raw values and is validated by pydantic. An empty value counts as absent
for a field that is not a string (what a browser sends for an empty number
input or an unchosen file), so an optional field keeps its default.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from ._typed import (
    RequestValidationError,
    _check_default,
    _converter,
    _entry,
    _meta_type,
    _msgspec_error,
    _pydantic_model,
    _readable,
    _strip_annotated,
    _without_none,
    is_model,
)
from .datastructures import FormData, UploadFile
from .exceptions import HTTPException
from .forms import FORM_TYPES, form_kind, parse_form_sync
from .params import Param

__all__ = ["FormBody", "FormItem", "form_body", "is_file_type"]

_LISTS = (list, tuple, set, frozenset)
_EMPTY = FormData()


def _element(tp: Any) -> tuple[Any, bool]:
    """(the type a field's values have, whether the field takes repeated keys)."""
    base = _without_none(_strip_annotated(tp)[0])[0]
    if typing.get_origin(base) in _LISTS:
        args = typing.get_args(base)
        return (_without_none(_strip_annotated(args[0])[0])[0] if args else Any), True
    return base, False


def is_file_type(tp: Any) -> bool:
    """``UploadFile``, ``UploadFile | None`` or a list of ``UploadFile``."""
    return _element(tp)[0] is UploadFile


@dataclasses.dataclass(slots=True)
class FormItem:
    """One form field: where it goes, its wire name, and how it is checked."""

    name: str  # the handler's parameter, or the model's field (its wire name for msgspec)
    wire: str
    type: Any
    required: bool
    default: Any  # a scalar parameter's default (a model applies its own)
    multi: bool
    file: bool
    blank_absent: bool  # "" (or an empty, nameless file) counts as absent
    convert: Callable[[Any], Any] | None


@dataclasses.dataclass(slots=True)
class FormBody:
    """The form of a handler: a model parameter (`name`), or scalar Form() parameters."""

    name: str | None  # the model parameter; None: the items are the parameters
    annotation: Any  # the model type (None for scalar parameters)
    required: bool
    default: Any
    marker: Param | None
    items: list[FormItem]
    build: Callable[[dict[str, Any]], Any] | None
    pydantic: bool
    location: str = "form"

    def bind(self, conn: Any, kwargs: dict[str, Any]) -> None:
        """Fill `kwargs` from the request's form; RequestValidationError lists what is wrong."""
        form = _request_form(conn)
        if form is None:  # no form at all (no Content-Type, no body)
            if self.name is not None and not self.required:
                kwargs[self.name] = self.default
                return
            form = _EMPTY
        build = self.build
        values: dict[str, Any] = {} if build is not None else kwargs
        errors: list[dict[str, Any]] = []
        for item in self.items:
            raw: Any
            if item.multi:
                raw = form.getall(item.wire)
                if item.blank_absent:
                    raw = [v for v in raw if not _blank(v)]
                if not raw:
                    raw = None
            else:
                raw = form.get(item.wire)
                if item.blank_absent and raw is not None and _blank(raw):
                    raw = None
            if raw is None:
                if item.required:
                    errors.append(_entry(["form", item.wire], "Field required", "missing"))
                elif build is None:
                    default = item.default
                    values[item.name] = (
                        copy.copy(default) if type(default) in (list, dict, set) else default
                    )
                continue  # a model applies its own default
            if not self.pydantic:  # (pydantic says so itself, among its other errors)
                wrong = _wrong_kind(item, raw)
                if wrong is not None:
                    errors.append(_entry(["form", item.wire], wrong, "type_error"))
                    continue
            convert = item.convert
            if convert is None:
                values[item.name] = raw
                continue
            try:
                values[item.name] = convert(raw)
            except msgspec.ValidationError as exc:
                errors.append(_msgspec_error(exc, ["form", item.wire]))
        if errors:
            raise RequestValidationError(errors)
        if build is not None:
            kwargs[self.name] = build(values)  # type: ignore[index]


def _blank(value: Any) -> bool:
    if type(value) is str:
        return not value
    return isinstance(value, UploadFile) and not value.filename and not value.size


def _wrong_kind(item: FormItem, raw: Any) -> str | None:
    """A message when a file came for a text field, or text for a file field."""
    values = raw if item.multi else (raw,)
    if item.file:
        if all(isinstance(v, UploadFile) for v in values):
            return None
        return "Expected a file, got a text field"
    if all(type(v) is str for v in values):
        return None
    return "Expected a text field, got a file"


def _request_form(conn: Any) -> FormData | None:
    """The request's parsed form; None when there is none (no Content-Type, no
    body); HTTPException(415) when the body is something else."""
    form: FormData | None = conn._form
    if form is not None:
        return form
    kind = form_kind(conn)
    if kind in FORM_TYPES:
        # the body was read before the pipeline's form step (by a hook's body()):
        # parse the cached copy (no I/O); the form is closed with the request
        form = conn._form = parse_form_sync(conn)
        return form
    if not kind and not conn._body:
        return None
    raise HTTPException(
        415,
        "The body must be a form: send it with Content-Type "
        "application/x-www-form-urlencoded or multipart/form-data",
    )


# --------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------


def _item(
    name: str,
    wire: str,
    tp: Any,
    required: bool,
    default: Any,
    label: str,
    where: str | None = None,
    convert: bool = True,
) -> FormItem:
    """The item of one field of type `tp`; TypeError (naming `label`) for a type a
    form cannot hold. With `where` (a scalar parameter's handler), its default is
    checked against its type and constraints."""
    element, multi = _element(tp)
    if element is UploadFile:
        return FormItem(name, wire, tp, required, default, multi, True, True, None)
    try:
        readable = not is_model(element) and _readable(msgspec.inspect.type_info(tp), True)
    except (TypeError, ValueError):
        readable = False
    if not readable:
        raise TypeError(
            f"{label} has a type a form field cannot hold: {tp!r} (str, int, float, bool, "
            "Decimal, UUID, datetime, date, time, an Enum or Literal, UploadFile, optional, "
            "or a list of them)"
        )
    converter = _converter(tp, multi) if convert else None
    if where is not None and not required and default is not None:
        _check_default(converter, default, tp, name, where)
    text = element is str or element is Any
    return FormItem(name, wire, tp, required, default, multi, False, not text, converter)


def form_body(
    name: str,
    annotation: Any,
    marker: Param | None,
    required: bool,
    default: Any,
    where: str,
    previous: FormBody | None,
) -> FormBody:
    """The FormBody of a ``Form()`` parameter: a model parameter, or one scalar
    parameter added to the handler's others (`previous`)."""
    inner = _strip_annotated(annotation)[0]
    model = _without_none(inner)[0]
    if previous is not None and previous.name is not None:
        raise TypeError(
            f"handler {where} has two body parameters ({previous.name!r} and {name!r}): "
            "a request has one body; put both in one Form() model"
        )
    if is_model(model):
        if previous is not None:
            raise TypeError(
                f"handler {where} takes the Form() model {name!r} and the Form() field(s) "
                f"{', '.join(repr(i.name) for i in previous.items)}: put them all in the model"
            )
        if typing.get_origin(model) is list:
            raise TypeError(
                f"parameter {name!r} of handler {where}: a form fills one model, not a list"
            )
        if required is False and default is not None:
            raise TypeError(
                f"parameter {name!r} of handler {where}: a Form() model's default can only be None"
            )
        return _model_form(name, model, marker, required, default, where)
    wire = marker.alias if marker is not None and marker.alias else name
    label = f"parameter {name!r} of handler {where}"
    tp = annotation if is_file_type(annotation) else _meta_type(annotation, marker)
    item = _item(name, wire, tp, required, default, label, where)
    if previous is None:
        return FormBody(None, None, False, None, None, [item], None, False)
    previous.items.append(item)
    return previous


def _model_form(
    name: str, model: type, marker: Param | None, required: bool, default: Any, where: str
) -> FormBody:
    hints = typing.get_type_hints(model, include_extras=True)
    items: list[FormItem] = []
    of = f"parameter {name!r} of handler {where}"
    if _pydantic_model(model):
        for field_name, info in model.model_fields.items():  # type: ignore[attr-defined]
            alias = info.validation_alias if isinstance(info.validation_alias, str) else None
            wire = alias or info.alias or field_name
            label = f"field {field_name!r} of form model {model.__qualname__} ({of})"
            tp = info.annotation if info.annotation is not None else Any
            # not required here: pydantic lists what is missing with the rest
            items.append(_item(wire, wire, tp, False, None, label, convert=False))
        validate = model.model_validate  # type: ignore[attr-defined]
        build = _pydantic_builder(validate)
        return FormBody(name, model, required, default, marker, items, build, True)
    info = msgspec.inspect.type_info(model)
    for field in info.fields:  # type: ignore[attr-defined]
        label = f"field {field.name!r} of form model {model.__qualname__} ({of})"
        tp = hints.get(field.name, Any)
        items.append(_item(field.encode_name, field.encode_name, tp, field.required, None, label))
    build = _msgspec_builder(model)
    return FormBody(name, model, required, default, marker, items, build, False)


def _msgspec_builder(model: type) -> Callable[[dict[str, Any]], Any]:
    def build(values: dict[str, Any]) -> Any:
        try:
            return msgspec.convert(values, model, strict=False)
        except msgspec.ValidationError as exc:  # __post_init__, a rule across fields
            raise RequestValidationError([_msgspec_error(exc, ["form"])]) from None

    return build


def _pydantic_builder(validate: Callable[[Any], Any]) -> Callable[[dict[str, Any]], Any]:
    import pydantic

    def build(values: dict[str, Any]) -> Any:
        try:
            return validate(values)
        except pydantic.ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            raise RequestValidationError(
                [_entry(["form", *e["loc"]], e["msg"], e["type"]) for e in errors]
            ) from None

    return build
