"""The errors that cross layers, and how any error is put into words without failing."""

from __future__ import annotations

__all__ = ["PluginError", "StartError", "StoreError", "describe_error", "error_message"]


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
