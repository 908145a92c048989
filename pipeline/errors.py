"""Errors the user can fix: reported as one line and a non-zero exit, never as a traceback."""


class PipelineError(Exception):
    """Bad input or configuration; the message names the field or file and what was expected."""
