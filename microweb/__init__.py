"""microweb: one app, served by WSGI and ASGI servers alike."""

from .applications import App
from .background import BackgroundTask, BackgroundTasks
from .datastructures import FormData, UploadFile
from .exceptions import HTTPException, WebSocketDisconnect, abort
from .files import FileResponse
from .params import Body, Cookie, Form, Header, Path, Query
from .requests import Request
from .responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from .routing import Router
from .sse import EventSourceResponse
from .websockets import WebSocket

__version__ = "0.1.0"

__all__ = [
    "App",
    "BackgroundTask",
    "BackgroundTasks",
    "Body",
    "Cookie",
    "EventSourceResponse",
    "FileResponse",
    "Form",
    "FormData",
    "HTMLResponse",
    "HTTPException",
    "Header",
    "JSONResponse",
    "Path",
    "PlainTextResponse",
    "Query",
    "RedirectResponse",
    "Request",
    "Response",
    "Router",
    "StreamingResponse",
    "UploadFile",
    "WebSocket",
    "WebSocketDisconnect",
    "abort",
]
