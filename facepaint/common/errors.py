"""facepaint's own error type: every expected failure is one of these, with a message naming the file or
value at fault and what to do, so the command lines print it as one `error:` line instead of a traceback."""


class FacepaintError(Exception):
    """Base of facepaint's own errors. Each message names the file or value at fault and what to do."""
