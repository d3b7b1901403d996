"""Five-field cron expressions (minute hour day-of-month month day-of-week).

Supports ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists
``a,b,c``, month and weekday names (``jan``, ``mon``), ``7`` for Sunday, and the
macros ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``,
``@hourly``. As in Vixie cron, when both day-of-month and day-of-week are restricted
a day matches if either does.

>>> Cron("*/15 9-17 * * mon-fri").next_after(datetime.datetime(2024, 1, 5, 17, 50))
datetime.datetime(2024, 1, 8, 9, 0)
"""

from __future__ import annotations

import datetime

__all__ = ["Cron", "CronError"]

_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_Field = tuple[str, int, int, dict[str, int]]
_FIELDS: tuple[_Field, ...] = (
    ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS),
)


class CronError(ValueError):
    """A cron expression is malformed; the message names the field."""


def _value(text: str, lo: int, hi: int, names: dict[str, int], field: str) -> int:
    v = names.get(text.lower()) if names else None
    if v is None:
        if not text.isdigit():
            raise CronError(f"{field}: {text!r} is not a number{' or name' if names else ''}")
        v = int(text)
    if not lo <= v <= hi:
        raise CronError(f"{field}: {v} is outside {lo}-{hi}")
    return v


def _parse_field(text: str, lo: int, hi: int, names: dict[str, int], field: str) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item in {text!r}")
        rng, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if rng == "*":
            start, end = lo, hi
        elif "-" in rng:
            a, b = rng.split("-", 1)
            start, end = _value(a, lo, hi, names, field), _value(b, lo, hi, names, field)
            if start > end:
                raise CronError(f"{field}: range {rng!r} runs backwards")
        else:
            start = _value(rng, lo, hi, names, field)
            end = hi if step_text else start
        values.update(range(start, end + 1, step))
    return values


class Cron:
    """A parsed cron expression; :meth:`next_after` gives the next matching minute."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        text = _MACROS.get(expression.strip().lower(), expression)
        parts = text.split()
        if len(parts) != 5:
            raise CronError(
                f"expected 5 fields (minute hour day-of-month month day-of-week), got"
                f" {len(parts)} in {expression!r}"
            )
        sets = [_parse_field(p, lo, hi, names, name)
                for p, (name, lo, hi, names) in zip(parts, _FIELDS, strict=True)]
        self.minutes, self.hours, self.days, self.months, dows = sets
        self.dows = {d % 7 for d in dows}
        self.dom_any = parts[2] == "*"
        self.dow_any = parts[4] == "*"

    def _day_matches(self, d: datetime.datetime) -> bool:
        dom = d.day in self.days
        dow = (d.weekday() + 1) % 7 in self.dows
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow

    def next_after(self, when: datetime.datetime) -> datetime.datetime:
        """The first matching minute strictly after ``when`` (same tzinfo)."""
        t = when.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
        for _ in range(100_000):
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(t):
                t = (t + datetime.timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + datetime.timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute not in self.minutes:
                t += datetime.timedelta(minutes=1)
                continue
            return t
        raise CronError(f"{self.expression!r} never matches")
