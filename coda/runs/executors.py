"""Where a search evaluates designs, and how it ends when interrupted.

- `InlineExecutor`: one design at a time in the calling process.
- `pool_executor`: a local `ProcessPoolExecutor` whose workers end with their parent. Each
  worker runs `worker_init`: it ignores SIGINT (the parent handles Ctrl-C and ends the
  workers), asks Linux to send it SIGKILL when its parent dies (`prctl(PR_SET_PDEATHSIG)`
  through ctypes), and, on every platform, starts a daemon thread that ends the worker when
  `os.getppid()` changes (its parent died and it was reparented). `terminate_pool` ends the
  workers at once (a plain `shutdown` would let each finish its design first).
- `RayExecutor`: Ray tasks seen as `concurrent.futures` futures.

`terminate_as_interrupt` makes SIGTERM raise `Terminated` (a `KeyboardInterrupt`) in the main
thread while a search runs, so `kill PID` ends a search the way Ctrl-C does: finished designs
are stored, the workers are ended, and `SearchInterrupted` says what was kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from coda.errors import CodaError

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 0.25
"""How often a worker's fallback thread checks that its parent is alive, seconds."""
TERMINATE_GRACE_S = 2.0
"""How long `terminate_pool` waits for SIGTERMed workers before it SIGKILLs them, seconds."""


class Terminated(KeyboardInterrupt):
    """SIGTERM received while a search runs (raised by the handler of `terminate_as_interrupt`)."""


class SearchInterrupted(KeyboardInterrupt):
    """A search ended by Ctrl-C (SIGINT) or SIGTERM after it kept every finished design.

    Attributes:
        signal_name: ``SIGINT`` or ``SIGTERM``.
        store: the result store, or None when the search kept nothing.
        n_stored: designs of this search (the reference not counted) that are in the store now.
        n_new: designs evaluated by this call before the interrupt (stored when `store` is set).
        n_space: designs in the space.
    """

    def __init__(self, signal_name: str, store: Path | None, n_stored: int, n_new: int, n_space: int) -> None:
        kept = f"{n_stored} designs stored in {store}" if store is not None else f"{n_new} designs evaluated, none kept"
        super().__init__(f"search interrupted by {signal_name}: {kept}")
        self.signal_name, self.store, self.n_stored, self.n_new, self.n_space = (signal_name, store, n_stored,
                                                                                 n_new, n_space)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises `Terminated` unless the caller has its own handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:  # ignored, ours already, or the caller's own handler: keep it
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """While active (main thread only), SIGINT and SIGTERM are ignored: cleanup after an interrupt runs whole."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in saved:
        signal.signal(s, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _set_parent_death_signal() -> bool:
    """Linux: have the kernel SIGKILL this process when its parent dies. False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)


def worker_init(search_pid: int) -> None:
    """Initializer of a pool worker: ignore SIGINT, default SIGTERM, and end when the parent ends (module doc).

    Args:
        search_pid: pid of the searching process (the parent, unless a fork server started the worker).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker inherits the parent's `Terminated` handler
    parent = os.getppid()
    _set_parent_death_signal()
    if parent != search_pid:  # a fork server's child: is the search still there?
        try:
            os.kill(search_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="coda-orphan-watch", daemon=True).start()


def pool_executor(workers: int) -> ProcessPoolExecutor:
    """A process pool of `workers` whose workers end with this process (`worker_init`)."""
    return ProcessPoolExecutor(max_workers=workers, initializer=worker_init, initargs=(os.getpid(),))


def terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel pending work and end the workers now (SIGTERM, then SIGKILL after `TERMINATE_GRACE_S`)."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + TERMINATE_GRACE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(TERMINATE_GRACE_S)
    pool.shutdown(wait=True, cancel_futures=True)


class InlineExecutor:
    """Runs each submitted call at once, in this process (exceptions go to the future, except
    `KeyboardInterrupt` and other non-`Exception`s, which propagate)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as err:
            fut.set_exception(err)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass

    def terminate(self) -> None:
        pass


class RayExecutor:
    """Ray tasks seen as `concurrent.futures` futures.

    Connects to the running Ray instance (`ray.is_initialized()`), else to `RAY_ADDRESS`, else
    starts a local one without the dashboard; a Ray instance started here is shut down by
    `shutdown` and `terminate`.

    Raises:
        CodaError: Ray is not installed.
    """

    def __init__(self) -> None:
        try:
            self._ray = importlib.import_module("ray")
        except ImportError:
            raise CodaError("search: executor='ray' (CLI --executor ray) needs Ray; install it with "
                            "`pip install coda-llm[ray]` or use executor='process'") from None
        self._owned = not self._ray.is_initialized()
        if self._owned:
            self._ray.init(include_dashboard=False, log_to_driver=False)
        self._refs: dict[Future[Any], Any] = {}
        self._remotes: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        if fn not in self._remotes:
            self._remotes[fn] = self._ray.remote(fn)
        ref = self._remotes[fn].remote(*args)
        fut: Future[Any] = ref.future()
        self._refs[fut] = ref
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        if self._owned:
            self._ray.shutdown()

    def terminate(self) -> None:
        for fut, ref in self._refs.items():
            if not fut.done():
                with contextlib.suppress(Exception):  # a task that finished meanwhile cannot be cancelled
                    self._ray.cancel(ref, force=True)
        self.shutdown()


class Progress:
    """A tqdm bar of visited designs with the incumbent objective, on stderr (off when not `enabled`)."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.done = 0
        self._bar = tqdm(total=total, desc="designs", unit="design", file=sys.stderr, disable=not enabled)

    def update(self, best: float) -> None:
        self.done += 1
        self._bar.update(1)
        self._bar.set_postfix(best=f"{best:.4g}", refresh=False)

    def close(self) -> None:
        self._bar.close()
