"""The benchmark's baseline: a naive single-message FastStream consumer committing each event alone.

    python bench/naive_worker.py REDIS_URL PREFIX DB_PATH
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faststream.redis import RedisBroker, StreamSub  # noqa: E402
from faststream.redis.annotations import RedisStreamMessage  # noqa: E402

from pheromone.contracts import parse_envelope  # noqa: E402
from pheromone.contracts.streams import Keys  # noqa: E402
from pheromone.services.store.db import Store  # noqa: E402


async def main(url: str, prefix: str, db: str) -> None:
    import logging

    broker = RedisBroker(url, logger=None)
    store = Store(db)
    await store.open()
    for stream in ("ingest", "ratelimits", "discoveries"):
        sub = broker.subscriber(stream=StreamSub(Keys(prefix).stream(stream), group="naive", consumer="c1",
                                                 last_id=">"))

        @sub
        async def handle(msg: RedisStreamMessage) -> None:
            raw = msg.raw_message["data"][b"e"]
            await store.apply([(parse_envelope(raw), raw)])
            await msg.ack()

    logging.disable(logging.INFO)
    await broker.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await broker.stop()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
