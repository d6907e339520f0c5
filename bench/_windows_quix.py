"""Quix Streams running the two jobs of ``bench/windows_vs_quix.py``.

Run as ``python -P bench/_windows_quix.py '<json args>'`` until SIGTERM. ``kind``:

* ``count``: ``group_by("user")`` (a repartition topic, str keys), a tumbling window over the
  value's ``ts`` (``timestamp_extractor``), ``count().final(closing_strategy="partition")``:
  a window is emitted once the partition's max event time passes its end + grace, as
  paxline's watermark does;
* ``join``: ``group_by("user")`` then ``join_asof`` (how="left") with the table topic as the
  right side - Quix Streams' stream-table enrichment; the table topic's keys are the users.

Same producer wire settings as ``bench/_pipeline_quix.py``; otherwise Quix defaults.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent))

from _pipeline_quix import PRODUCER
from _windows_transform import merge
from quixstreams import Application


def _ts(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    return int(value["ts"])


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
    out = app.topic(args["sink"], key_serializer="str", value_serializer="json")
    if args["kind"] == "count":
        src = app.topic(
            args["source"], key_deserializer="str", value_deserializer="json",
            timestamp_extractor=_ts,
        )  # fmt: skip
        sdf = app.dataframe(src).group_by("user", key_serializer="str", key_deserializer="str")
        sdf = sdf.tumbling_window(duration_ms=args["window_ms"], grace_ms=args["grace_ms"])
        sdf = sdf.count().final(closing_strategy="partition")
    else:
        src = app.topic(args["source"], key_deserializer="str", value_deserializer="json")
        table = app.topic(args["table"], key_deserializer="str", value_deserializer="json")
        sdf = app.dataframe(src).group_by("user", key_serializer="str", key_deserializer="str")
        sdf = sdf.join_asof(app.dataframe(table), how="left", on_merge=merge)
    sdf.to_topic(out)
    Path(args["info"]).write_text(
        json.dumps(
            {
                "version": version("quixstreams"),
                "settings": {k: v for k, v in settings.items() if k != "state_dir"},
                "defaults": "commit_interval=5s (Quix defaults)",
            }
        )
    )
    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    app.run()


if __name__ == "__main__":
    main()
