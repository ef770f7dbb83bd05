"""How the ``zerosite`` command stops: Ctrl-C and SIGTERM end a batch cleanly with the shell's exit codes; the work
under way gets :data:`STOP_GRACE_S` to end, and a second signal, or the grace period over, abandons what still runs;
the process exits without waiting for threads or pool workers left behind."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

import click

from zerosite.hurry import calm, hurry

__all__ = [
    "EXIT_INTERRUPTED",
    "FORCED_EXIT_AFTER_S",
    "STOP_GRACE_S",
    "STOP_SIGNALS",
    "Stopped",
    "end_children",
    "exit_without_waiting",
    "lingering_threads",
    "stop_code",
    "stop_word",
    "stopping_cleanly",
]

EXIT_INTERRUPTED = 130
"""128 + SIGINT; SIGTERM gives 128 + 15 = 143."""
STOP_GRACE_S = 3.0
"""After the first Ctrl-C or SIGTERM, how long the reports under way get to finish (and be indexed) before they are
abandoned, as a second Ctrl-C abandons them at once: a report blocked for good (a network call without a time limit,
no ``--timeout``) cannot hold the stop. Most reports take well under a second; 3 s, plus the clean-up's
:data:`FORCED_EXIT_AFTER_S` at the very worst, stays within the 10 s ``docker stop`` and most service managers give
before SIGKILL, which would leave the projects in flight unindexed."""
FORCED_EXIT_AFTER_S = 5.0
"""Once the work under way is abandoned (a second signal, or :data:`STOP_GRACE_S` over), the longest the clean-up may
take before the process exits anyway: a last resort, the clean-up waits for nothing a plugin holds."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


LINGER_GRACE_S = 1.0
"""How long non-daemon threads still running at exit get to end by themselves (a server's worker threads end just
after its event loop closes) before the process exits without them, warning."""
RUNTIME_THREADS = ("AnyIO worker thread", "asyncio_", "ThreadPoolExecutor-")
"""Names of threads that the libraries under ``serve`` start, not plugins: not blamed on one."""


def exit_without_waiting(code: object) -> None:
    """End leftover pool workers; where non-daemon threads remain past :data:`LINGER_GRACE_S`, warn naming them
    and exit now with ``code``."""
    end_children()
    deadline = time.monotonic() + LINGER_GRACE_S
    for thread in lingering_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    lingering = lingering_threads()
    if not lingering:
        return
    names = ", ".join(sorted(t.name for t in lingering))
    guess = "" if any(t.name.startswith(RUNTIME_THREADS) for t in lingering) else " (a plugin's?)"
    click.echo(f"warning: exiting without waiting for thread(s) still running: {names}{guess}", err=True)
    if isinstance(code, str):
        click.echo(code, err=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)  # a message: 1, as ``sys.exit`` gives


def end_children() -> None:
    """Kill the pool workers still alive: at exit, Python would wait for each, for ever where nothing tells them to
    end (a pool whose start a stop signal cut short)."""
    for child in multiprocessing.active_children():
        child.kill()
        child.join(timeout=1)


def lingering_threads() -> list[threading.Thread]:
    """The threads, other than the main one, that would keep the process from exiting."""
    main_thread = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main_thread and not t.daemon and t.is_alive()]


class Stopped(KeyboardInterrupt):
    """The first Ctrl-C or SIGTERM of a batch, raised in the main thread: the batch stops cleanly."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_code(stop: KeyboardInterrupt) -> int:
    """130 for Ctrl-C (SIGINT), 143 for SIGTERM: 128 + the signal, as a shell reports a process it ended."""
    return 128 + stop.signum if isinstance(stop, Stopped) else EXIT_INTERRUPTED


def stop_word(stop: KeyboardInterrupt) -> str:
    """How the batch was stopped, in the words its error message uses."""
    return "terminated (SIGTERM)" if stop_code(stop) == 128 + signal.SIGTERM else "interrupted"


@contextlib.contextmanager
def stopping_cleanly() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop a batch the same clean way (exit 130 and 143, the projects in flight discarded).

    The first signal raises :class:`Stopped`: the engine stops feeding work, the pool finishes the work it holds
    and shuts down, the projects in flight are discarded. What still runs :data:`STOP_GRACE_S` later (a report
    blocked for good) is abandoned as at a second signal, which never raises into that clean-up (an exception in
    the middle of a pool's shutdown can leave it hung for good) but hurries it: the worker processes are killed,
    the runners stop waiting for their threads (:func:`~zerosite.hurry.hurried`), and the clean-up runs; a process
    still there :data:`FORCED_EXIT_AFTER_S` later exits anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    grace: list[threading.Timer] = []
    once = threading.Lock()  # taken, never released, by the first to abandon the work (never waited for)

    owner = os.getpid()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            _in_a_child(signum)
            return
        received.append(signum)
        code = 128 + received[0]
        if len(received) == 1:
            why = f"still running {STOP_GRACE_S:g} s after the stop"
            timer = threading.Timer(STOP_GRACE_S, _abandon_work, args=(once, code, why))
            timer.daemon = True
            timer.start()
            grace.append(timer)
            raise Stopped(signum)
        _abandon_work(once, code, "under way")

    calm()
    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        yield
    except Stopped as stop:  # before the batch started or after it ended (during it, the command says more)
        click.echo(f"error: {stop_word(stop)}", err=True)
        sys.exit(stop_code(stop))
    finally:
        for timer in grace:
            timer.cancel()  # the batch stopped within it (a forced exit armed already stays armed)
        calm()
        for signum, handler in previous.items():
            # Once stopping, no later signal may end the process otherwise than with its exit code: ignored from
            # here to the very exit (Python would put back the default handler while it finalizes).
            signal.signal(signum, signal.SIG_IGN if received else handler)


def _in_a_child(signum: int) -> None:
    """A stop signal in a process forked while the command's handler was set: a pool worker not yet past its
    initializer, which sets handlers of its own. A Ctrl-C is the parent's to handle (ignored from now on); a
    SIGTERM ends the worker at once, as the pool that sends it to a broken pool's workers expects (it raised
    :class:`Stopped` into the worker's start-up, which printed a traceback)."""
    if signum == signal.SIGINT:
        signal.signal(signum, signal.SIG_IGN)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _abandon_work(once: threading.Lock, code: int, which: str) -> None:
    """Stop waiting for the work under way (a second signal, or the first one's grace period over): kill the
    worker processes, tell the runners (:func:`~zerosite.hurry.hurried`), and, the first time (``once`` free), say so
    and arm the forced exit. In the signal's handler, or in the grace period's timer thread."""
    if once.acquire(blocking=False):  # never blocks: a handler may run while this thread is in here already
        hurry()
        _say(f"stopping now: abandoning the work {which} (its projects are made again by the next run)")
        timer = threading.Timer(FORCED_EXIT_AFTER_S, _forced_exit, args=(code,))
        timer.daemon = True
        timer.start()
    for child in multiprocessing.active_children():
        child.kill()


def _say(message: str) -> None:
    """Print from a signal handler or a timer: no buffered stream (the main thread may be writing to it)."""
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), f"zerosite: {message}\n".encode())


def _forced_exit(code: int) -> None:
    _say(
        f"forced exit: the clean-up took over {FORCED_EXIT_AFTER_S:g} s; the index keeps what was committed, "
        "run the same command again to resume"
    )
    os._exit(code)
