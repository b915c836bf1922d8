"""Log observers for ``twistd --logger``: JSON lines on standard output.

``twistd -n --logger devpi_twisted.logfmt.json_lines devpi ...`` writes one JSON
object per event: ``time`` (ISO 8601, UTC), ``level``, ``namespace``, ``message``
(the event formatted as text), ``traceback`` for failures, and every field of the
event whose value is a plain JSON value (access log events: client, user, method,
uri, protocol, status, size, referer, agent, duration). Events carry no secrets
(STYLE.md 8), so fields are written as they are.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import ILogObserver, LogEvent, formatEvent
from zope.interface import implementer

_PLAIN = (str, int, float, bool, type(None))


def event_as_json(event: LogEvent) -> str:
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0), timezone.utc).isoformat(),
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if not key.startswith("log_") and key not in record and isinstance(value, _PLAIN):
            record[key] = value
    return json.dumps(record, ensure_ascii=False)


@implementer(ILogObserver)
class JsonLinesObserver:
    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: LogEvent) -> None:
        self._out.write(event_as_json(event) + "\n")
        self._out.flush()


def json_lines() -> JsonLinesObserver:
    """The observer factory twistd's ``--logger`` option names."""
    return JsonLinesObserver(sys.stdout)
