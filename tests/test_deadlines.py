"""
Deadlines: the course's late policy (normgrade.late), the submission time as
staged from nbgrader's timestamp.txt, and the penalty everywhere the score
shows: the run's JSON and table, status, the report, the export, feedback.
"""
import datetime

import pytest
from traitlets.config import Config

from normgrade import late
from normgrade.release import check_due

NOW = datetime.datetime(2026, 12, 4, 17, 0, 0)
DAY = 86400


def _policy(**settings):
    config = Config()
    for name, value in settings.items():
        setattr(config.LatePolicy, name, value)
    return late.policy(config)


def test_no_policy_no_penalty():
    assert _policy().late_submission_penalty("alice", 36.0, 30 * DAY) == 0.0


def test_percent_per_day_or_part_day_with_a_cap_and_zero_after():
    policy = _policy(percent_per_day=10, max_percent=25, zero_after_days=7)
    assert policy.late_submission_penalty("a", 40.0, 0) == 0.0
    assert policy.late_submission_penalty("a", 40.0, 1) == 4.0  # one second late is a part of a day
    assert policy.late_submission_penalty("a", 40.0, DAY) == 4.0
    assert policy.late_submission_penalty("a", 40.0, DAY + 1) == 8.0
    assert policy.late_submission_penalty("a", 40.0, 5 * DAY) == 10.0  # the cap: 25 %
    assert policy.late_submission_penalty("a", 40.0, 7 * DAY) == 10.0
    assert policy.late_submission_penalty("a", 40.0, 7 * DAY + 1) == 40.0  # later than 7 days: nothing


@pytest.mark.parametrize("settings, says", [
    ({"percent_per_day": 150}, "percent from 0 to 100"),
    ({"max_percent": -1}, "percent from 0 to 100"),
    ({"zero_after_days": -2}, "zero_after_days must be 0"),
    ({"extensions": {"alice": "two days"}}, "maps a student id to hours"),
    ({"extensions": {"alice": -5}}, "maps a student id to hours"),
    ({"percent_per_dy": 10}, "sets LatePolicy.percent_per_dy, which is not a setting"),
])
def test_a_wrong_policy_is_refused_with_what_is_wrong(settings, says):
    with pytest.raises(ValueError, match=says):
        _policy(**settings)


def test_extensions_are_hours_by_student():
    policy = _policy(extensions={"alice": 48})
    assert policy.extension("alice") == datetime.timedelta(days=2) and policy.extension("bob") is None


@pytest.mark.parametrize("data, believed, note", [
    (b"2026-12-04 16:59:30.123456 UTC", datetime.datetime(2026, 12, 4, 16, 59, 30, 123456), None),
    (b"2026-12-04T18:59:30+02:00\n", datetime.datetime(2026, 12, 4, 16, 59, 30), None),
    (b"2026-12-04 17:04:00 UTC", datetime.datetime(2026, 12, 4, 17, 4), None),  # within the clock skew
    (None, None, "no timestamp.txt"),
    (b"yesterday-ish", None, "unreadable"),
    (b"\xff\xfe", None, "not UTF-8"),
    (b"2027-01-01 00:00:00 UTC", None, "after this grading"),
])
def test_the_submission_time_is_believed_only_when_it_can_be(data, believed, note):
    when, why = late.submission_time(data, NOW, due=NOW)
    assert when == believed
    assert (why is None) if note is None else (note in why and "no late penalty was applied" in why)


def test_a_missing_time_is_worth_a_note_only_with_a_due_date():
    assert late.submission_time(None, NOW, due=None) == (None, None)


def test_the_deadline_key_changes_with_what_decides_lateness():
    policy = _policy(percent_per_day=10, extensions={"alice": 24})
    keys = {late.deadline_key(NOW, policy, "alice"), late.deadline_key(NOW, policy, "bob"),
            late.deadline_key(NOW + datetime.timedelta(days=1), policy, "bob"),
            late.deadline_key(NOW, _policy(percent_per_day=5), "bob")}
    assert len(keys) == 4


def test_a_due_date_in_the_past_or_unreadable_is_refused():
    assert check_due("2026-12-04 18:00 UTC", now=NOW) == datetime.datetime(2026, 12, 4, 18)
    with pytest.raises(ValueError, match="is in the past"):
        check_due("2026-12-04 16:00 UTC", now=NOW)
    with pytest.raises(ValueError, match="is not a time"):
        check_due("next friday at five", now=NOW)
