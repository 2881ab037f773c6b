"""The calls-per-day chart keeps every day label inside the picture."""

import datetime as dt
from types import SimpleNamespace

import pytest

from calls import dashboard


@pytest.mark.parametrize("days", [1, 2, 7, 10, 31])
def test_no_day_label_runs_past_the_right_edge(days):
    first = dt.date(2026, 12, 1)
    fig = SimpleNamespace(
        per_day=[{"day": first + dt.timedelta(days=i), "total": 1, "counts": {"completed": 1}} for i in range(days)],
        statuses=[("completed", "Completed")],
    )
    chart = dashboard._day_chart(fig)
    for label in chart["labels"]:
        right = float(label["x"]) if label["end"] else float(label["x"]) + dashboard.LABEL_HALF_W
        assert right <= chart["w"], label
    assert chart["labels"][0]["text"] == "01 Dec"
