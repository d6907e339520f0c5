"""The stream reader's loop thread outlives an unexpected error: a worker whose reader thread
died would stall its partitions for good, with nothing to restart it."""

from __future__ import annotations

import threading

from paxline.localstack.common import wait_until
from pipeline.rabbitmq.streams import StreamReader


class _FailsOnce(StreamReader):
    runs = 0
    second = threading.Event()

    async def _manage(self) -> None:
        type(self).runs += 1
        if type(self).runs == 1:
            raise RuntimeError("an answer the client did not expect")
        self.second.set()
        await super()._manage()


def test_an_error_in_the_loop_restarts_it_instead_of_ending_the_thread() -> None:
    reader = _FailsOnce("t", {0: "s"}, "rabbitmq-stream://guest:guest@127.0.0.1:9/")
    try:
        wait_until(reader.second.is_set, 10, "the loop to run again")
        assert reader._thread.is_alive()
    finally:
        reader.close()
    assert not reader._thread.is_alive()
