"""City indicators, each defined once (口径一致，出口唯一): the API, the assistant and reports all read these.

- `catalogue.py`: THE list of indicators (name, label, unit, kind, 口径, higher_is_better, `by`, group, the words
  officials use), the dimensions and the channel labels. The API's listing and dispatch, the assistant's generated
  NLU data and (over HTTP) its actions are built from it.
- `scope.py`: the orders a figure counts (`Scope`, `scoped_orders`), `Indicator`, and names ↔ codes.
- `measures.py`: the measures, one function each over a set of orders; `rankings.py`: counts and measures by
  dimension; `topics.py`: 热点诉求 and 高发区域; `alerts.py`: 预警.

A new indicator is one entry in `catalogue.py` plus its computation: a function over orders in
`measures.OF_ORDERS` (then `by` ranks it too) and in `measures.SCOPE_FUNCTIONS`, or a list of its own with an
endpoint in api/routes/indicators.py. tests/orders/test_indicator_catalogue.py checks that each entry is answerable.
"""
from orders.indicators.alerts import alerts
from orders.indicators.catalogue import (
    CATALOGUE,
    CHANNEL_LABELS,
    DIMENSIONS,
    SIMILARITY,
    Entry,
    members,
)
from orders.indicators.measures import (
    GROUP_FUNCTIONS,
    OF_ORDERS,
    SCOPE_FUNCTIONS,
    auto_dispatch_rate,
    average_dispatch_minutes,
    average_handling_hours,
    completion_rate,
    dispatch_accuracy,
    dissatisfaction_rate,
    figures,
    on_time_rates,
    order_count,
    overdue,
    relative_change,
    reopen_rate,
    repeat_requests,
    return_ranking,
    satisfaction_rate,
    with_previous,
)
from orders.indicators.rankings import GROUPINGS, by_dimension, ranking, table
from orders.indicators.scope import (
    NO_NAMES,
    Indicator,
    Names,
    Scope,
    UnknownName,
    resolve_department,
    resolve_district,
    resolve_street,
    scoped_orders,
)
from orders.indicators.topics import hot_areas, hot_topics

__all__ = [
    "CATALOGUE", "CHANNEL_LABELS", "DIMENSIONS", "GROUPINGS", "GROUP_FUNCTIONS", "NO_NAMES",
    "OF_ORDERS", "SCOPE_FUNCTIONS", "SIMILARITY", "Entry", "Indicator", "Names", "Scope", "UnknownName", "alerts",
    "auto_dispatch_rate", "average_dispatch_minutes", "average_handling_hours", "by_dimension", "completion_rate", "figures", "dissatisfaction_rate", "relative_change",
    "dispatch_accuracy", "hot_areas", "hot_topics", "members", "on_time_rates", "order_count", "overdue", "ranking",
    "reopen_rate", "repeat_requests", "resolve_department", "resolve_district", "resolve_street", "return_ranking",
    "satisfaction_rate", "scoped_orders", "table", "with_previous",
]
