"""Change windows: a cron schedule that opens a window, and how long it stays open.

Written as Argo CD writes its sync windows: ``"<minute> <hour> <day-of-month> <month>
<day-of-week>" <duration>``, for example ``"0 9 * * 1-5" 8h`` (weekdays from 09:00 to
17:00), read in one time zone. Each field takes ``*``, numbers, ranges ``a-b``, lists
``a,b`` and steps ``*/n`` or ``a-b/n``; days of the week run 0-7 (0 and 7 are Sunday).
Pure: the detector asks :meth:`Window.open_at` about a record's time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

# Field ranges in cron's order: minute, hour, day of month, month, day of week.
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
# A window longer than a week never closes: every week would be inside it.
MAX_DURATION = timedelta(days=7)


@dataclass(frozen=True)
class Window:
    """One change window: the minutes a schedule matches, each opening ``duration``."""

    text: str
    fields: tuple[frozenset[int], ...]
    duration: timedelta

    def open_at(self, moment: datetime) -> bool:
        """Whether ``moment`` (already in the windows' time zone) lies inside a window."""
        start = moment.replace(second=0, microsecond=0)
        # Walk back minute by minute over one duration: at most a week of minutes, only
        # for changes in protected namespaces.
        for minutes in range(int(self.duration.total_seconds() // 60)):
            if self._matches(start - timedelta(minutes=minutes)):
                return True
        return False

    def _matches(self, moment: datetime) -> bool:
        minute, hour, day, month, weekday = self.fields
        cron_weekday = moment.isoweekday() % 7  # Sunday is 0 (and 7, folded at parse)
        return (moment.minute in minute and moment.hour in hour and moment.month in month
                and moment.day in day and cron_weekday in weekday)


def parse(text: str) -> Window:
    """Reads ``"<cron schedule> <duration>"``; ValueError says what is wrong."""
    parts = text.split()
    if len(parts) != 6:
        raise ValueError(f"change window {text!r} must be five cron fields and a duration, "
                         "e.g. '0 9 * * 1-5 8h'")
    fields = tuple(_field(part, low, high, text) for part, (low, high)
                   in zip(parts[:5], _RANGES, strict=True))
    weekdays = fields[4] | ({0} if 7 in fields[4] else set())
    return Window(text, (*fields[:4], frozenset(weekdays - {7})), _duration(parts[5], text))


def _field(part: str, low: int, high: int, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in part.split(","):
        span, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                first, last = low, high
            elif "-" in span:
                first_text, last_text = span.split("-", 1)
                first, last = int(first_text), int(last_text)
            else:
                first = last = int(span)
        except ValueError:
            raise ValueError(f"change window {text!r}: cannot read {item!r}") from None
        if step < 1 or not low <= first <= last <= high:
            raise ValueError(f"change window {text!r}: {item!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _duration(part: str, text: str) -> timedelta:
    found = _DURATION.match(part)
    if found is None or not any(found.groups()):
        raise ValueError(f"change window {text!r}: duration {part!r} must look like "
                         "8h, 30m, 1h30m or 2d")
    days, hours, minutes = (int(group or 0) for group in found.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes)
    if not timedelta(minutes=1) <= duration <= MAX_DURATION:
        raise ValueError(f"change window {text!r}: duration must be 1m to 7d")
    return duration
