"""Progress for people (tqdm bars with estimates), JSON lines for scripts (``--json-log``), or nothing."""

from __future__ import annotations

import json


class Log:
    """``mode``: "bars" (human), "json" (one JSON object per line on stdout) or "quiet"."""

    def __init__(self, mode: str = "bars"):
        if mode not in ("bars", "json", "quiet"):
            raise ValueError(f"log mode must be bars, json or quiet, got {mode!r}")
        self.mode = mode

    def event(self, **fields) -> None:
        """One event; ``message`` is what a person reads."""
        if self.mode == "json":
            print(json.dumps(fields), flush=True)
        elif self.mode == "bars" and fields.get("message"):
            print(fields["message"], flush=True)

    def bar(self, total: int, desc: str, unit: str = "frame") -> "Bar":
        return Bar(self, total, desc, unit)


class Bar:
    """A bar of ``total`` units: a tqdm bar for people, ``progress`` events for scripts. Use as a context manager
    or call ``close``."""

    def __init__(self, log: Log, total: int, desc: str, unit: str):
        self.log, self.total, self.desc, self.done = log, total, desc, 0
        self._tqdm = None
        if log.mode == "bars":
            from tqdm import tqdm
            self._tqdm = tqdm(total=total, desc=desc, unit=unit, leave=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        elif self.log.mode == "json":
            self.log.event(stage=self.desc, progress=self.done, total=self.total)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
