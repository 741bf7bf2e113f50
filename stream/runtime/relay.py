"""Sends owed records only after the state writes that carry them are acknowledged.

See stream.logic.owed for why. One task sends them in the order they were
queued, so records of one key keep their order downstream. Before every
offset commit the consumer drains the queue into the producer, whose flush
then delivers them: a committed input never leaves its records behind.
"""
from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import deque

from stream.runtime.sending import RecordSender, distinct_futures

log = logging.getLogger(__name__)

CANNOT_PRODUCE_EXIT = 75  # a worker that cannot produce stops; a restart resumes from its state and commits
FAULT_ENV = "FSP_FAULT_EXIT_BEFORE_RELAY"  # fault injection for tests: die in the window this module closes
FAULT_EXIT = 86


class Relay:
    def __init__(self):
        self.incarnation = uuid.uuid4().hex[:12]
        self._n = 0
        self._delivered_upto = 0
        self._queue: asyncio.Queue | None = None
        self._in_flight: deque = deque()  # (tag number, delivery futures), in queue order
        self._exit_before = int(os.environ.get(FAULT_ENV) or 0)  # N: exit once the N-th batch's state is written

    @property
    def queue(self) -> asyncio.Queue:
        if self._queue is None:  # made inside the worker's event loop
            self._queue = asyncio.Queue()
        return self._queue

    def next_tag(self) -> list:
        self._n += 1
        return [self.incarnation, self._n]

    def after(self, writes: list, messages: list[tuple[str, bytes, bytes, int, list | None]], upto: int) -> None:
        """Send `messages` (topic, key, value, partition, headers) once every future in `writes` is done."""
        self.queue.put_nowait((writes, messages, upto))

    @property
    def delivered_upto(self) -> int:
        """Every tag number up to this one is delivered."""
        while self._in_flight and all(f.done() for f in self._in_flight[0][1]):
            upto, futures = self._in_flight.popleft()
            for future in futures:
                if future.exception() is not None:
                    _give_up(future.exception())
            self._delivered_upto = max(self._delivered_upto, upto)  # 0: a batch that owed nothing
        return self._delivered_upto

    async def run(self, sender: RecordSender) -> None:
        """Hand queued records to `sender` once the state writes before them are delivered."""
        queue = self.queue
        while True:
            writes, messages, upto = await queue.get()
            try:
                await asyncio.gather(*writes)
                if self._exit_before and upto >= self._exit_before:
                    log.critical("fault injection: exiting with state written and its records unsent")
                    os._exit(FAULT_EXIT)
                futures = distinct_futures(await sender.send_all(messages))
            except Exception as exc:  # a state write or a send failed: we cannot promise delivery
                _give_up(exc)
            self._in_flight.append((upto, futures))
            queue.task_done()

    async def drain(self) -> None:
        """Hand every queued record to the producer (called before offset commits and marks)."""
        await self.queue.join()

    async def delivered(self) -> None:
        """Wait until everything queued so far is delivered."""
        await self.drain()
        futures = [f for _, fs in self._in_flight for f in fs]
        if futures:
            await asyncio.gather(*futures)


def _give_up(exc: BaseException) -> None:
    log.critical("could not deliver owed records (%s); stopping so that a restart re-sends them", exc)
    os._exit(CANNOT_PRODUCE_EXIT)
