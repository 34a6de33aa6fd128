"""Exceptions with one-line messages that the CLI prints as they are (exit status 2)."""


class SambiasError(Exception):
    """Base class of the toolkit's own errors."""


class ProblemError(SambiasError, ValueError):
    """Bad input: the message is one line that names the fault."""


class SimulationError(SambiasError, RuntimeError):
    """A simulation could not be carried out as asked."""
