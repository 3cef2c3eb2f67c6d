"""Open311 GeoReport v2 over the work-order service: the service list from the taxonomy, intake checks, and what
an order looks like to the public. Keyword-only functions; the caller owns the session. No HTTP here.

Choices (GeoReport v2 leaves them to the server):
- A service is a level-2 category (子类) of the city's taxonomy; its code is the first four digits of the taxonomy
  code ("0101" = 城市管理/市容秩序). The level-3 category (细类) is the one optional attribute, "subtype".
- The router decides who owns a request. The client's service_code (and subtype) is only a hint: it is kept as a
  tag (`open311:service=0101`) and, when the router put the complaint in another service, a second tag
  (`open311:service_differs`) shows the agent the disagreement instead of overriding either answer.
- Personal fields (email, first_name, last_name, device_id, account_id) are accepted and dropped: we do not need
  them. The phone goes to the order's caller phone as on every channel. media_url is kept in the data of the
  order's first event ("create"), so no column is added for an Open311-only field.
- Public output carries the masked text only (nlp.pii.mask_pii, applied again on the way out so rows stored
  before the masking learnt a form are covered: phones, ID numbers, cards, e-mail, plates, rooms, names).
- What is published is the city's choice (Settings.open311_publish): "open311" (default) = only requests filed
  through Open311; "all" = every top-level order, without coordinates for those of other channels; "none" = no
  request at all (an order not published answers exactly like a missing one). Lists come in pages of
  PAGE_SIZE (50), at most MAX_PAGE_SIZE (200) per call.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from hotline.core.clock import CITY_TZ
from knowledge_base.kb import KnowledgeBase
from knowledge_base.models import TaxonomyNode
from nlp.normalize import InputError, check_text
from nlp.pii import mask_pii
from orders.intake import file_complaint
from orders.lifecycle import ACTION_LABELS, OPEN_STATES, STATE_LABELS, State
from orders.models import WorkOrder
from orders.service import Actor, canonical_order_no

SUBTYPE_ATTRIBUTE = "subtype"
DESCRIPTION_MAX_CHARS = 4000          # GeoReport v2: "a full description of the request … up to 4,000 characters"
MAX_WINDOW = dt.timedelta(days=90)    # GeoReport v2: the date range of GET requests is limited to 90 days
PAGE_SIZE = 50                        # GET requests.json: results per page by default …
MAX_PAGE_SIZE = 200                   # … and at most (page_size=)
PUBLISH_CHOICES = ("open311", "all", "none")
OPEN311_CHANNEL = "open311"
MAX_IDS = 100                         # service_request_id=a,b,c… per call
MEDIA_URL_MAX_CHARS = 2048
SERVICE_TAG = "open311:service="
DIFFERS_TAG = "open311:service_differs"
# Every city of this product is in China (UTC+8 all year): times are shown in local time with the offset, and a
# date given without an offset is read as local time.
LOCAL_TIME = CITY_TZ


class Open311InputError(ValueError):
    """Bad input from an Open311 client; the message says which field and why (an HTTP 400)."""


# -- services ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Service:
    code: str                                  # level-2 prefix of the taxonomy code, e.g. "0101"
    group: str                                 # 大类
    name: str                                  # 大类/子类
    subtypes: tuple[TaxonomyNode, ...]         # 细类
    keywords: tuple[str, ...] = field(default=())

    @property
    def description(self) -> str:
        return "包括：" + "、".join(node.level3 for node in self.subtypes)

    @property
    def has_attributes(self) -> bool:
        # A one-item list would be a question with one answer: such services have no attributes.
        return len(self.subtypes) > 1


def service_catalogue(kb: KnowledgeBase, *, max_keywords: int = 20) -> dict[str, Service]:
    """One service per level-2 category, in taxonomy order, with the keywords of the entries in force under it."""
    nodes: dict[str, list[TaxonomyNode]] = {}
    for code in sorted(kb.taxonomy):
        nodes.setdefault(code[:4], []).append(kb.taxonomy[code])
    keywords: dict[str, list[str]] = {}
    for entry in kb.active_entries():
        bucket = keywords.setdefault(entry.category[:4], [])
        bucket.extend(word for word in entry.keywords if word not in bucket)
    return {prefix: Service(code=prefix, group=group[0].level1, name=f"{group[0].level1}/{group[0].level2}",
                            subtypes=tuple(group), keywords=tuple(keywords.get(prefix, [])[:max_keywords]))
            for prefix, group in nodes.items()}


def service_json(service: Service) -> dict:
    return {"service_code": service.code, "service_name": service.name, "description": service.description,
            "metadata": service.has_attributes, "type": "realtime", "keywords": ",".join(service.keywords),
            "group": service.group}


def service_definition_json(service: Service) -> dict:
    attributes = []
    if service.has_attributes:
        attributes.append({
            "variable": True, "code": SUBTYPE_ATTRIBUTE, "datatype": "singlevaluelist", "required": False,
            "datatype_description": "可不填：系统按描述自动分拨，所选细类仅供参考",
            "order": 1, "description": "问题细类",
            "values": [{"key": node.code, "name": node.level3} for node in service.subtypes]})
    return {"service_code": service.code, "attributes": attributes}


# -- intake ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Intake:
    """A checked Open311 submission, ready to be routed and stored."""

    text: str                      # the complaint as stored and routed: the description (+ the address given)
    service: Service
    subtype: str | None
    lat: float | None
    lng: float | None
    media_url: str | None


def check_intake(kb: KnowledgeBase, *, service_code: str | None, description: str | None,
                 lat: float | None, lng: float | None, address_string: str | None, address_id: str | None,
                 media_url: str | None, attributes: dict[str, str]) -> Intake:
    """Validate a POST requests.json; Open311InputError names the field and the reason."""
    catalogue = service_catalogue(kb)
    code = (service_code or "").strip()
    if not code:
        raise Open311InputError("service_code is required (see services.json)")
    service = catalogue.get(code)
    if service is None:
        raise Open311InputError(f"service_code {code!r} is not one of this jurisdiction's services (see services.json)")

    if description is None or not description.strip():
        raise Open311InputError("description is required: say what the problem is and where")
    try:
        text = check_text(description, max_chars=DESCRIPTION_MAX_CHARS)
    except InputError as exc:
        raise Open311InputError(f"description: {exc}") from None

    if (lat is None) != (lng is None):
        raise Open311InputError("lat and long go together: send both or neither")
    if lat is not None and not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise Open311InputError("lat must be within ±90 and long within ±180 (WGS-84 degrees)")
    address = (address_string or "").strip() or None
    if lat is None and address is None:
        if (address_id or "").strip():
            raise Open311InputError("address_id is not supported here (no master address repository); "
                                    "send lat/long or address_string")
        raise Open311InputError("a location is required: lat and long (WGS-84) or address_string")
    if address and address not in text:
        # The router reads the place from the text, as an agent would type the address into the record.
        text = f"{text}\n地址：{address}"
    return Intake(text=text, service=service, subtype=_check_attributes(service, attributes), lat=lat, lng=lng,
                  media_url=_check_media_url(media_url))


def _check_attributes(service: Service, attributes: dict[str, str]) -> str | None:
    unknown = sorted(set(attributes) - ({SUBTYPE_ATTRIBUTE} if service.has_attributes else set()))
    if unknown:
        raise Open311InputError(f"unknown attribute(s) {', '.join(unknown)} for service {service.code} "
                                f"(see services/{service.code}.json)")
    value = (attributes.get(SUBTYPE_ATTRIBUTE) or "").strip()
    if not value:
        return None
    if value not in {node.code for node in service.subtypes}:
        raise Open311InputError(f"attribute[{SUBTYPE_ATTRIBUTE}] {value!r} is not a subtype of service {service.code}")
    return value


def _check_media_url(media_url: str | None) -> str | None:
    url = (media_url or "").strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:   # e.g. a malformed IPv6 host
        parts = None
    if (parts is None or len(url) > MEDIA_URL_MAX_CHARS or parts.scheme not in ("http", "https") or not parts.netloc
            or any(ch.isspace() or not ch.isprintable() for ch in url)):
        # Only web links: the URL is shown back to the public, so no javascript:, data: or file: URLs.
        raise Open311InputError(f"media_url must be an http(s) URL of at most {MEDIA_URL_MAX_CHARS} characters")
    return url


def create_request(session: Session, *, kb: KnowledgeBase, intake: Intake, actor: Actor,
                   caller_phone: str | None = None, routing: dict | None = None,
                   routing_model: str | None = None, auto_dispatch: bool = False,
                   text_vector=None, vector_model: str | None = None) -> WorkOrder:
    """File an Open311 submission as a work order (channel "open311") through the one intake, routed by the router
    and dispatched when it is sure, like every channel; the client's service_code is kept apart as a hint. The
    matter's vector the router embedded (`text_vector`) is kept for same-event search, as the other channels do."""
    order, _ = file_complaint(session, text=intake.text, channel="open311", actor=actor, caller_phone=caller_phone,
                              lat=intake.lat, lng=intake.lng, routing=routing, routing_model=routing_model,
                              auto_dispatch=auto_dispatch, text_vector=text_vector, vector_model=vector_model)
    _record_hint(order, intake=intake, kb=kb)
    session.flush()
    return order


def _record_hint(order: WorkOrder, *, intake: Intake, kb: KnowledgeBase) -> None:
    """Keep the client's choice of service next to the router's answer (never instead of it), and the media URL."""
    tags = list(order.tags or [])
    tags.append(SERVICE_TAG + intake.service.code)
    routed = order_service_code(order, kb)
    if routed is not None and routed != intake.service.code:
        tags.append(DIFFERS_TAG)
    order.tags = tags          # a new list: the JSON column does not track in-place changes
    created = order.events[0]
    created.data = {**(created.data or {}),
                    "open311": {"service_code": intake.service.code, "subtype": intake.subtype,
                                "media_url": intake.media_url}}


# -- reading requests --------------------------------------------------------------------------------------------
def parse_datetime(value: str, *, name: str) -> dt.datetime:
    """ISO 8601 (w3 profile); a value without an offset is local time (UTC+8)."""
    text = value.strip()
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Open311InputError(f"{name} is not an ISO 8601 date-time, e.g. 2026-11-01T00:00:00+08:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=LOCAL_TIME)


def request_window(*, start: str | None, end: str | None, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start, end] of GET requests.json: the last 90 days by default; a wider or reversed window is refused."""
    start_at = parse_datetime(start, name="start_date") if start else None
    end_at = parse_datetime(end, name="end_date") if end else None
    if start_at is None and end_at is None:
        end_at = now
    try:
        if start_at is None:
            start_at = end_at - MAX_WINDOW
        if end_at is None:
            end_at = start_at + MAX_WINDOW
        start_at.astimezone(dt.UTC), end_at.astimezone(dt.UTC)   # the query compares in UTC
    except OverflowError:
        raise Open311InputError("start_date/end_date are out of range") from None
    if start_at > end_at:
        raise Open311InputError("start_date is after end_date")
    if end_at - start_at > MAX_WINDOW:
        raise Open311InputError(f"the date range is {(end_at - start_at).days} days; at most 90 days per call")
    return start_at, end_at


def split_list(value: str | None) -> list[str]:
    """Open311 list parameters are comma separated ("open,closed")."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def find_requests(session: Session, *, kb: KnowledgeBase, order_nos: list[str] | None = None,
                  service_codes: list[str] | None = None, statuses: list[str] | None = None,
                  start: dt.datetime | None = None, end: dt.datetime | None = None,
                  publish: str = "open311", limit: int = PAGE_SIZE, offset: int = 0) -> list[WorkOrder]:
    """Published top-level orders (co-handler child orders are internal) matching the filters, newest first, one
    page. Order numbers, when given, override every other filter (GeoReport v2) but never what is published."""
    if publish == "none":
        return []
    query = (select(WorkOrder).where(WorkOrder.parent_id.is_(None)).options(selectinload(WorkOrder.events))
             .order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc())
             .limit(max(1, min(limit, MAX_PAGE_SIZE))).offset(max(0, offset)))
    if publish != "all":
        query = query.where(WorkOrder.channel == OPEN311_CHANNEL)
    if order_nos:
        if len(order_nos) > MAX_IDS:
            raise Open311InputError(f"at most {MAX_IDS} service_request_id values per call")
        return list(session.scalars(query.where(WorkOrder.order_no.in_([n.upper() for n in order_nos]))))
    if service_codes:
        catalogue = service_catalogue(kb)
        unknown = [code for code in service_codes if code not in catalogue]
        if unknown:
            raise Open311InputError(f"unknown service_code {', '.join(unknown)} (see services.json)")
        query = query.where(or_(*(_in_service(catalogue[code]) for code in service_codes)))
    wanted = set(statuses or [])
    if wanted - {"open", "closed"}:
        raise Open311InputError(f"status must be open, closed or open,closed (got {','.join(sorted(wanted))})")
    open_states = sorted(OPEN_STATES)
    if wanted == {"open"}:
        query = query.where(WorkOrder.state.in_(open_states))
    elif wanted == {"closed"}:
        query = query.where(WorkOrder.state.not_in(open_states))
    # Stored times are UTC (SQLite keeps them without an offset), so the bounds are compared in UTC.
    if start is not None:
        query = query.where(WorkOrder.created_at >= _utc(start))
    if end is not None:
        query = query.where(WorkOrder.created_at <= _utc(end))
    return list(session.scalars(query))


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC)


def _in_service(service: Service):
    # category_code when the order has one, else the category path the router wrote (大类/子类/细类).
    level1, level2 = service.name.split("/", 1)
    return or_(WorkOrder.category_code.startswith(service.code, autoescape=True),
               WorkOrder.category_path.startswith(f"{level1}/{level2}/", autoescape=True))


def find_request(session: Session, *, order_no: str, publish: str = "open311") -> WorkOrder | None:
    """The published top-level order with this number; None when there is none or it is not published."""
    if publish == "none":
        return None
    query = select(WorkOrder).where(WorkOrder.order_no == canonical_order_no(order_no), WorkOrder.parent_id.is_(None))
    if publish != "all":
        query = query.where(WorkOrder.channel == OPEN311_CHANNEL)
    return session.scalar(query)


def order_service_code(order: WorkOrder, kb: KnowledgeBase, *, path_codes: dict[str, str] | None = None) -> str | None:
    """The service an order is in now: its category code, else its category path, else its KB entry's category."""
    if order.category_code:
        return order.category_code[:4]
    if order.category_path:
        codes = path_codes if path_codes is not None else _path_codes(kb)
        if order.category_path in codes:
            return codes[order.category_path]
    entry = kb.entries.get(order.kb_item_id or "")
    return entry.category[:4] if entry else None


def _path_codes(kb: KnowledgeBase) -> dict[str, str]:
    return {"/".join(node.path): node.code[:4] for node in kb.taxonomy.values()}


def is_open(order: WorkOrder) -> bool:
    return State(order.state) in OPEN_STATES


def _local(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(LOCAL_TIME).isoformat(timespec="seconds")   # stored moments are aware UTC


def public_text(text: str) -> str:
    """The stored masked complaint masked again with today's rules (older rows were masked by fewer of them)."""
    return mask_pii(text or "")


def status_notes(order: WorkOrder) -> str:
    """The state and the last step in plain words; staff comments stay internal (they may name people)."""
    note = STATE_LABELS[State(order.state)]
    last = order.events[-1] if order.events else None
    if last is not None and last.action != "create":
        label = ACTION_LABELS.get(last.action, last.action)   # StrEnum keys: a plain string finds them
        note += f"；最近一步：{label}（{_local(last.at)}）"
    return note


def requests_json(orders: list[WorkOrder], *, kb: KnowledgeBase) -> list[dict]:
    """Orders as GeoReport v2 service requests (what the public may see)."""
    catalogue, path_codes = service_catalogue(kb), _path_codes(kb)
    return [_request_json(order, kb=kb, catalogue=catalogue, path_codes=path_codes) for order in orders]


def _request_json(order: WorkOrder, *, kb: KnowledgeBase, catalogue: dict[str, Service],
                  path_codes: dict[str, str]) -> dict:
    service = catalogue.get(order_service_code(order, kb, path_codes=path_codes) or "")
    department = kb.departments.get(order.department_code or "")
    first = order.events[0] if order.events else None
    media_url = ((first.data or {}).get("open311") or {}).get("media_url") if first else None
    notice = None
    if is_open(order) and order.time_limit_days:
        notice = f"办理时限 {order.time_limit_days} 个工作日"
    return {
        "service_request_id": order.order_no, "status": "open" if is_open(order) else "closed",
        "status_notes": status_notes(order), "service_name": service.name if service else None,
        "service_code": service.code if service else None, "description": public_text(order.text_masked),
        "agency_responsible": department.name if department else order.department_code,
        "service_notice": notice, "requested_datetime": _local(order.created_at),
        "updated_datetime": _local(order.updated_at), "expected_datetime": _local(order.deadline_at),
        "address": order.address, "address_id": None, "zipcode": None,
        # A point is published only when the citizen gave it to Open311 (city setting "all" shows other channels).
        "lat": order.lat if order.channel == OPEN311_CHANNEL else None,
        "long": order.lng if order.channel == OPEN311_CHANNEL else None, "media_url": media_url,
    }
