"""Routes and routers: `Route`, the decorators shared by `App` and `Router`.

A route's handler signature is read once, at registration; matching lives
in `_matching` (the segment trie).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypedDict
from urllib.parse import quote

import msgspec

from ._matching import (
    _SEGMENT_SAFE,
    Converter,
    _Mixed,
    _Param,
    _quote_segment,
    _Rest,
    _Segment,
    _Static,
    reject_flask_syntax,
    template_params,
)
from ._typed import Binder, _pydantic_model, analyse_typed, return_converter

if TYPE_CHECKING:
    from .responses import Response

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Converter", "Route", "RouteDoc", "RouteOptions", "Router"]

Handler = Callable[..., Any]

# --------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------

#: How a handler's arguments are built from the request (chosen at registration).
_CALL_NONE, _CALL_REQUEST, _CALL_PARAMS, _CALL_GENERAL, _CALL_TYPED = range(5)


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
        "_bind",
        "_call",
        "_kwmap",
        "after",
        "before",
        "binder",
        "body_first",
        "doc",
        "endpoint",
        "handler",
        "hints",
        "invoke",
        "is_async",
        "methods",
        "name",
        "needs_conn",
        "param_names",
        "path",
        "plain",
        "reads_body",
        "reads_form",
        "segments",
        "status",
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
        status: int | None = None,
        doc: RouteDoc | None = None,
        analysed: Analysed | None = None,
    ) -> None:
        self.path = path
        #: What the pipeline calls: the handler, or a wrapper that converts its return.
        self.endpoint = endpoint
        #: The function as registered (its signature, docstring and annotations).
        self.handler = endpoint
        #: The status of a return value that is not a Response (``status=``).
        self.status = status
        #: The route's OpenAPI documentation (the decorator's keyword options).
        self.doc = doc if doc is not None else _NO_DOC
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
        names: dict[str, Converter | None] = {}  # path parameter -> its converter
        for spec in segments:
            if isinstance(spec, _Param | _Rest):
                names[spec.name] = spec.converter
            elif isinstance(spec, _Mixed):
                names.update(spec.params)
        self.param_names = tuple(names)
        sig, hints = analysed or signature_and_hints(endpoint, websocket)
        #: The handler's resolved annotations (the OpenAPI document reads the return's).
        self.hints = hints
        self._call, self._kwmap, self.binder = _analyse(
            endpoint, names, websocket, path, sig, hints
        )
        binder = self.binder
        self._bind = None if binder is None else binder.bind_fast if binder.fast else binder.bind
        if not websocket:
            respond = _responder(endpoint, hints, status)
            if respond is not None:
                self.endpoint = _returning(endpoint, respond, self.is_async)
        #: The JSON body is read (by the pipeline) before the handler's arguments are bound.
        self.reads_body = self.binder is not None and self.binder.body is not None
        #: ... and it is read as a form (a Form() parameter).
        self.reads_form = self.reads_body and self.binder.body.location == "form"  # type: ignore[union-attr]
        #: ... or, with no hooks at all, by the adapter that calls the handler itself
        #: (a JSON body: a form is read by the pipeline's form step).
        self.body_first = self.reads_body and self.plain and not self.reads_form
        if self.reads_body:
            self.plain = False  # (the adapters' first direct call reads no body)
        #: ``invoke(conn, params)`` calls the endpoint with its arguments for `conn`
        #: and its path parameters: what the adapters do when nothing but the
        #: handler runs (the pipeline yields the endpoint and its `arguments` as
        #: a step instead).
        self.invoke = _invoker(self)
        #: Whether the handler takes anything from the request but its path
        #: parameters (when not, and nothing but it runs, no Request is made).
        self.needs_conn = self._call not in (_CALL_NONE, _CALL_PARAMS)

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
        if call == _CALL_TYPED:
            return (), self._bind(conn, params)  # type: ignore[misc]
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


def _returning(fn: Handler, respond: Callable[[Any], Response], is_async: bool) -> Handler:
    """`fn`, its return value made a response by `respond` (see `_responder`)."""
    if is_async:

        @functools.wraps(fn)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            return respond(await fn(*args, **kwargs))

        return call_async

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return respond(fn(*args, **kwargs))

    return call


def _responder(
    fn: Handler, hints: dict[str, Any], status: int | None = None
) -> Callable[[Any], Response] | None:
    """For a handler annotated to return a model (§13), or registered with
    ``status=``: what turns its return value into the response, the value
    converted to that model first and given that status (a Response passes; a
    returned ``(body, status[, headers])`` keeps its own status, its body
    converted); None for any other handler (`to_response` serves it).

    A value of exactly the annotated class (the usual case) is encoded at once,
    as `to_response` encodes it, without the conversion's checks.
    """
    from .responses import Response, _encoded_json, to_response

    convert = return_converter(fn, hints)
    if convert is None and status is None:
        return None
    cls = hints.get("return")
    while typing.get_origin(cls) is Annotated:
        cls = typing.get_args(cls)[0]
    encode: Callable[[Any], bytes] | None = None
    if convert is not None and isinstance(cls, type):
        if issubclass(cls, msgspec.Struct) or (
            dataclasses.is_dataclass(cls) and not issubclass(cls, _NOT_ENCODED_AS_MODELS)
        ):
            encode = msgspec.json.Encoder().encode
        elif _pydantic_model(cls):

            def encode(value: Any) -> bytes:
                return value.model_dump_json().encode()  # type: ignore[no-any-return]

    def respond(rv: Any) -> Response:
        if isinstance(rv, Response):
            return rv
        if type(rv) is tuple:  # the handler's own (body, status[, headers])
            if convert is not None and rv:
                rv = (convert(rv[0]), *rv[1:])
            return to_response(rv)
        value = rv if convert is None else convert(rv)
        return to_response(value if status is None else (value, status))

    if encode is None:
        return respond

    def respond_model(rv: Any) -> Response:
        if type(rv) is cls:
            response = _encoded_json(encode(rv))
            if status is not None:
                response.status = status
            return response
        return respond(rv)

    return respond_model


#: Classes `to_response` converts by their kind even when they are dataclasses.
_NOT_ENCODED_AS_MODELS = (dict, list, str, bytes, bytearray, memoryview, tuple)


def _describe(fn: Any) -> str:
    mod = getattr(fn, "__module__", None) or "?"
    return f"{mod}:{getattr(fn, '__qualname__', repr(fn))}"


def type_hints(fn: Handler) -> dict[str, Any]:
    """`fn`'s annotations, resolved (``Annotated`` kept): read once per handler.

    A name that `fn`'s module does not define (a model declared in the function
    that registers the handler, under ``from __future__ import annotations``)
    is taken from the nearest local scope of the code registering it that has
    it, as pydantic does for models. An annotation nothing resolves stays its
    text. Partials and callable objects have no annotations of their own: ``{}``.
    """
    found: dict[str, Any] = {}  # the missing names, from the registering scopes
    scopes: list[dict[str, Any]] | None = None
    while True:
        try:
            return typing.get_type_hints(fn, None, found or None, include_extras=True)
        except NameError as exc:
            if scopes is None:
                scopes = _registering_scopes()
            name = exc.name
            scope = next((ns for ns in scopes if name in ns), None)
            if name is None or scope is None or name in found:
                break
            found[name] = scope[name]
        except Exception:
            return {}
    # one by one: what resolves is typed, the rest stays text
    inner = fn
    while hasattr(inner, "__wrapped__"):
        inner = inner.__wrapped__
    globalns = getattr(inner, "__globals__", {})
    raw = dict(getattr(fn, "__annotations__", None) or {})
    return {name: _resolve(name, value, globalns, found) for name, value in raw.items()}


def _registering_scopes() -> list[dict[str, Any]]:
    """The local namespaces of the code that called into microweb, nearest first."""
    scopes: list[dict[str, Any]] = []
    frame = sys._getframe(1)
    while frame is not None and len(scopes) < 8:
        module = frame.f_globals.get("__name__") or ""
        if module != "microweb" and not module.startswith("microweb."):
            scopes.append(frame.f_locals)
        frame = frame.f_back  # type: ignore[assignment]
    return scopes


def _resolve(name: str, value: Any, globalns: dict[str, Any], found: dict[str, Any]) -> Any:
    one = types.SimpleNamespace(__annotations__={name: value})
    try:
        return typing.get_type_hints(one, globalns, found or None, include_extras=True)[name]
    except Exception:
        return value


def _annotation_names(hints: dict[str, Any]) -> dict[str, str]:
    """Parameter annotations as class names (``Request``/``WebSocket``) where resolvable."""
    names: dict[str, str] = {}
    for key, hint in hints.items():
        while typing.get_origin(hint) is Annotated:
            hint = typing.get_args(hint)[0]
        if isinstance(hint, str):
            names[key] = hint.rsplit(".", 1)[-1]
        elif isinstance(hint, type):
            names[key] = hint.__name__
    return names


def _yields(fn: Any) -> bool:
    """True for generator functions (``def`` or ``async def`` with ``yield``)."""
    while hasattr(fn, "func") and not inspect.isroutine(fn):  # functools.partial
        fn = fn.func
    if not inspect.isroutine(fn):
        fn = getattr(fn, "__call__", fn)  # noqa: B004 - callable objects
    return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


#: A handler's signature and resolved annotations, read once at registration.
Analysed = tuple[inspect.Signature, dict[str, Any]]


def signature_and_hints(fn: Handler, websocket: bool) -> Analysed:
    """Read `fn`'s signature and annotations (the only inspection a handler gets);
    raise TypeError for a generator function or a signature that cannot be read."""
    if not websocket and _yields(fn):
        raise TypeError(
            f"handler {_describe(fn)} is a generator function: a handler returns its "
            "response, so wrap the generator in one: "
            "`return StreamingResponse(chunks())` (or EventSourceResponse for "
            "Server-Sent Events)"
        )
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot read the signature of handler {_describe(fn)}") from exc
    return sig, type_hints(fn)


def _invoker(route: Route) -> Callable[[Any, dict[str, Any]], Any]:
    """`Route.invoke`: ``route.endpoint(*args, **kwargs)`` with the arguments that
    ``route.arguments(conn, params)`` gives, each kind of call made without
    building them (`conn` is not used when the handler takes nothing from it)."""
    call = route._call
    if call == _CALL_REQUEST:
        return lambda conn, params: route.endpoint(conn)
    if call == _CALL_NONE:
        return lambda conn, params: route.endpoint()
    if call == _CALL_PARAMS:
        return lambda conn, params: route.endpoint(**params)
    if call == _CALL_TYPED:
        return lambda conn, params: route.endpoint(**route._bind(conn, params))  # type: ignore[misc]

    def general(conn: Any, params: dict[str, Any]) -> Any:
        args, kwargs = route.arguments(conn, params)
        return route.endpoint(*args, **kwargs)

    return general


def _analyse(
    fn: Handler,
    path_types: dict[str, Converter | None],
    websocket: bool,
    path: str,
    sig: inspect.Signature,
    hints: dict[str, Any],
) -> tuple[int, tuple[tuple[str, str | None], ...], Binder | None]:
    """Decide once how to call `fn`; raise TypeError for a parameter nothing can fill,
    a path parameter that nothing takes, or a generator function.

    `path_types` maps each path parameter to its converter. Parameters
    that are neither the request nor an untyped path parameter are typed
    (query, header, cookie, body: see `_typed`); then the call is `_CALL_TYPED`
    and the returned binder fills every argument.
    """
    path_params = tuple(path_types)
    conn_name, conn_class = ("websocket", "WebSocket") if websocket else ("request", "Request")
    annotations = _annotation_names(hints)
    kwmap: list[tuple[str, str | None]] = []
    typed = False
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
        else:
            typed = True
    have = {n for n, _ in kwmap}
    if takes_var_kw:
        kwmap.extend((n, n) for n in path_params if n not in have)
    elif all(src is not None for _, src in kwmap):
        # neither the request nor **kwargs: a path parameter the handler does not
        # take would be lost without a word (``{todo_id}`` with ``def get(id=0)``)
        lost = [n for n in path_params if n not in have]
        if lost:
            names = [p.name for p in sig.parameters.values()]
            own = [n for n in names if n not in have]
            fix = (
                f"rename {own[0]} to {lost[0]}"
                if len(lost) == len(own) == 1
                else f"add a parameter {lost[0]}"
            )
            raise TypeError(
                f"handler {_describe(fn)} does not take the path parameter "
                f"{', '.join(map(repr, lost))} of {path!r} (its parameters: "
                f"{', '.join(names) or 'none'}); {fix}, or take {conn_name} "
                f"({conn_name}.path_params) or **kwargs"
            )
    binder = None
    if typed or any(n in annotations for n, src in kwmap if src is not None):
        binder = _typed_binder(fn, sig, hints, kwmap, path_types, websocket)
    if binder is not None:
        if positional_conn:
            raise TypeError(f"the {conn_name} parameter of {_describe(fn)} must come first")
        for name in path_params:
            if takes_var_kw and name not in have:
                binder.passthrough += (name,)
        return _CALL_TYPED, (), binder
    if not kwmap:
        return _CALL_NONE, (), None
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
            return _CALL_REQUEST, (), None
    if positional_conn:
        raise TypeError(f"the {conn_name} parameter of {_describe(fn)} must come first")
    if all(src is not None and src == name for name, src in kwmap) and len(kwmap) == len(
        path_params
    ):
        return _CALL_PARAMS, (), None
    return _CALL_GENERAL, tuple(kwmap), None


def _typed_binder(
    fn: Handler,
    sig: inspect.Signature,
    hints: dict[str, Any],
    kwmap: list[tuple[str, str | None]],
    path_types: dict[str, Converter | None],
    websocket: bool,
) -> Binder | None:
    conn_names = tuple(n for n, src in kwmap if src is None)
    for p in sig.parameters.values():
        hint = hints.get(p.name)
        if isinstance(hint, str) and p.name not in conn_names:
            raise TypeError(
                f"the annotation of parameter {p.name!r} of handler {_describe(fn)} names "
                f"something that is not defined where the handler is: {hint!r} (define or "
                "import it in the handler's module, not only under TYPE_CHECKING)"
            )
    binder = analyse_typed(fn, sig, hints, conn_names, path_types)
    if binder is not None and websocket and binder.body is not None:
        raise TypeError(f"WebSocket handler {_describe(fn)} cannot take a body parameter")
    return binder


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


@dataclass(frozen=True)
class RouteDoc:
    """A route's OpenAPI documentation: the keyword options of its decorator
    (`App.openapi` reads them; none of them is looked at per request)."""

    tags: tuple[str, ...] = ()
    summary: str | None = None
    description: str | None = None
    deprecated: bool = False
    operation_id: str | None = None
    responses: Mapping[int | str, Any] = field(default_factory=dict)
    include_in_schema: bool = True


_NO_DOC = RouteDoc()


class RouteOptions(TypedDict, total=False):
    """The keyword options every route decorator takes (see `Registrar.route`)."""

    status: int | None
    tags: Sequence[str] | None
    summary: str | None
    description: str | None
    deprecated: bool
    operation_id: str | None
    responses: Mapping[int | str, Any] | None
    include_in_schema: bool


_RESPONSE_KEYS = frozenset({"default", "1XX", "2XX", "3XX", "4XX", "5XX"})


def _check_status(status: Any) -> int | None:
    if status is None:
        return None
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"status must be an int in 100..599, not {status!r}")
    return status


def _route_doc(
    tags: Sequence[str] | None,
    summary: str | None,
    description: str | None,
    deprecated: bool,
    operation_id: str | None,
    responses: Mapping[int | str, Any] | None,
    include_in_schema: bool,
) -> RouteDoc:
    """The documentation options, checked at registration."""
    if isinstance(tags, str):
        raise TypeError(f"tags must be a list of str, e.g. tags=[{tags!r}]")
    checked: dict[int | str, Any] = {}
    for key, value in (responses or {}).items():
        if not (
            (type(key) is int and 100 <= key <= 599)
            or (isinstance(key, str) and (key in _RESPONSE_KEYS or key.isdigit()))
        ):
            raise ValueError(
                f"responses keys are statuses (404) or 'default', '4XX'...; not {key!r}"
            )
        checked[int(key) if isinstance(key, str) and key.isdigit() else key] = value
    if (
        not tags
        and summary is None
        and description is None
        and not deprecated
        and operation_id is None
        and not checked
        and include_in_schema
    ):
        return _NO_DOC
    return RouteDoc(
        tuple(tags or ()),
        summary,
        description,
        deprecated,
        operation_id,
        checked,
        include_in_schema,
    )


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
    status: int | None = None
    doc: RouteDoc = _NO_DOC
    #: Its signature and annotations, when already read (by a router).
    analysed: Analysed | None = None


@dataclass
class _Hooks:
    before: list[Hook] = field(default_factory=list)
    after: list[Hook] = field(default_factory=list)


class Registrar:
    """The decorators of `App` and `Router`: routes and request hooks."""

    def _add(self, spec: RouteSpec) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def route(
        self,
        path: str,
        methods: Iterable[str] | None = None,
        name: str | None = None,
        *,
        status: int | None = None,
        tags: Sequence[str] | None = None,
        summary: str | None = None,
        description: str | None = None,
        deprecated: bool = False,
        operation_id: str | None = None,
        responses: Mapping[int | str, Any] | None = None,
        include_in_schema: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for `path` and `methods` (default ``["GET"]``).

        `status` is the status of a return value that is not a `Response`
        (``201`` for a created item; a returned ``(body, status)`` keeps its
        own). The rest documents the route in `App.openapi`: `tags`,
        `summary`, `description` (default: the handler's docstring),
        `deprecated`, `operation_id` (default: the route's name), `responses`
        (more responses, ``{404: Model or "description"}``) and
        `include_in_schema` (False leaves the route out). Every route
        decorator (`get`, `post`, ...) takes these keyword options too.
        """
        checked = _check_methods(methods)
        doc = _route_doc(
            tags, summary, description, deprecated, operation_id, responses, include_in_schema
        )
        code = _check_status(status)

        def decorator(fn: Handler) -> Handler:
            self._add(RouteSpec(path, fn, checked, name, status=code, doc=doc))
            return fn

        return decorator

    def get(
        self, path: str, name: str | None = None, **options: Unpack[RouteOptions]
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for ``GET`` (and ``HEAD``) requests to `path`
        (`options`: those of `route`)."""
        return self.route(path, ["GET"], name, **options)

    def post(
        self, path: str, name: str | None = None, **options: Unpack[RouteOptions]
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for ``POST`` requests to `path`
        (`options`: those of `route`)."""
        return self.route(path, ["POST"], name, **options)

    def put(
        self, path: str, name: str | None = None, **options: Unpack[RouteOptions]
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for ``PUT`` requests to `path`
        (`options`: those of `route`)."""
        return self.route(path, ["PUT"], name, **options)

    def patch(
        self, path: str, name: str | None = None, **options: Unpack[RouteOptions]
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for ``PATCH`` requests to `path`
        (`options`: those of `route`)."""
        return self.route(path, ["PATCH"], name, **options)

    def delete(
        self, path: str, name: str | None = None, **options: Unpack[RouteOptions]
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for ``DELETE`` requests to `path`
        (`options`: those of `route`)."""
        return self.route(path, ["DELETE"], name, **options)

    def head(
        self, path: str, name: str | None = None, **options: Unpack[RouteOptions]
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for ``HEAD`` requests to `path`
        (`options`: those of `route`)."""
        return self.route(path, ["HEAD"], name, **options)

    def options(
        self, path: str, name: str | None = None, **options: Unpack[RouteOptions]
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for ``OPTIONS`` requests to `path`
        (`options`: those of `route`)."""
        return self.route(path, ["OPTIONS"], name, **options)

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
        # what the app checks when the router is included, checked already here
        # (the converters are the app's, so the template is compiled there)
        reject_flask_syntax(spec.path)
        # read here, where the names the annotations use are in scope
        spec.analysed = signature_and_hints(spec.endpoint, spec.websocket)
        _analyse(
            spec.endpoint,
            dict.fromkeys(template_params(spec.path)),
            spec.websocket,
            spec.path,
            *spec.analysed,
        )
        self.specs.append(spec)

    def before_request(self, fn: Handler) -> Handler:
        """Run ``fn(request)`` before this router's handlers; a non-None return answers instead."""
        self._hooks.before.append(Hook.of(fn))
        return fn

    def after_request(self, fn: Handler) -> Handler:
        """Run ``fn(request, response)`` after this router's handlers.

        A Response it returns replaces the response.
        """
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
            dataclasses.replace(
                s, path=prefix + s.path, before=before + s.before, after=after + s.after
            )
            for s in self.specs
        ]
