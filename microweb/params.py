"""Markers for typed handler parameters: where a value comes from, and its rules.

Used inside ``Annotated``::

    def list_items(limit: Annotated[int, Query(ge=1, le=100)] = 10,
                   x_token: Annotated[str | None, Header()] = None): ...

A parameter without a marker is a query parameter, unless it is the request,
a path parameter, or a model (the JSON body). The constraints become a
``msgspec.Meta`` on the parameter's type, so msgspec checks them; a
``msgspec.Meta`` written in the ``Annotated`` is honoured as well.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["Body", "Cookie", "Form", "Header", "Param", "Path", "Query"]


class Param:
    """The base of the markers: the wire name, documentation and constraints."""

    #: Where the value is read: "query", "header", "cookie", "path", "body", "form".
    location: ClassVar[str] = ""

    __slots__ = (
        "alias",
        "deprecated",
        "description",
        "examples",
        "ge",
        "gt",
        "include_in_schema",
        "le",
        "lt",
        "max_length",
        "min_length",
        "multiple_of",
        "pattern",
    )

    def __init__(
        self,
        *,
        alias: str | None = None,
        description: str | None = None,
        deprecated: bool = False,
        examples: list[Any] | None = None,
        include_in_schema: bool = True,
        gt: float | None = None,
        ge: float | None = None,
        lt: float | None = None,
        le: float | None = None,
        multiple_of: float | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
        pattern: str | None = None,
    ) -> None:
        self.alias = alias
        self.description = description
        self.deprecated = deprecated
        self.examples = examples
        self.include_in_schema = include_in_schema
        self.gt = gt
        self.ge = ge
        self.lt = lt
        self.le = le
        self.multiple_of = multiple_of
        self.min_length = min_length
        self.max_length = max_length
        self.pattern = pattern

    def constraints(self) -> dict[str, Any]:
        """The constraints that were given, as ``msgspec.Meta`` keywords."""
        names = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "pattern")
        return {n: v for n in names if (v := getattr(self, n)) is not None}

    def __repr__(self) -> str:
        given = {n: getattr(self, n) for n in self.__slots__}
        shown = ", ".join(
            f"{k}={v!r}"
            for k, v in given.items()
            if v is not None
            and not (k == "deprecated" and v is False)
            and not (k == "include_in_schema" and v is True)
        )
        return f"{type(self).__name__}({shown})"


class Query(Param):
    """A query-string parameter (the default for a plain parameter); a ``list[...]``
    one takes every repeated key."""

    location = "query"
    __slots__ = ()


class Header(Param):
    """A request header: parameter ``x_token`` reads ``x-token`` (case-insensitive)."""

    location = "header"
    __slots__ = ()


class Cookie(Param):
    """A cookie of the request."""

    location = "cookie"
    __slots__ = ()


class Path(Param):
    """Constraints and documentation for a path parameter (``{item_id}``)."""

    location = "path"
    __slots__ = ()


class Body(Param):
    """The JSON body, for a type that is not a model (``Annotated[dict, Body()]``)."""

    location = "body"
    __slots__ = ()


class Form(Param):
    """A model (or a value) filled from an urlencoded or multipart form."""

    location = "form"
    __slots__ = ()
