"""The one family of user-facing errors.

Anything a user can cause or fix (a bad value, a missing checkpoint, an unusable server, a file
that is too big) raises a subclass of `NanochatError`. Its `str()` is ONE line meant for people:
the CLI prints it as `nanochat-tui: error: …` (exit 2), the TUI shows it in the banner, the web
server answers it as a 4xx detail. Anything else is a bug and shows as one (with --debug: the
traceback).

They stay ValueErrors too, so code written against the older classes keeps working.
"""

from __future__ import annotations


class NanochatError(ValueError):
    """A user-facing problem; `str(err)` is one line naming what went wrong and, where it helps,
    what to do about it."""
