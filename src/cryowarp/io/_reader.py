"""What every streaming file reader shares: context-manager protocol and range checks."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["ClosingReader", "check_range"]


class ClosingReader:
    """Mixin for readers that hold an open file: ``with Reader(path) as r: ...`` calls
    :meth:`close` on leaving the block. Subclasses implement :meth:`close`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the file."""
        raise NotImplementedError


def check_range(path: Path, what: str, start: int, stop: int, count: int) -> None:
    """Raise :class:`IndexError` naming the file unless ``0 <= start <= stop <= count``
    (``what`` names the items: ``"frames"``, ``"sections"``, ...)."""
    if not 0 <= start <= stop <= count:
        raise IndexError(f"{path}: {what} [{start}, {stop}) outside [0, {count})")
