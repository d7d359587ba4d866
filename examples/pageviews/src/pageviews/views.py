"""page-views: per page and hour, distinct visitors, total time on page, latest referrer."""

from logstream.aggregates import distinct, latest, sum_of
from logstream.view import HOUR_MS, View

__all__ = ["page_views"]

page_views = View(
    name="page-views",
    topics=("page_views",),
    bucket_ms=HOUR_MS,
    key="url",
    aggregates=(
        distinct("visitor_id", name="visitors"),
        sum_of("seconds_on_page", name="time_on_page"),
        latest("referrer", name="latest_referrer"),
    ),
    totals=True,
)
