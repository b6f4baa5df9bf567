"""Progress of a batch or a download: a bar on a terminal, a plain line now and then elsewhere."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import IO

from tqdm import tqdm


class Progress:
    """A tqdm bar on a terminal; elsewhere (a pipe, a log) a plain line at most every ``interval`` seconds."""

    def __init__(self, total: int, unit: str, file: IO[str] | None = None, interval: float = 1.0) -> None:
        self.total, self.unit, self.interval = total, unit, interval
        self.file = file or sys.stderr
        self.started = self.printed_at = time.monotonic()
        self.line = ""
        self.bar = tqdm(total=total, unit=unit, file=self.file, dynamic_ncols=True) if self.file.isatty() else None

    def update(self, done: int, counts: Mapping[str, int]) -> None:
        postfix = ", ".join(f"{state} {count}" for state, count in sorted(counts.items()) if count)
        if self.bar is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(done - self.bar.n)
            return
        elapsed = time.monotonic() - self.started
        self.line = tqdm.format_meter(done, self.total, elapsed, unit=self.unit, postfix=postfix, ascii=True)
        if done == self.total or time.monotonic() - self.printed_at >= self.interval:
            self._print()

    def _print(self) -> None:
        if self.line:
            print(self.line, file=self.file, flush=True)
        self.line, self.printed_at = "", time.monotonic()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            self._print()
