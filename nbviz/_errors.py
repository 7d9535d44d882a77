"""The errors nbviz raises. Every message starts with ``nbviz:`` and says what to do."""

from __future__ import annotations


class NbvizError(RuntimeError):
    """Base class of every error nbviz raises on purpose.

    ``log_tail`` holds the last lines the backend printed, when there is a backend.
    """

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        self.message = message if message.startswith("nbviz:") else f"nbviz: {message}"
        self.log_tail = log_tail
        super().__init__(self.full_message())

    def full_message(self) -> str:
        if not self.log_tail.strip():
            return self.message
        return (
            f"{self.message}\n--- last lines of the backend's output ---\n{self.log_tail.rstrip()}"
        )


class TemplateError(NbvizError, ValueError):
    """A command template names a field nbviz does not know, or is malformed."""


class ArgumentTypeError(TemplateError, TypeError):
    """An argument has the wrong type (a TemplateError that is also a TypeError)."""


class ProgramNotFoundError(NbvizError, FileNotFoundError):
    """The program to start is not installed (or not on PATH)."""


class PortInUseError(NbvizError, OSError):
    """The requested port (or socket path) is already taken."""


class BackendExitedError(NbvizError):
    """The backend process exited: before it became ready, or while it was running."""


class ReadyTimeoutError(NbvizError, TimeoutError):
    """The backend did not answer its readiness probe before the deadline."""


class BackendStoppedError(NbvizError):
    """The backend was stopped (by ``stop()``) while someone waited for it."""
