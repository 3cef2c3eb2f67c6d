"""Photos and files attached to an order's step (a 办结 with photos of the fixed street lamp, a handling note with
a scanned letter). The bytes are stored outside the database, under `<state_dir>/attachments/`, named by a random
key; the database keeps the name, type, size and SHA-256.

What is accepted is decided by the bytes, not by the name or the browser's claimed type: JPEG, PNG, WebP images and
PDF documents, at most MAX_BYTES each and MAX_PER_STEP per step.
"""
from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.core.clock import utcnow
from orders.models import Attachment, WorkOrder

MAX_BYTES = 8 * 1024 * 1024       # a phone photo is 2–6 MB; a scanned page as PDF less
MAX_PER_STEP = 4
MAX_REQUEST_BYTES = MAX_PER_STEP * MAX_BYTES + 1024 * 1024   # the form's other fields and multipart framing
# (leading bytes, content type, extension); WebP is RIFF....WEBP.
SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg", ".jpg"), (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
              (b"%PDF-", "application/pdf", ".pdf"))


class AttachmentRefused(ValueError):
    """A file that is empty, too large, of a type we do not keep, or one too many: the reason in words."""


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


def sniff(data: bytes) -> tuple[str, str] | None:
    """(content type, extension) from the file's first bytes, or None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return next(((kind, ext) for magic, kind, ext in SIGNATURES if data.startswith(magic)), None)


def clean_filename(name: str) -> str:
    """The name as shown to staff: no path, no control characters, at most 100 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in unicodedata.normalize("NFC", base) if unicodedata.category(ch)[0] != "C").strip()
    return (base or "附件")[:100]


def check_uploads(uploads: list[Upload]) -> list[tuple[Upload, str, str]]:
    """Each upload with its sniffed (type, extension), or AttachmentRefused naming the file and the reason. Files
    with no bytes (an empty file input) are skipped."""
    present = [u for u in uploads if u.data]
    if len(present) > MAX_PER_STEP:
        raise AttachmentRefused(f"每次最多上传 {MAX_PER_STEP} 个附件")
    checked = []
    for upload in present:
        name = clean_filename(upload.filename)
        if len(upload.data) > MAX_BYTES:
            raise AttachmentRefused(f"附件“{name}”超过 {MAX_BYTES // (1024 * 1024)} MB")
        kind = sniff(upload.data)
        if kind is None:
            raise AttachmentRefused(f"附件“{name}”不是 JPEG/PNG/WebP 图片或 PDF 文件")
        checked.append((upload, *kind))
    return checked


def store_attachments(session: Session, *, order: WorkOrder, uploads: list[Upload], uploaded_by: str, root: Path,
                      event_seq: int | None = None) -> list[Attachment]:
    """Write the checked files under `root` and record them with the order (in the caller's transaction: if the
    step fails, the rows go; a file left behind is unreferenced and harmless)."""
    rows = []
    root.mkdir(parents=True, exist_ok=True)
    for upload, content_type, extension in check_uploads(uploads):
        key = f"{order.id}-{secrets.token_hex(12)}{extension}"
        (root / key).write_bytes(upload.data)
        row = Attachment(order_id=order.id, event_seq=event_seq, filename=clean_filename(upload.filename),
                         content_type=content_type, size=len(upload.data),
                         sha256=hashlib.sha256(upload.data).hexdigest(), storage_key=key, uploaded_by=uploaded_by,
                         uploaded_at=utcnow())
        session.add(row)
        rows.append(row)
    session.flush()
    return rows


def attachments_of(session: Session, *, order: WorkOrder) -> list[Attachment]:
    return list(session.scalars(select(Attachment).where(Attachment.order_id == order.id).order_by(Attachment.id)))


def attachment_path(root: Path, attachment: Attachment) -> Path:
    """Where the bytes are; the key is ours (random hex and a known extension), never a name a user gave."""
    return root / attachment.storage_key
