"""Path templates, converters, the compiled matcher, `Route` and `Router`.

Strategy: routes are compiled into a segment trie when they are registered.
A request walks the trie one decoded segment at a time (a dict lookup for
static segments, then the parameter children in registration order), so the
cost of a match depends on the depth of the path, not on how many routes the
app has. Fully static paths are also kept in one dict for a single lookup.
"""

from __future__ import annotations

import inspect
import re
import typing
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

__all__ = ["Converter", "Route", "Router"]

Handler = Callable[..., Any]
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
        return repr(float(value)).removesuffix(".0") if float(value).is_integer() else repr(value)


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
# Routes
# --------------------------------------------------------------------------

#: How a handler's arguments are built from the request (chosen at registration).
_CALL_NONE, _CALL_REQUEST, _CALL_PARAMS, _CALL_GENERAL = range(4)


#: How a step of the pipeline runs: a ``def`` (off the event loop), an ``async
#: def`` (on it), or inline (microweb's own non-blocking code: where it is).
SYNC, ASYNC, INLINE = 0, 1, 2


@dataclass(frozen=True)
class Hook:
    """A registered function and how it runs (`SYNC`, `ASYNC` or `INLINE`)."""

    fn: Handler
    kind: int

    @property
    def is_async(self) -> bool:
        return self.kind == ASYNC

    @classmethod
    def of(cls, fn: Handler) -> Hook:
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        return cls(fn, ASYNC if is_coroutine_function(fn) else SYNC)

    @classmethod
    def inline(cls, fn: Handler) -> Hook:
        """A ``def`` that never blocks (bundled middleware): run on whichever thread
        the pipeline is on, event loop included, instead of paying a thread hop."""
        if is_coroutine_function(fn):
            raise TypeError("an inline hook is a plain def")
        return cls(fn, INLINE)


def is_coroutine_function(fn: Any) -> bool:
    """True for ``async def`` functions, also behind partials and callable objects."""
    while hasattr(fn, "func") and not inspect.isroutine(fn):  # functools.partial
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects
    return call is not None and not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


class Route:
    """One registered route: template, methods, name and handler.

    The handler's signature is read here, once: a parameter named `request` (or
    annotated ``Request``) receives the request, `websocket` (or ``WebSocket``)
    the WebSocket, and every path parameter its converted value.
    """

    __slots__ = (
        "_call",
        "_kwmap",
        "after",
        "before",
        "endpoint",
        "is_async",
        "methods",
        "name",
        "param_names",
        "path",
        "plain",
        "segments",
        "websocket",
    )

    def __init__(
        self,
        path: str,
        endpoint: Handler,
        *,
        methods: Iterable[str],
        name: str,
        segments: tuple[_Segment, ...],
        websocket: bool = False,
        before: tuple[Hook, ...] = (),
        after: tuple[Hook, ...] = (),
    ) -> None:
        self.path = path
        self.endpoint = endpoint
        self.methods = frozenset(methods)
        self.name = name
        self.segments = segments
        self.websocket = websocket
        self.before = before
        self.after = after
        #: No hooks of its own (a router's): with a hookless app, only the handler runs.
        self.plain = not before and not after
        self.is_async = is_coroutine_function(endpoint)
        if websocket and not self.is_async:
            raise TypeError(
                f"WebSocket handler {_describe(endpoint)} must be an async def function"
            )
        names: list[str] = []
        for spec in segments:
            if isinstance(spec, _Param | _Rest):
                names.append(spec.name)
            elif isinstance(spec, _Mixed):
                names.extend(n for n, _ in spec.params)
        self.param_names = tuple(names)
        self._call, self._kwmap = _analyse(endpoint, self.param_names, websocket)

    def arguments(
        self, conn: Any, params: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for one call of the handler."""
        call = self._call
        if call == _CALL_REQUEST:
            return (conn,), _NOKW
        if call == _CALL_PARAMS:
            return (), params
        if call == _CALL_NONE:
            return (), _NOKW
        return (), {name: conn if src is None else params[src] for name, src in self._kwmap}

    def url_path(self, params: dict[str, Any]) -> str:
        """Build this route's path from `params` (converted back, percent-encoded)."""
        missing = [n for n in self.param_names if n not in params]
        if missing:
            raise LookupError(f"route {self.name!r} needs parameter(s) {', '.join(missing)}")
        extra = [n for n in params if n not in self.param_names]
        if extra:
            raise LookupError(f"route {self.name!r} has no parameter(s) {', '.join(extra)}")
        out: list[str] = []
        for spec in self.segments:
            if isinstance(spec, _Static):
                out.append(_quote_segment(spec.text))
            elif isinstance(spec, _Param):
                out.append(_quote_segment(spec.converter.to_url(params[spec.name])))
            elif isinstance(spec, _Rest):
                value = spec.converter.to_url(params[spec.name])
                out.append(quote(value, safe=_SEGMENT_SAFE + "/"))
            else:
                text = "".join(
                    p if isinstance(p, str) else p[1].to_url(params[p[0]]) for p in spec.parts
                )
                out.append(_quote_segment(text))
        return "/" + "/".join(out)

    def __repr__(self) -> str:
        kind = "websocket" if self.websocket else ",".join(sorted(self.methods))
        return f"Route({self.path!r}, {kind}, name={self.name!r})"


_NOKW: dict[str, Any] = {}


def _describe(fn: Any) -> str:
    mod = getattr(fn, "__module__", None) or "?"
    return f"{mod}:{getattr(fn, '__qualname__', repr(fn))}"


def _annotation_names(fn: Handler) -> dict[str, str]:
    """Parameter annotations as class names (``Request``/``WebSocket``) where resolvable."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to the raw text
        hints = dict(getattr(fn, "__annotations__", {}) or {})
    names: dict[str, str] = {}
    for key, hint in hints.items():
        if isinstance(hint, str):
            names[key] = hint.rsplit(".", 1)[-1]
        elif isinstance(hint, type):
            names[key] = hint.__name__
    return names


def _analyse(
    fn: Handler, path_params: tuple[str, ...], websocket: bool
) -> tuple[int, tuple[tuple[str, str | None], ...]]:
    """Decide once how to call `fn`; raise TypeError for a parameter nothing can fill."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot read the signature of handler {_describe(fn)}") from exc
    conn_name, conn_class = ("websocket", "WebSocket") if websocket else ("request", "Request")
    annotations = _annotation_names(fn)
    kwmap: list[tuple[str, str | None]] = []
    positional_conn = False
    takes_var_kw = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            takes_var_kw = True
            continue
        if p.name == conn_name or annotations.get(p.name) == conn_class:
            if p.kind is p.POSITIONAL_ONLY:
                positional_conn = True
            kwmap.append((p.name, None))
        elif p.name in path_params:
            if p.kind is p.POSITIONAL_ONLY:
                raise TypeError(f"path parameter {p.name!r} of {_describe(fn)} is positional-only")
            kwmap.append((p.name, p.name))
        elif p.default is p.empty:
            where = f"{_describe(fn)}"
            raise TypeError(
                f"handler {where} has a parameter {p.name!r} that is neither {conn_name!r} "
                f"nor a path parameter ({', '.join(path_params) or 'none'}); give it a default"
            )
    if takes_var_kw:
        have = {n for n, _ in kwmap}
        kwmap.extend((n, n) for n in path_params if n not in have)
    if not kwmap:
        return _CALL_NONE, ()
    if len(kwmap) == 1 and kwmap[0][1] is None:
        params = list(sig.parameters.values())
        first = params[0] if params else None
        if (
            first is not None
            and first.name == kwmap[0][0]
            and first.kind
            in (
                first.POSITIONAL_ONLY,
                first.POSITIONAL_OR_KEYWORD,
            )
        ):
            return _CALL_REQUEST, ()
    if positional_conn:
        raise TypeError(f"the {conn_name} parameter of {_describe(fn)} must come first")
    if all(src is not None and src == name for name, src in kwmap) and len(kwmap) == len(
        path_params
    ):
        return _CALL_PARAMS, ()
    return _CALL_GENERAL, tuple(kwmap)


# --------------------------------------------------------------------------
# The matcher
# --------------------------------------------------------------------------


class _Leaf:
    """The routes that end at one trie node."""

    __slots__ = ("_allow", "routes", "websocket")

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.websocket: Route | None = None
        self._allow: str | None = None

    def lookup(self, method: str) -> Route | None:
        routes = self.routes
        route = routes.get(method)
        if route is None and method == "HEAD":
            return routes.get("GET")
        return route

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

    __slots__ = ("_root", "_static", "slash_routes")

    def __init__(self) -> None:
        self._root = _Node()
        self._static: dict[str, _Leaf] = {}
        #: Whether any route's path ends with "/" (else "/x" never redirects to "/x/").
        self.slash_routes = False

    def add(self, route: Route) -> None:
        if route.path.endswith("/"):
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
        if node.leaf is None:
            node.leaf = _Leaf()
        leaf = node.leaf
        if route.websocket:
            if leaf.websocket is None:
                leaf.websocket = route
        else:
            for method in route.methods:
                leaf.routes.setdefault(method, route)
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
                route = leaf.websocket if method is None else leaf.lookup(method)
                if route is not None:
                    return route, {}, _NO_LEAVES
            segments = path.split("/")
        if "\x00" in path:  # a decoded %00 never names a resource
            return None, {}, _NO_LEAVES
        partial: list[_Leaf] = []
        found = _search(self._root, segments, 1, len(segments), method, partial)
        if found is not None:
            return found[0], found[1], _NO_LEAVES
        return None, {}, partial


def _search(
    node: _Node, segs: list[str], i: int, n: int, method: str | None, partial: list[_Leaf]
) -> tuple[Route, dict[str, Any]] | None:
    if i == n:
        leaf = node.leaf
        if leaf is None:
            return None
        route = leaf.websocket if method is None else leaf.lookup(method)
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


# --------------------------------------------------------------------------
# Registration: shared by App and Router
# --------------------------------------------------------------------------

_METHOD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _check_methods(methods: Iterable[str] | None) -> tuple[str, ...]:
    if methods is None:
        return ("GET",)
    if isinstance(methods, str):
        raise TypeError("methods must be a list of str, e.g. methods=['GET', 'POST']")
    out = []
    for m in methods:
        um = m.upper()
        if not um or not _METHOD_CHARS.issuperset(um):
            raise ValueError(f"invalid HTTP method {m!r}")
        out.append(um)
    if not out:
        raise ValueError("a route needs at least one method")
    return tuple(dict.fromkeys(out))


@dataclass
class RouteSpec:
    """A route as declared, before it is compiled into an app."""

    path: str
    endpoint: Handler
    methods: tuple[str, ...]
    name: str | None
    websocket: bool = False
    before: tuple[Hook, ...] = ()
    after: tuple[Hook, ...] = ()


@dataclass
class _Hooks:
    before: list[Hook] = field(default_factory=list)
    after: list[Hook] = field(default_factory=list)


class Registrar:
    """The decorators of `App` and `Router`: routes and request hooks."""

    def _add(self, spec: RouteSpec) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def route(
        self, path: str, methods: Iterable[str] | None = None, name: str | None = None
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for `path` and `methods` (default ``["GET"]``)."""
        checked = _check_methods(methods)

        def decorator(fn: Handler) -> Handler:
            self._add(RouteSpec(path, fn, checked, name))
            return fn

        return decorator

    def get(self, path: str, name: str | None = None) -> Callable[[Handler], Handler]:
        return self.route(path, ["GET"], name)

    def post(self, path: str, name: str | None = None) -> Callable[[Handler], Handler]:
        return self.route(path, ["POST"], name)

    def put(self, path: str, name: str | None = None) -> Callable[[Handler], Handler]:
        return self.route(path, ["PUT"], name)

    def patch(self, path: str, name: str | None = None) -> Callable[[Handler], Handler]:
        return self.route(path, ["PATCH"], name)

    def delete(self, path: str, name: str | None = None) -> Callable[[Handler], Handler]:
        return self.route(path, ["DELETE"], name)

    def head(self, path: str, name: str | None = None) -> Callable[[Handler], Handler]:
        return self.route(path, ["HEAD"], name)

    def options(self, path: str, name: str | None = None) -> Callable[[Handler], Handler]:
        return self.route(path, ["OPTIONS"], name)

    def websocket(self, path: str, name: str | None = None) -> Callable[[Handler], Handler]:
        """Register an ``async def`` WebSocket handler for `path` (served under ASGI only)."""

        def decorator(fn: Handler) -> Handler:
            if not is_coroutine_function(fn):
                raise TypeError(f"WebSocket handler {_describe(fn)} must be an async def function")
            self._add(RouteSpec(path, fn, (), name, websocket=True))
            return fn

        return decorator


class Router(Registrar):
    """A group of routes and hooks, added to an app with `App.include_router`.

    Its `before_request`/`after_request` hooks run only for its own routes,
    after (before, for after-hooks) the app's.
    """

    def __init__(self) -> None:
        self.specs: list[RouteSpec] = []
        self._hooks = _Hooks()

    def _add(self, spec: RouteSpec) -> None:
        self.specs.append(spec)

    def before_request(self, fn: Handler) -> Handler:
        self._hooks.before.append(Hook.of(fn))
        return fn

    def after_request(self, fn: Handler) -> Handler:
        self._hooks.after.append(Hook.of(fn))
        return fn

    def include_router(self, router: Router, prefix: str = "") -> None:
        """Add `router`'s routes to this router under `prefix`."""
        for spec in router.prefixed_specs(prefix):
            self.specs.append(spec)

    def prefixed_specs(self, prefix: str) -> list[RouteSpec]:
        """This router's routes under `prefix`, with its hooks attached to each."""
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(f"a router prefix must start with '/' and not end with it: {prefix!r}")
        before = tuple(self._hooks.before)
        after = tuple(self._hooks.after)
        return [
            RouteSpec(
                prefix + s.path,
                s.endpoint,
                s.methods,
                s.name,
                s.websocket,
                before + s.before,
                after + s.after,
            )
            for s in self.specs
        ]
