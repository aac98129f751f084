"""User-facing errors. The CLI prints them as one line, never with a traceback."""

from __future__ import annotations


class FakedetError(Exception):
    """Base class: an error whose message is meant for the user as it is."""

    exit_code = 2


class PackageError(FakedetError):
    """A model package (or bare ONNX file) that cannot be used: names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class InputSpecError(FakedetError):
    """An input specification (preprocessing contract) that is incomplete or contradictory."""


class ImageError(FakedetError):
    """One image that cannot be decoded or preprocessed. Reported per item, never fatal to a batch."""

    def __init__(self, source, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class BackendUnavailable(FakedetError):
    """The asked backend cannot run here (library missing, no GPU, no artifact it can run)."""


class BackendError(FakedetError):
    """A backend that refuses a call (unknown option, wrong input, closed) or whose inference
    library failed; the message names the backend."""


class DataError(FakedetError):
    """A dataset, calibration set or config that cannot be used; raised before any work starts."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message, or its type name when the message is empty
    (cut to `limit` characters when given)."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
