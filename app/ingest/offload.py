"""Work too heavy for the event loop: a large body's parse, checks and view run in a thread, within
a time budget.

The loop serves every connection, so nothing that grows with a sender's body may run on it for long:
a body larger than INLINE_BODY_BYTES is parsed, verified and validated (and, when it is viewed or
compared, parsed again) in a thread of its own. The thread shares the interpreter with the loop,
which gets its turn at every switch interval (hookscope.server); a second thread would not parse
more (only one runs Python at a time), it would hold a second parsed body in memory, and it could
take the interpreter straight after the first's long step in C (orjson decodes a whole document in
one) while the loop waits. The parsers' caps (ingest.parse) bound what one body costs; the budget
bounds how long one waits for its turn. What still has no result BUDGET_S after it was asked for
(waiting for a thread included) is given up on: the capture is stored and answered all the same, its
verdicts `unknown` with the reason, and a view shows it unparsed. (A thread cannot be stopped: it
finishes, and its result is dropped.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

T = TypeVar("T")

INLINE_BODY_BYTES = 64 * 1024
BUDGET_S = 5.0
BUDGET_EXCEEDED = "parse budget exceeded"


class Offload:
    """The thread that work on large bodies runs in (one per app; it starts on first use and
    stays for the process)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookscope-parse")

    async def run(self, size: int, work: Callable[..., T], *args: object) -> T:
        """work(*args): at once for a body of `size` bytes up to INLINE_BODY_BYTES, else in the
        thread; TimeoutError once BUDGET_S seconds have passed."""
        if size <= INLINE_BODY_BYTES:
            return work(*args)
        future = asyncio.get_running_loop().run_in_executor(self._pool, partial(work, *args))
        return await asyncio.wait_for(future, BUDGET_S)
