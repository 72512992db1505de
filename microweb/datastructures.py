"""Multi-dicts for headers, query strings and forms; the state namespace; uploads."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, Generic, TypeVar, overload

__all__ = [
    "FormData",
    "Headers",
    "MultiDict",
    "MutableHeaders",
    "QueryParams",
    "State",
    "UploadFile",
    "check_header_value",
]

V = TypeVar("V")
D = TypeVar("D")

#: RFC 9110 token characters: what a header name may contain.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


#: What no header value may hold: C0 controls (CR, LF, NUL, tab...) and DEL.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def check_header_name(name: str) -> str:
    """Return `name` lower-cased, or raise ValueError if it is not an HTTP token."""
    if not isinstance(name, str) or not name or not _TOKEN.issuperset(name):
        raise ValueError(f"invalid header name {name!r}")
    return name.lower()


def check_header_value(value: object) -> str:
    """Return `value` as a header-safe str; raise ValueError on control characters
    (CR, LF, NUL, tab...) or text that is not Latin-1.

    Checked when a value is set, so a header injection fails where it is written,
    not later inside a server.
    """
    if not isinstance(value, str):
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise TypeError(f"header values must be str, not {type(value).__name__}")
    if value.isascii():
        if value.isprintable():
            return value
    else:
        value.encode("latin-1")  # UnicodeEncodeError is a ValueError
    if _CONTROL.search(value):
        raise ValueError(f"header value contains a control character (CR, LF, NUL...): {value!r}")
    return value


class Headers:
    """Case-insensitive, read-only multi-dict of header fields (str to str).

    `get` gives the first field of a name, `getall` every field as delivered,
    `items()` every ``(name, value)`` pair with names lower-cased.
    """

    __slots__ = ("_list",)

    def __init__(self, raw: Iterable[tuple[str, str]] | Mapping[str, str] | None = None) -> None:
        if raw is None:
            self._list: list[tuple[str, str]] = []
        elif isinstance(raw, Mapping):
            self._list = [(k.lower(), v) for k, v in raw.items()]
        else:
            self._list = [(k.lower(), v) for k, v in raw]

    @classmethod
    def from_lowercase(cls, fields: list[tuple[str, str]]) -> Headers:
        """Wrap `fields` as they are: their names are lower-case already."""
        h = cls.__new__(cls)
        h._list = fields
        return h

    @property
    def raw(self) -> list[tuple[str, str]]:
        """The fields as a list of ``(lower-case name, value)``."""
        return self._list

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: D) -> str | D: ...
    def get(self, key: str, default: object = None) -> object:
        key = key.lower()
        for k, v in self._list:
            if k == key:
                return v
        return default

    def getall(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self._list if k == key]

    def __getitem__(self, key: str) -> str:
        key = key.lower()
        for k, v in self._list:
            if k == key:
                return v
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        key = key.lower()
        return any(k == key for k, _ in self._list)

    def keys(self) -> list[str]:
        return list(dict.fromkeys(k for k, _ in self._list))

    def values(self) -> list[str]:
        return [v for _, v in self._list]

    def items(self) -> list[tuple[str, str]]:
        return list(self._list)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._list)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted(self._list) == sorted(other._list)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._list!r})"


class MutableHeaders(Headers):
    """Response headers: `h[name] = value` replaces, `append` adds a field.

    Every name and value is checked when it is set: CR, LF or NUL in a value, a
    value that is not Latin-1 or a name that is not a token raise ValueError.
    """

    __slots__ = ()

    def __init__(self, raw: Iterable[tuple[str, str]] | Mapping[str, str] | None = None) -> None:
        super().__init__(None)
        if raw is not None:
            pairs = raw.items() if isinstance(raw, Mapping) else raw
            for k, v in pairs:
                self.append(k, v)

    def __setitem__(self, key: str, value: str) -> None:
        key = check_header_name(key)
        value = check_header_value(value)
        lst = self._list
        for i, (k, _) in enumerate(lst):
            if k == key:
                lst[i] = (key, value)
                lst[i + 1 :] = [kv for kv in lst[i + 1 :] if kv[0] != key]
                return
        lst.append((key, value))

    def __delitem__(self, key: str) -> None:
        key = key.lower()
        n = len(self._list)
        self._list[:] = [kv for kv in self._list if kv[0] != key]
        if len(self._list) == n:
            raise KeyError(key)

    def append(self, key: str, value: str) -> None:
        """Add a field, keeping any others of the same name (e.g. ``Set-Cookie``)."""
        self._list.append((check_header_name(key), check_header_value(value)))

    def setdefault(self, key: str, value: str) -> str:
        found = self.get(key)
        if found is not None:
            return found
        self.append(key, value)
        return check_header_value(value)

    def update(self, other: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        pairs = other.items() if isinstance(other, Mapping) else other
        for k, v in pairs:
            self[k] = v

    def pop(self, key: str, default: str | None = None) -> str | None:
        value = self.get(key)
        if value is None:
            return default
        del self[key]
        return value

    def add_vary(self, value: str) -> None:
        """Add `value` to ``Vary`` unless it is there already."""
        current = self.get("vary")
        if current is None:
            self["vary"] = value
        elif value.lower() not in (v.strip().lower() for v in current.split(",")):
            self["vary"] = f"{current}, {value}"


class MultiDict(Generic[V]):
    """Read-only multi-dict: `get`/`[]` give the first value, `getall` all of them.

    Iteration, `keys()`, `items()` and `len` see each key once (with its first
    value); `multi_items()` gives every pair in order.
    """

    __slots__ = ("_dict", "_list")

    def __init__(self, items: Iterable[tuple[str, V]] | Mapping[str, V] | None = None) -> None:
        if items is None:
            pairs: list[tuple[str, V]] = []
        elif isinstance(items, Mapping):
            pairs = list(items.items())
        else:
            pairs = list(items)
        self._list = pairs
        d: dict[str, V] = {}
        for k, v in pairs:
            if k not in d:
                d[k] = v
        self._dict = d

    @overload
    def get(self, key: str) -> V | None: ...
    @overload
    def get(self, key: str, default: D) -> V | D: ...
    def get(self, key: str, default: object = None) -> object:
        """The first value of `key`, or `default` when it is absent."""
        return self._dict.get(key, default)

    def getall(self, key: str) -> list[V]:
        """Every value of `key`, in order (``[]`` when it is absent)."""
        return [v for k, v in self._list if k == key]

    def __getitem__(self, key: str) -> V:
        return self._dict[key]

    def __contains__(self, key: object) -> bool:
        return key in self._dict

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def keys(self) -> list[str]:
        """Each key once, in the order of first appearance."""
        return list(self._dict)

    def values(self) -> list[V]:
        """The first value of each key."""
        return list(self._dict.values())

    def items(self) -> list[tuple[str, V]]:
        """Each key once, with its first value."""
        return list(self._dict.items())

    def multi_items(self) -> list[tuple[str, V]]:
        """Every ``(key, value)`` pair in order, repeated keys included."""
        return list(self._list)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MultiDict):
            return sorted(self._list, key=repr) == sorted(other._list, key=repr)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._list!r})"


class QueryParams(MultiDict[str]):
    """The parsed query string: str keys to str values, blank values kept."""

    __slots__ = ()


class UploadFile:
    """A file field of a multipart form.

    `filename` is exactly what the client sent: data, never a path to use.
    `file` is a binary file object positioned at 0, held in memory up to a
    threshold and spooled to a temporary file beyond it.
    """

    __slots__ = ("content_type", "file", "filename", "headers", "name", "size")

    def __init__(
        self,
        file: IO[bytes],
        *,
        name: str = "",
        filename: str | None = None,
        content_type: str | None = None,
        headers: Headers | None = None,
        size: int = 0,
    ) -> None:
        self.file = file
        self.name = name
        self.filename = filename
        self.content_type = content_type
        self.headers = headers if headers is not None else Headers()
        self.size = size

    def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes of the content (by default, all that is left)."""
        return self.file.read(size)

    def seek(self, offset: int) -> None:
        """Move to byte `offset` of the content (``seek(0)`` to read it again)."""
        self.file.seek(offset)

    def save(self, path: str | os.PathLike[str]) -> int:
        """Copy the content to `path` (chosen by the caller); return the bytes written."""
        self.file.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(self.file, out, 1 << 20)
            written = out.tell()
        self.file.seek(0)
        return written

    def close(self) -> None:
        """Close the file; a temporary file on disk is removed."""
        self.file.close()

    def __repr__(self) -> str:
        return (
            f"UploadFile(filename={self.filename!r}, content_type={self.content_type!r}, "
            f"size={self.size})"
        )

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """In a pydantic model (a ``Form()`` one), a field typed UploadFile holds the file."""
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "format": "binary"}

    @classmethod
    def spooled(cls, max_memory: int) -> IO[bytes]:
        """A temporary binary file that moves to disk beyond `max_memory` bytes."""
        return tempfile.SpooledTemporaryFile(max_size=max_memory, mode="w+b")


class FormData(MultiDict["str | UploadFile"]):
    """A parsed form: text fields are str, file fields `UploadFile`."""

    __slots__ = ()

    def close(self) -> None:
        """Close (and so remove) every uploaded file."""
        for _, value in self._list:
            if isinstance(value, UploadFile):
                value.close()


class State:
    """A plain attribute namespace (`app.state`, `request.state`)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"state has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:  # typed: any attribute may be set
        self.__dict__[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self.__dict__[name]
        except KeyError:
            raise AttributeError(f"state has no attribute {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.__dict__

    def __repr__(self) -> str:
        return f"State({self.__dict__!r})"
