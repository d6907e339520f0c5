"""faust-streaming running the benchmark job: one agent that filters, enriches and sends.

Run by ``bench/pipeline.py`` as ``python -P bench/_pipeline_faust.py '<json args>'``. faust uses
group subscribe with its own group (the app id), reads from the earliest offset, and its JSON
codec is orjson when installed (it is). The producer is faust's aiokafka producer with acks=-1
(all) and linger 5 ms; faust exposes no idempotence setting and lz4 would need another package,
so those two differ from the other systems (both make faust's producer *cheaper*, not dearer).
The agent is the idiomatic one: ``async for event in stream.events(): await out.send(...)``.
Runs until SIGTERM; the benchmark watches the output topic.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))

import faust
from _pipeline_transform import enrich, positive


def main() -> None:
    args = json.loads(sys.argv[1])
    settings = {
        "store": "memory://",
        "web_enabled": False,
        "topic_partitions": int(args["partitions"]),
        "topic_replication_factor": 1,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_linger": 0.005,
        "datadir": args["state_dir"],
    }
    app = faust.App(args["group"], broker=f"kafka://{args['bootstrap']}", **settings)
    src = app.topic(args["source"], key_type=bytes, key_serializer="raw", value_serializer="json")
    out = app.topic(args["sink"], key_type=bytes, key_serializer="raw", value_serializer="json")

    @app.agent(src)
    async def process(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            value = event.value
            if positive(value):
                await out.send(key=event.key, value=enrich(value))

    Path(args["info"]).write_text(
        json.dumps(
            {
                "version": version("faust-streaming"),
                "aiokafka": version("aiokafka"),
                "settings": {k: v for k, v in settings.items() if k != "datadir"},
                "defaults": "broker_commit_interval=2.8s, stream_buffer_maxsize=4096, "
                "no idempotence, no compression (faust defaults)",
            }
        )
    )
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
