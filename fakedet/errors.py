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


class ManifestError(FakedetError):
    """A manifest or spec file whose content cannot be used (wrong type, out of range,
    unknown field, unknown schema version): names the field."""


class InputSpecError(ManifestError):
    """An input specification (preprocessing contract) that is incomplete or contradictory."""


class ImageError(FakedetError):
    """One image that cannot be decoded or preprocessed. Reported per item, never fatal to a batch."""

    def __init__(self, source, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so `finally` blocks and context managers remove
    temporary and staging folders (the default action would kill the process on the spot)."""


class BackendUnavailable(FakedetError):
    """The asked backend cannot run here (library missing, no GPU, no artifact it can run)."""


class BackendError(FakedetError):
    """A backend that refuses a call (unknown option, wrong input, closed) or whose inference
    library failed; the message names the backend."""


class DataError(FakedetError):
    """A dataset, calibration set or config that cannot be used; raised before any work starts."""


def first_line(e: BaseException | str, limit: int = 200) -> str:
    """The first non-blank line of an exception's message (or a string), at most `limit`
    characters; an exception with an empty message gives its type's name, never an IndexError."""
    text = e if isinstance(e, str) else str(e)
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return "" if isinstance(e, str) else type(e).__name__


def printable(text) -> str:
    """`text` safe to print on a terminal: control characters (escape sequences, carriage
    returns, bells) shown as \\xNN / \\uNNNN instead of being interpreted."""
    out = []
    for ch in str(text):
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)
