"""Quix Streams running the benchmark job (filter + enrich, JSON in and out).

Run by ``bench/pipeline.py`` as ``python -P bench/_pipeline_quix.py '<json args>'``. Quix Streams
uses group subscribe (its normal mode) with a consumer group of its own, reads from the
earliest offset and runs at-least-once (its default). Its producer gets the same wire settings
as the paxline worker and the raw loop (idempotent, acks=all, lz4, linger 5 ms); everything
else is Quix's defaults. Runs until SIGTERM; the benchmark watches the output topic.

``guarantee`` picks ``processing_guarantee`` (systems ``quix`` / ``quix-eos``); ``stateful``
runs the keyed count instead (systems ``quix-count`` / ``quix-eos-count``): ``group_by`` the
user (a repartition topic, as paxline's ``key_by``), then a per-key count in Quix's RocksDB
state, emitting ``{"id", "user", "n"}`` per record.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib.metadata import version
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))

from _pipeline_transform import count_state, enrich, positive
from quixstreams import Application

PRODUCER = {
    "linger.ms": 5,
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 200000,
}


def main() -> None:
    args = json.loads(sys.argv[1])
    settings = {
        "consumer_group": args["group"],
        "auto_offset_reset": "earliest",
        "processing_guarantee": args.get("guarantee", "at-least-once"),
        "producer_extra_config": PRODUCER,
        "state_dir": args["state_dir"],
        "loglevel": "WARNING",
    }
    app = Application(broker_address=args["bootstrap"], **settings)
    src = app.topic(args["source"], key_deserializer="bytes", value_deserializer="json")
    out = app.topic(args["sink"], key_serializer="bytes", value_serializer="json")
    sdf = app.dataframe(src)
    if args.get("stateful"):
        sdf = sdf.filter(positive).group_by("user")
        sdf = sdf.apply(count_state, stateful=True)
    else:
        sdf = sdf.filter(positive).apply(enrich)
    sdf.to_topic(out)
    Path(args["info"]).write_text(
        json.dumps(
            {
                "version": version("quixstreams"),
                "settings": {k: v for k, v in settings.items() if k != "state_dir"},
                "defaults": "commit_interval=5s, consumer_poll_timeout=1s, "
                "partitioner=murmur2 (Quix defaults)",
            }
        )
    )
    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    app.run()


if __name__ == "__main__":
    main()
