"""The `paxline` command: `main` builds the app; `jobs` and `stack` add their sub-commands.

`STARTED` is when this process started, on the monotonic clock: a command's time budget
(`--timeout`) counts from there, because interpreter start-up and imports are part of what
the operator waits for (seconds, on a loaded machine).
"""

import os
import time


def _process_start() -> float:
    now = time.monotonic()
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        with open(f"/proc/{os.getpid()}/stat") as f:
            # Field 22 (starttime, clock ticks after boot); the name in field 2 may hold spaces.
            fields = f.read().rsplit(")", 1)[1].split()
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now  # not Linux: count from here
    return now - min(max(age, 0.0), 5.0)


STARTED = _process_start()
