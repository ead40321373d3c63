"""The panel's Job tab edits when a job runs: a schedule (described in words, with its next fire times),
a periodic or file-arrival trigger, continuous; invalid expressions show their problem (pure)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from conftest import ROOT
from nbjobs.ui import JobPanel
from nbjobs.ui.scheduleform import schedule_info

pytestmark = pytest.mark.pure


def test_the_sample_jobs_schedule_in_words_and_edits(workspace):
    panel = JobPanel(ROOT / "sample_notebooks" / "restaurant_job.yml", client=workspace)
    form = panel.editor.job_form.schedule
    assert (form.kind.value, form.cron.value, form.timezone.value, form.paused.value) == (
        "schedule", "0 30 2 * * ?", "Europe/Paris", True)
    assert "at 02:30 every day, Europe/Paris" in form.info.value and "next:" in form.info.value

    form.cron.value = "0 15 10 ? * 6L"
    assert "at 10:15 on the last Friday of every month, Europe/Paris" in form.info.value
    assert panel.draft.settings["schedule"] == {"quartz_cron_expression": "0 15 10 ? * 6L",
                                                "timezone_id": "Europe/Paris", "pause_status": "PAUSED"}
    form.paused.value = False
    assert panel.draft.settings["schedule"]["pause_status"] == "UNPAUSED"
    assert panel.problems == []

    form.cron.value = "0 0 6 * * *"
    assert "exactly one of day-of-month and day-of-week" in form.info.value
    assert any(p.path == "schedule.quartz_cron_expression" for p in panel.problems)

    form.kind.value = "periodic"
    form.interval.value = 3
    assert "schedule" not in panel.draft.settings
    assert panel.draft.settings["trigger"] == {"periodic": {"interval": 3, "unit": "HOURS"}, "pause_status": "UNPAUSED"}
    form.kind.value = "file_arrival"
    form.url.value = "/Volumes/main/raw/landing/"
    assert panel.draft.settings["trigger"] == {"file_arrival": {"url": "/Volumes/main/raw/landing/"},
                                               "pause_status": "UNPAUSED"}
    form.kind.value = "continuous"
    assert panel.draft.settings["continuous"] == {"pause_status": "UNPAUSED"} and "trigger" not in panel.draft.settings
    form.kind.value = "none"
    assert not {"schedule", "trigger", "continuous"} & set(panel.draft.settings)
    assert panel.problems == []


def test_schedule_info():
    after = datetime(2026, 3, 27, 12, tzinfo=timezone.utc)
    html = schedule_info("0 30 2 * * ?", "Europe/Paris", after, count=2)
    assert "2026-03-28T02:30:00+01:00<br>2026-03-30T02:30:00+02:00" in html  # the 29th: 02:30 does not exist
    assert "not a known time-zone id" in schedule_info("0 30 2 * * ?", "Mars/Olympus")
    assert "no more fire times" in schedule_info("0 0 0 1 1 ? 2020", "UTC", after)
