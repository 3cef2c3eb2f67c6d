"""The indicator catalogue as the actions know it: read from the service (GET /api/v1/indicators), never copied.

The service's catalogue (orders/indicators/catalogue.py) names every indicator, its label, unit, whether higher is
better, whether it can be ranked by a dimension, the words officials use for it, and the channels' labels. The
actions may not import it (they reach the service over HTTP only), so they fetch it once per service and keep it.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from assistant.actions.client import ServiceClient, ServiceUnavailable

GENERIC = "order_count"   # its words (投诉, 多少件…) lose to any more specific indicator named in the same message


@dataclass(frozen=True)
class Metric:
    name: str                       # the indicators API's name
    label: str
    unit: str                       # 件 / 比例 / 小时 / 分钟 / 个 / 条
    kind: str                       # count / rate / average / list
    higher_is_better: bool = True
    rankable: bool = True           # supports by=…


@dataclass(frozen=True)
class Catalogue:
    metrics: dict[str, Metric]                  # the indicators officials name, by API name
    words: tuple[tuple[str, str], ...]          # (word, API name), most specific first
    channel_labels: dict[str, str]

    @classmethod
    def from_listing(cls, listing: dict) -> Catalogue:
        """From the answer of GET /api/v1/indicators; ServiceUnavailable when it is not one."""
        try:
            named = [i for i in listing["indicators"] if i.get("words")]
            metrics = {i["name"]: Metric(i["name"], i["label"], i["unit"], i["kind"], i["higher_is_better"] is not False,
                                         bool(i["supports_by"])) for i in named}
            # The generic count's words last, then longer words first: 按时办结率 before 办结率.
            words = sorted(((word, i["name"]) for i in named for word in (*i["words"], *i.get("ambiguous", ()))),
                           key=lambda pair: (pair[1] == GENERIC, -len(pair[0])))
            channels = {c["name"]: c["label"] for c in listing["channels"]}
        except (KeyError, TypeError) as exc:
            raise ServiceUnavailable(f"unexpected indicator catalogue ({exc!r})") from None
        if GENERIC not in metrics:
            raise ServiceUnavailable(f"the indicator catalogue has no {GENERIC}")
        return cls(metrics, tuple(words), channels)

    def metric_of(self, text: str | None) -> str | None:
        """The indicator a phrase names (the most specific word in it), or None."""
        if not text:
            return None
        prepared = unicodedata.normalize("NFKC", text).strip()
        if prepared in self.metrics:                          # an entity already mapped to the API's name
            return prepared
        lowered = prepared.lower()
        return next((name for word, name in self.words if word.lower() in lowered), None)


_catalogues: dict[str, Catalogue] = {}   # by the service's base URL: tests run several services in one process


async def indicator_catalogue(api: ServiceClient, *, token: str) -> Catalogue:
    """The service's catalogue, fetched on first use and kept for the life of the process."""
    base_url = api.context.base_url.rstrip("/")
    if base_url not in _catalogues:
        _catalogues[base_url] = Catalogue.from_listing(await api.indicator_catalogue(token=token))
    return _catalogues[base_url]
