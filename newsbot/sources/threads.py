"""A bounded pool of daemon threads for blocking calls that may never return in time.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter exits,
so one ``getaddrinfo`` that a dead DNS server never answers (it cannot be cancelled)
would hold a stopping replica past its grace period. These threads are daemons: at exit,
whatever they still wait for is abandoned, which is all a stopping replica wants. The
calls return ``concurrent.futures.Future`` objects, so ``asyncio.wrap_future`` and
``Future.cancel`` (of a call not started yet) work as with an executor.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_Task = tuple["concurrent.futures.Future[Any]", Callable[[], Any]]


class DaemonPool:
    """Runs calls on at most ``threads`` daemon threads, started as they are needed."""

    def __init__(self, threads: int, name: str) -> None:
        self.threads = threads
        self.name = name
        self._queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0
        self._closed = False

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Queue a call; RuntimeError once the pool is shut down."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is shut down")
            self._queue.put((future, call))
            if self._idle > 0:
                self._idle -= 1  # an idle thread takes this call
            elif self._started < self.threads:
                self._started += 1
                threading.Thread(
                    target=self._work, name=f"{self.name}-{self._started}", daemon=True
                ).start()
            # else every thread is busy: the call waits in the queue for the first free
        return future

    def shutdown(self) -> None:
        """Take no more calls; drop those queued; running ones end on their own."""
        with self._lock:
            self._closed = True
            started = self._started
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[0].cancel()
        for _ in range(started):
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            future, call = task
            if future.set_running_or_notify_cancel():
                try:
                    result = call()
                except BaseException as error:  # handed to whoever waits for the future
                    future.set_exception(error)
                else:
                    future.set_result(result)
            with self._lock:
                self._idle += 1
