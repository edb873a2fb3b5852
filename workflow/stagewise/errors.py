"""The package's own error type: every message names the file, key or tensor and what to do."""


class StagewiseError(Exception):
    """A problem the user can fix; the CLI and the rules print its message without a traceback."""
