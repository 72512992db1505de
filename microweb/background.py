"""Background tasks: work that runs after a response has been sent (Starlette's names).

A task is only data here (the function, its arguments, and whether it is an
``async def``, decided once, when the task is made); the adapters run it,
each its own way, once the response is over (see `microweb.wsgi` and
`microweb.asgi`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .routing import is_coroutine_function

__all__ = ["BackgroundTask", "BackgroundTasks"]

logger = logging.getLogger("microweb")


class BackgroundTask:
    """``func(*args, **kwargs)``, run after the response has been sent.

    `func` may be a ``def`` (run in a thread) or an ``async def`` (awaited on
    an event loop). Pass the function and its arguments, not the result of
    calling it::

        return JSONResponse({"ok": True}, background=BackgroundTask(send_mail, to, subject))
    """

    __slots__ = ("args", "func", "is_async", "kwargs")

    def __init__(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(func):
            raise TypeError(
                f"BackgroundTask takes a function and its arguments, not {type(func).__name__}: "
                "write BackgroundTask(fn, *args), not BackgroundTask(fn(*args))"
            )
        self.func = func
        self.args = args
        self.kwargs = kwargs
        #: Decided once, here: the adapters never inspect the function again.
        self.is_async = is_coroutine_function(func)

    def _each(self) -> Iterator[BackgroundTask]:
        yield self

    def __repr__(self) -> str:
        name = getattr(self.func, "__qualname__", None) or repr(self.func)
        return f"<{type(self).__name__} {name}>"


class BackgroundTasks(BackgroundTask):
    """Several background tasks, run one after the other in the order they were added.

    A task that raises is logged on the ``microweb`` logger and the next one
    still runs (Starlette stops at the first error).
    """

    __slots__ = ("tasks",)

    def __init__(self, tasks: Sequence[BackgroundTask] | None = None) -> None:
        self.tasks: list[BackgroundTask] = []
        for task in tasks or ():
            if not isinstance(task, BackgroundTask):
                raise TypeError(
                    f"BackgroundTasks takes BackgroundTask objects, not {type(task).__name__}: "
                    "use add_task(fn, *args, **kwargs)"
                )
            self.tasks.append(task)

    def add_task(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Add ``func(*args, **kwargs)`` after the tasks already added."""
        self.tasks.append(BackgroundTask(func, *args, **kwargs))

    def _each(self) -> Iterator[BackgroundTask]:
        for task in self.tasks:
            yield from task._each()

    def __repr__(self) -> str:
        return f"<BackgroundTasks {self.tasks!r}>"


def tasks_of(background: object) -> list[BackgroundTask]:
    """The single tasks to run, in order; [] (logged) for something that is no task.

    ``response.background`` is a plain attribute, so a wrong value set on it
    after construction is met here, when the response is over: it is
    reported, never raised to the server.
    """
    if isinstance(background, BackgroundTask):
        return list(background._each())
    logger.error(
        "response.background must be a BackgroundTask or BackgroundTasks, not %s: "
        "wrap the function as BackgroundTask(fn, *args, **kwargs); nothing was run",
        type(background).__name__,
    )
    return []


def log_failure(task: BackgroundTask, exc: BaseException) -> None:
    """Log a background task's exception on ``microweb``, with its traceback."""
    logger.error("Exception in background task %r", task, exc_info=exc)
