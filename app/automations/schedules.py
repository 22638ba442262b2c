"""Whether a cron schedule is one to keep: readable, and running as its writer surely meant."""

from datetime import datetime, timedelta

from croniter import CroniterError, croniter

# Its next two runs must fall within this: a schedule that never runs ("0 0 31 2 *") or
# almost never is a mistake, and one run alone could be a date that happens to exist.
HORIZON = timedelta(days=5 * 365 + 1)
MAX_LENGTH = 100
# Each field's name and how many values it has: a step (/N) as large as that means
# "only the first value" (*/1000000000 in the minute field runs on the hour), never what
# was written.
FIELDS = (("minute", 60), ("hour", 24), ("day of the month", 31), ("month", 12), ("weekday", 7))
ANY = ("*", "?")

NOT_CRON = ("Not a valid schedule: five fields, minute hour day month weekday, like */15 * * * * "
            "or 0 9 * * 1-5.")


def problem(cron: str, now: datetime) -> str | None:
    """What is wrong with the schedule `cron` (fields separated by single spaces), in words
    for the person who typed it; None when it is good. `now` is naive UTC."""
    fields = cron.split(" ")
    if len(cron) > MAX_LENGTH or len(fields) != len(FIELDS):
        return NOT_CRON
    try:
        if not croniter.is_valid(cron):
            return NOT_CRON
    except (CroniterError, ValueError, TypeError):
        return NOT_CRON
    for (name, size), field in zip(FIELDS, fields, strict=True):
        for part in field.split(","):
            step = part.partition("/")[2]
            if step and not (step.isascii() and step.isdigit() and 1 <= int(step) < size):
                return (f"The step /{step} in the {name} field must be from 1 to {size - 1}: "
                        f"a larger one would run only at the field's first value.")
    day, weekday = fields[2], fields[4]
    if day not in ANY and weekday not in ANY:
        # cron runs on either one, not on days that are both: "0 0 29 2 1" is every
        # Monday of February, not a Monday the 29th.
        return ("Give a day of the month or a weekday, not both: cron would run on every day "
                "that matches either one. For the first Monday of a month, write 1#1 as the "
                "weekday.")
    try:
        runs = croniter(cron, now)
        second = [runs.get_next(datetime), runs.get_next(datetime)][1]
    except CroniterError:  # no date matches at all, such as 0 0 31 2 * (no 31 February)
        second = None
    if second is None or second - now > HORIZON:
        return ("This schedule would not run twice in the next five years: check the day and "
                "the month (February has no 30th or 31st; April, June, September and "
                "November have no 31st).")
    return None
