"""Path templates, converters and the compiled matcher (a segment trie).

Strategy: routes are compiled into a segment trie when they are registered.
A request walks the trie one decoded segment at a time (a dict lookup for
static segments, then the parameter children in registration order), so the
cost of a match depends on the depth of the path, not on how many routes the
app has. Fully static paths are also kept in one dict for a single lookup.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from .routing import Route

__all__ = [
    "Converter",
    "Matcher",
    "allowed_methods",
    "compile_template",
    "default_converters",
    "reject_flask_syntax",
    "template_params",
]

_NO = object()  # "this segment does not match"

#: Characters left unescaped in a built path segment (RFC 3986 pchar, minus "+").
_SEGMENT_SAFE = "-._~!$&'()*,;=:@"
#: Longest int/float path parameter accepted: int() of a huge digit string is
#: slow (and raises past 4300 digits), so longer ones simply do not match.
_MAX_NUMBER_DIGITS = 64


class Converter:
    """Turns one path segment (or, for ``path``, the rest of the path) into a value.

    `regex` describes what the converter accepts; built-in converters check
    faster than a regex would, custom ones (`App.add_converter`) use the regex.
    """

    def __init__(
        self,
        regex: str,
        to_python: Callable[[str], Any] = str,
        to_url: Callable[[Any], str] = str,
    ) -> None:
        self.regex = regex
        self._compiled = re.compile(regex)
        self._to_python = to_python
        self._to_url = to_url

    def match(self, segment: str) -> Any:
        """The converted value of `segment`, or the module's no-match sentinel."""
        if self._compiled.fullmatch(segment) is None:
            return _NO
        try:
            return self._to_python(segment)
        except ValueError:
            return _NO

    def to_url(self, value: Any) -> str:
        return self._to_url(value)


class _StrConverter(Converter):
    def __init__(self) -> None:
        super().__init__(r"[^/]+")

    def match(self, segment: str) -> Any:
        return segment if segment else _NO


class _IntConverter(Converter):
    def __init__(self) -> None:
        super().__init__(r"[0-9]+", int)

    def match(self, segment: str) -> Any:
        if segment.isdigit() and segment.isascii() and len(segment) <= _MAX_NUMBER_DIGITS:
            return int(segment)
        return _NO

    def to_url(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"an int path parameter must be a non-negative int, not {value!r}")
        return str(value)


class _FloatConverter(Converter):
    def __init__(self) -> None:
        super().__init__(r"[0-9]+(\.[0-9]+)?", float)

    def match(self, segment: str) -> Any:
        if len(segment) > 2 * _MAX_NUMBER_DIGITS:
            return _NO
        return super().match(segment)

    def to_url(self, value: Any) -> str:
        # Plain decimal notation, as the regex accepts it: repr() would give
        # "1e+20", "1e-07" or (for a str or Decimal) quotes, none of which route.
        # Decimal(repr(f)) is the shortest text that reads back as the same float.
        if isinstance(value, str):
            text = value  # as given, when the regex accepts it
        elif isinstance(value, float):
            text = _plain_decimal(Decimal(repr(value)) if math.isfinite(value) else None)
        elif isinstance(value, int) and not isinstance(value, bool):
            # (a huge int is refused before it is converted: that alone is slow)
            text = _plain_decimal(Decimal(value) if value.bit_length() <= 512 else None)
        elif isinstance(value, Decimal):
            text = _plain_decimal(value)
        else:
            text = ""
        if self.match(text) is _NO:  # what would not route back to this converter
            raise ValueError(
                f"not a value for a float path parameter: {value!r} (a non-negative int, "
                f"float, Decimal or digits str, at most {2 * _MAX_NUMBER_DIGITS} characters "
                "written out in plain notation)"
            )
        return text


def _plain_decimal(value: Decimal | None) -> str:
    """`value` in plain notation ("100000", "0.0000001"); "" when it has none the
    float converter accepts (not finite, negative, or too many digits to write)."""
    if value is None or not value.is_finite():
        return ""
    if value.is_zero():
        return "0"  # -0.0 included: it is the same float as 0.0
    # bound the digits before formatting: Decimal("1E+999999999") must not be written out
    if value < 0 or abs(value.adjusted()) > 2 * _MAX_NUMBER_DIGITS:
        return ""
    if len(value.as_tuple().digits) > 2 * _MAX_NUMBER_DIGITS:
        return ""
    text = format(value, "f")
    return text.rstrip("0").removesuffix(".") if "." in text else text


class _UUIDConverter(Converter):
    def __init__(self) -> None:
        super().__init__(
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            uuid.UUID,
        )


class _PathConverter(Converter):
    def __init__(self) -> None:
        super().__init__(r".+")

    def match(self, segment: str) -> Any:
        return segment if segment else _NO


def default_converters() -> dict[str, Converter]:
    return {
        "str": _StrConverter(),
        "int": _IntConverter(),
        "float": _FloatConverter(),
        "uuid": _UUIDConverter(),
        "path": _PathConverter(),
    }


# --------------------------------------------------------------------------
# Path templates
# --------------------------------------------------------------------------

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_][A-Za-z0-9_]*))?\}")

#: Flask's ``<int:id>``: a mistake in a route, refused with the brace form.
_FLASK_PARAM = re.compile(
    r"<(?:([A-Za-z_][A-Za-z0-9_]*)(?:\([^)>]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>"
)
#: Flask's converters in microweb's words ("" for the default, one segment).
_FLASK_CONVERTERS = {"string": "", "default": "", "any": ""}


def reject_flask_syntax(path: str) -> None:
    """Raise ValueError for a Flask-style parameter, showing the template in braces."""
    if "<" not in path or _FLASK_PARAM.search(path) is None:
        return

    def braces(m: re.Match[str]) -> str:
        conv = _FLASK_CONVERTERS.get(m.group(1) or "string", m.group(1))
        return "{" + m.group(2) + (f":{conv}" if conv else "") + "}"

    raise ValueError(
        f"route path {path!r} uses Flask's <converter:name> syntax; microweb writes "
        f"parameters in braces: {_FLASK_PARAM.sub(braces, path)!r}"
    )


def template_params(path: str) -> list[str]:
    """The parameter names of a path template, in order (no converter needed)."""
    return [m.group(1) for m in _PARAM.finditer(path)]


@dataclass(frozen=True)
class _Static:
    text: str


@dataclass(frozen=True)
class _Param:
    name: str
    converter: Converter
    conv_name: str


@dataclass(frozen=True)
class _Mixed:
    """A segment mixing text and parameters, like ``{name}.{ext}``."""

    pattern: re.Pattern[str]
    params: tuple[tuple[str, Converter], ...]
    parts: tuple[str | tuple[str, Converter], ...]  # for url building
    source: str

    def match(self, segment: str) -> Any:
        m = self.pattern.fullmatch(segment)
        if m is None:
            return _NO
        values = {}
        for name, conv in self.params:
            v = conv.match(m.group(name))
            if v is _NO:
                return _NO
            values[name] = v
        return values


@dataclass(frozen=True)
class _Rest:
    name: str
    converter: Converter


_Segment = _Static | _Param | _Mixed | _Rest


def compile_template(path: str, converters: dict[str, Converter]) -> tuple[_Segment, ...]:
    """Split a path template into segment specs; raise ValueError when it is malformed."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"route path must start with '/': {path!r}")
    reject_flask_syntax(path)
    specs: list[_Segment] = []
    seen: set[str] = set()

    def conv_for(name: str, conv_name: str | None) -> Converter:
        if name in seen:
            raise ValueError(f"duplicate parameter {name!r} in {path!r}")
        seen.add(name)
        key = conv_name or "str"
        if key not in converters:
            raise ValueError(f"unknown converter {key!r} in {path!r}")
        return converters[key]

    for seg in path[1:].split("/"):
        if "{" not in seg and "}" not in seg:
            specs.append(_Static(seg))
            continue
        m = _PARAM.fullmatch(seg)
        if m is not None:
            name, conv_name = m.group(1), m.group(2)
            conv = conv_for(name, conv_name)
            if (conv_name or "str") == "path":
                specs.append(_Rest(name, conv))
            else:
                specs.append(_Param(name, conv, conv_name or "str"))
            continue
        # a segment mixing text and parameters
        regex: list[str] = []
        params: list[tuple[str, Converter]] = []
        parts: list[str | tuple[str, Converter]] = []
        pos = 0
        for m in _PARAM.finditer(seg):
            text = seg[pos : m.start()]
            if "{" in text or "}" in text:
                raise ValueError(f"malformed path template {path!r}")
            if text:
                regex.append(re.escape(text))
                parts.append(text)
            name, conv_name = m.group(1), m.group(2)
            if (conv_name or "str") == "path":
                raise ValueError(f"a path parameter must be a whole segment in {path!r}")
            conv = conv_for(name, conv_name)
            regex.append(f"(?P<{name}>{conv.regex})")
            params.append((name, conv))
            parts.append((name, conv))
            pos = m.end()
        tail = seg[pos:]
        if "{" in tail or "}" in tail or not params:
            raise ValueError(f"malformed path template {path!r}")
        if tail:
            regex.append(re.escape(tail))
            parts.append(tail)
        specs.append(_Mixed(re.compile("".join(regex)), tuple(params), tuple(parts), seg))
    return tuple(specs)


def _quote_segment(text: str) -> str:
    return quote(text, safe=_SEGMENT_SAFE)


# --------------------------------------------------------------------------
# The matcher
# --------------------------------------------------------------------------


class _Leaf:
    """The routes that end at one trie node."""

    __slots__ = ("_allow", "answers", "routes", "websocket")

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.websocket: Route | None = None
        self._allow: str | None = None
        #: The route for each method (HEAD: GET's, unless a route takes HEAD),
        #: and for None, the WebSocket route: a match is one lookup.
        self.answers: dict[str | None, Route] = {}

    def add(self, route: Route) -> None:
        """Add `route` (the first route added for a method keeps it)."""
        if route.websocket:
            if self.websocket is None:
                self.websocket = route
        else:
            for method in route.methods:
                self.routes.setdefault(method, route)
        answers: dict[str | None, Route] = {}
        answers.update(self.routes)
        if "HEAD" not in answers and "GET" in answers:
            answers["HEAD"] = answers["GET"]
        if self.websocket is not None:
            answers[None] = self.websocket
        self.answers = answers

    def methods(self) -> set[str]:
        methods = set(self.routes)
        if "GET" in methods:
            methods.add("HEAD")
        if methods:
            methods.add("OPTIONS")
        return methods


_NO_LEAVES: list[_Leaf] = []


def allowed_methods(leaves: list[_Leaf]) -> set[str]:
    """Every method the routes in `leaves` answer (HEAD with GET; OPTIONS always)."""
    allowed: set[str] = set()
    for leaf in leaves:
        allowed |= leaf.methods()
    return allowed


class _Node:
    __slots__ = ("dynamic", "leaf", "rest", "static")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        #: (spec, its match function, child): converter.match or _Mixed.match
        self.dynamic: list[tuple[_Param | _Mixed, Callable[[str], Any], _Node]] = []
        self.rest: list[tuple[_Rest, _Node]] = []
        self.leaf: _Leaf | None = None


def _same_spec(a: Any, b: Any) -> bool:
    if isinstance(a, _Param) and isinstance(b, _Param):
        return a.name == b.name and a.conv_name == b.conv_name
    if isinstance(a, _Mixed) and isinstance(b, _Mixed):
        return a.source == b.source
    if isinstance(a, _Rest) and isinstance(b, _Rest):
        return a.name == b.name and a.converter is b.converter
    return False


class Matcher:
    """All routes of an app, compiled into a segment trie."""

    __slots__ = ("_root", "_static", "fallback", "slash_routes")

    def __init__(self) -> None:
        self._root = _Node()
        self._static: dict[str, _Leaf] = {}
        #: Whether any route's path but the root ends with "/" (else "/x" never
        #: redirects to "/x/": a 404 then searches the trie once, not twice).
        self.slash_routes = False
        #: Routes tried only when none of these matches (the app's docs routes).
        self.fallback: Matcher | None = None

    def add(self, route: Route) -> None:
        if route.path.endswith("/") and route.path != "/":
            self.slash_routes = True
        node = self._root
        for spec in route.segments:
            if isinstance(spec, _Static):
                node = node.static.setdefault(spec.text, _Node())
                continue
            if isinstance(spec, _Rest):
                for rest, child in node.rest:
                    if _same_spec(rest, spec):
                        node = child
                        break
                else:
                    child = _Node()
                    node.rest.append((spec, child))
                    node = child
                continue
            for dyn, _, child in node.dynamic:
                if _same_spec(dyn, spec):
                    node = child
                    break
            else:
                child = _Node()
                fn = spec.converter.match if isinstance(spec, _Param) else spec.match
                node.dynamic.append((spec, fn, child))
                node = child
        leaf = node.leaf
        if leaf is None:
            leaf = node.leaf = _Leaf()
        leaf.add(route)
        if all(isinstance(s, _Static) for s in route.segments):
            self._static["/" + "/".join(s.text for s in route.segments)] = leaf  # type: ignore[union-attr]

    def match(
        self, method: str | None, path: str, segments: list[str] | None = None
    ) -> tuple[Route | None, dict[str, Any], list[_Leaf]]:
        """Find the route for `method` (None: a WebSocket) and the decoded `path`.

        Returns ``(route, params, [])`` on a match, ``(None, {}, leaves)`` when
        the path matches but not the method (`leaves` tell what it does have),
        ``(None, {}, [])`` when nothing matches. `segments` are the decoded
        segments when one holds an encoded ``/`` (so `path` cannot be split).
        """
        if segments is None:
            leaf = self._static.get(path)
            if leaf is not None:
                route = leaf.answers.get(method)
                if route is not None:
                    return route, {}, _NO_LEAVES
            segments = path.split("/")
        if "\x00" in path:  # a decoded %00 never names a resource
            return None, {}, _NO_LEAVES
        partial: list[_Leaf] = []
        found = _search(self._root, segments, 1, len(segments), method, partial)
        if found is not None:
            return found[0], found[1], _NO_LEAVES
        fallback = self.fallback
        # (its routes' paths all begin with a static segment: one dict lookup
        # keeps a 404 from searching a second trie)
        if fallback is not None and len(segments) > 1 and segments[1] in fallback._root.static:
            route, params, leaves = fallback.match(method, path, segments)
            if route is not None or not partial:
                return route, params, leaves
        return None, {}, partial


def _search(
    node: _Node, segs: list[str], i: int, n: int, method: str | None, partial: list[_Leaf]
) -> tuple[Route, dict[str, Any]] | None:
    if i == n:
        leaf = node.leaf
        if leaf is None:
            return None
        route = leaf.answers.get(method)
        if route is None:
            partial.append(leaf)
            return None
        return route, {}
    seg = segs[i]
    child = node.static.get(seg)
    if child is not None:
        found = _search(child, segs, i + 1, n, method, partial)
        if found is not None:
            return found
    for spec, match, child in node.dynamic:
        value = match(seg)
        if value is _NO:
            continue
        found = _search(child, segs, i + 1, n, method, partial)
        if found is not None:
            if isinstance(spec, _Param):
                found[1][spec.name] = value
            else:
                found[1].update(value)
            return found
    for rest, child in node.rest:
        for j in range(n, i, -1):  # longest first
            # the rest of the template first: joining the segments for every
            # split point would make a long path quadratic
            tried: list[_Leaf] = []
            found = _search(child, segs, j, n, method, tried)
            if found is None:
                partial.extend(tried)
                continue
            value = rest.converter.match("/".join(segs[i:j]))
            if value is _NO:
                continue
            partial.extend(tried)
            found[1][rest.name] = value
            return found
    return None
