"""``python -m zerosite`` and the ``zerosite`` command (``[project.scripts]``): :func:`main`.

A Ctrl-C while the command is still importing (its first tenth of a second or so) ends it as one later would:
``error: interrupted`` and exit 130, not a Python traceback. So this module imports nothing of its own before
:func:`main` runs, and ``zerosite/__init__.py`` imports its names lazily.
"""

import sys

EXIT_INTERRUPTED = 130
"""128 + SIGINT, as :data:`zerosite.stopping.EXIT_INTERRUPTED` (not imported: it imports click)."""


def main() -> None:
    """Import the command line, then run it (:func:`zerosite.cli.run`)."""
    try:
        from zerosite.cli import run
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    run()


if __name__ == "__main__":
    main()
