"""Masking of personal data (phones, ID numbers, names after caller fields) for logs, exports and output."""
from __future__ import annotations

import logging
import re

from nlp.entities import find_id_numbers, find_phones

_NAMED_CALLER = re.compile(r"((?:来电人|联系人|姓名|诉求人|投诉人|户主)(?:姓名)?[:：\s]*)([\u4e00-\u9fa5]{1,3}?)([\u4e00-\u9fa5]{1,2})(?=[，,。；;\s\d(（]|先生|女士|$)")


def mask_phone(number: str) -> str:
    digits = re.sub(r"\D", "", number)
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 11 else digits[:2] + "****" + digits[-2:]


def mask_id_number(number: str) -> str:
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_pii(text: str) -> str:
    """Replace phone numbers, resident ID numbers and names given in caller fields."""
    spans = [(s.start, s.end, mask_id_number(s.value)) for s in find_id_numbers(text, strict=False)]
    taken = [(a, b) for a, b, _ in spans]
    for s in find_phones(text):
        if not any(a <= s.start < b for a, b in taken):
            spans.append((s.start, s.end, mask_phone(s.value)))
    for start, end, replacement in sorted(spans, reverse=True):
        text = text[:start] + replacement + text[end:]
    return _NAMED_CALLER.sub(lambda m: m.group(1) + m.group(2)[:1] + "*" * (len(m.group(2)) - 1 + len(m.group(3))), text)


class PIIMaskingFilter(logging.Filter):
    """Logging filter: no phone or ID number reaches a log line, whoever logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_pii(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_log_masking(logger: logging.Logger | None = None) -> None:
    """Mask `logger`'s records and its handlers'. Without a logger, also every record of the process as it is
    made: a logger's filters never see its children's records, and handlers added later (uvicorn's, a service's
    basicConfig) would have none."""
    target = logger or logging.getLogger()
    if not any(isinstance(f, PIIMaskingFilter) for f in target.filters):
        target.addFilter(PIIMaskingFilter())
    for handler in target.handlers:
        if not any(isinstance(f, PIIMaskingFilter) for f in handler.filters):
            handler.addFilter(PIIMaskingFilter())
    make_record = logging.getLogRecordFactory()
    if logger is None and not getattr(make_record, "masks_pii", False):
        def masked_record(*args, **kwargs) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            try:
                _FILTER.filter(record)
            except Exception:  # a bad format string: logging reports it when the record is emitted
                pass
            return record

        masked_record.masks_pii = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(masked_record)


_FILTER = PIIMaskingFilter()
