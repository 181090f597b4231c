"""The one exception type users see.

A ``V2M4Error`` carries a one-line message that says what is wrong, what was got and what to do. The CLI turns it
into exit code 2 and prints the message without a traceback; anything else is a bug and keeps its traceback.
"""


class V2M4Error(Exception):
    """A user-facing failure: bad input, a missing optional dependency or missing weights."""
