"""The errors that cross layers, and how any error is put into words without failing."""

from __future__ import annotations

import os
import sys
import traceback
from types import FrameType, TracebackType

__all__ = [
    "TRACEBACKS_ENV",
    "PluginError",
    "StartError",
    "StoreError",
    "StoreUnusable",
    "WorkersLost",
    "describe_error",
    "error_message",
    "raised_at",
    "show_traceback",
]

TRACEBACKS_ENV = "ZEROSITE_TRACEBACKS"
"""Set (to anything but empty or 0), a plugin's failure also prints its whole traceback to standard error, from
whichever process it happened in: for a plugin's author, where the one-line failure is not enough."""


class PluginError(Exception):
    """Plugins that cannot work together; the message names the plugins involved."""


class StartError(Exception):
    """A strategy cannot start its workers with the options given (an unreachable cluster); the message says
    which and why. A usage error, like an unknown strategy."""


class WorkersLost(Exception):
    """A strategy's workers were lost mid-batch, beyond replacing (a cluster's scheduler gone, no worker left): the
    batch stops, its projects in flight discarded; the message says which, and that the same command resumes."""


class StoreError(Exception):
    """A report file or index row could not be written; the message says what and where."""


class StoreUnusable(StoreError):
    """The output folder or its index cannot be used at all (a file where the folder should be, a read-only folder,
    a link to nowhere, a file that is no SQLite index): nothing was made, as for any usage error."""


def describe_error(error: BaseException) -> str:
    """``"TypeName: message"`` for any exception, even one whose ``__str__`` and ``__repr__`` raise."""
    return f"{_type_name(error)}: {error_message(error)}"


def error_message(error: BaseException) -> str:
    """``str(error)``, never failing: its ``repr`` when ``str`` raises, ``<unprintable TypeName>`` when
    both do; text that UTF-8 cannot encode (lone surrogates) is escaped, so the index can store it."""
    for describe in (str, repr):
        try:
            text = describe(error)
        except BaseException:  # plugin code: whatever __str__ raises, describing an error must not fail
            continue
        if isinstance(text, str):
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return f"<unprintable {_type_name(error)}>"


def _type_name(error: BaseException) -> str:
    try:
        name = type(error).__name__
    except BaseException:  # a metaclass may make even this raise
        return "exception"
    return name if isinstance(name, str) else "exception"


_LIBRARIES = frozenset({"zerosite", "jinja2", "markupsafe", "pluggy"}) | sys.stdlib_module_names
"""Top-level packages whose frames are never the plugin's: zerosite's engine (not its built-in report modules,
``zerosite.modules``), the template engine and the standard library."""


def raised_at(error: BaseException, owner: object = None) -> str:
    """`` (at x_loc.py:11 in compute)`` or, in a template, `` (at x_loc.html.j2 line 4)``: the innermost frame of
    ``error``'s traceback that is plugin code, for a failure line that says where; ``""`` when there is none.

    A frame is the plugin's when it is a template's (Jinja2 rewrites those to show the template file and
    line) or in the folder of ``owner``'s module (the compute function, the data source), else, failing those,
    when it is in no library's code. Only the file's name is given: the index keeps this one line short.
    Walks the traceback, so call it once an error happened, never on the way to a success; never fails.
    """
    try:
        place = _plugin_frame(error, _home(owner))
    except Exception:  # an owner whose attributes raise: saying where must not turn one failure into a crash
        return ""
    return place.encode("utf-8", "backslashreplace").decode("utf-8")  # as error_message: the index can store it


def _plugin_frame(error: BaseException, home: str | None) -> str:
    fallback = ""
    for frame, line in reversed(_frames(error.__traceback__)):
        filename = frame.f_code.co_filename
        if "__jinja_exception__" in frame.f_globals:  # jinja2.debug.fake_traceback's frame: template and line
            return f" (at {os.path.basename(filename)} line {line})"
        place = f" (at {os.path.basename(filename)}:{line} in {frame.f_code.co_name})"
        if home is not None and filename.startswith(home):
            return place
        if not fallback and not filename.startswith("<") and not _in_library(frame.f_globals.get("__name__")):
            fallback = place
    return fallback


def _frames(trace: TracebackType | None) -> list[tuple[FrameType, int]]:
    frames = []
    while trace is not None:
        frames.append((trace.tb_frame, trace.tb_lineno))
        trace = trace.tb_next
    return frames


def _in_library(module: object) -> bool:
    if not isinstance(module, str):
        return True
    return module.partition(".")[0] in _LIBRARIES and not module.startswith("zerosite.modules.")


def _home(owner: object) -> str | None:
    """The folder (with a trailing separator) of the module ``owner`` was defined in; ``None`` for a library's."""
    name = getattr(owner, "__module__", None)
    if _in_library(name):
        return None
    file = getattr(sys.modules.get(str(name)), "__file__", None)
    return os.path.join(os.path.dirname(file), "") if isinstance(file, str) else None


def show_traceback(error: BaseException, failure: str) -> None:
    """Print ``error``'s traceback to standard error, headed by its ``failure`` line, when :data:`TRACEBACKS_ENV`
    asks for it; otherwise nothing (a batch's failures are one line each). Never fails."""
    if os.environ.get(TRACEBACKS_ENV, "") in ("", "0"):
        return
    try:
        text = "".join(traceback.format_exception(error))
        sys.stderr.write(f"zerosite: traceback of: {failure}\n{text}")
        sys.stderr.flush()
    except Exception:  # an unprintable error, a closed stderr: the failure line is still there
        pass
