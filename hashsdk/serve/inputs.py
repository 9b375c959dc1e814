"""What a request to ``hashsdk serve`` may carry, checked: codes, ids, images, k and radius.

Two body types, the same fields:

    multipart/form-data   image (a file; repeat the field for more), k, radius, ids
                          (comma-separated, or the field repeated)
    application/json      {"codes": [...], "ids": [...], "k": 10, "radius": null,
                           "code_encoding": "hex" | "base64"}

Codes are packed as ``hashsdk.codes`` packs them (MSB first, pad bits zero), written in hex
(the default: 2 x ceil(bits / 8) digits) or base64. Every failure raises ``BadRequest`` with a
message that names what was expected; the app answers it with 400 (or its ``status``).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashsdk.codes import check_packed, code_size
from hashsdk.encoder.metadata import ModelMetadata
from hashsdk.encoder.preprocess import UnreadableImage, load_uint8
from hashsdk.errors import HashsdkError
from hashsdk.index.kinds import MAX_ID

CODE_ENCODINGS = ("hex", "base64")
FORMATS = ("JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF")
MAGIC_BYTES = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"GIF87a", ".gif"),
               (b"GIF89a", ".gif"), (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))


class BadRequest(HashsdkError):
    """A request the server refuses; ``status`` is its HTTP status (400 unless said)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may ask (docs/serve.md lists them with these defaults).

    max_upload_bytes: the whole body (413 above it); max_headers, max_header_bytes: the
    headers' count and their bytes in all (431); max_images, max_codes: queries or items a
    request carries; max_k: k of a search; max_results: results one search returns in all
    (queries x k above it is a 400; a range search stops there, marked truncated); max_pixels:
    an image's pixels by its header; request_timeout_s: a request's time (503).
    """
    max_upload_bytes: int = 16 << 20
    max_headers: int = 100
    max_header_bytes: int = 16 << 10
    max_images: int = 64
    max_codes: int = 1024
    max_k: int = 1000
    max_results: int = 10_000
    max_pixels: int = 40_000_000
    request_timeout_s: float = 30.0


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters: an error names what it got without echoing a
    large input back."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def quote(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened."""
    return shorten(repr(value), limit)


@dataclass
class Upload:
    """An uploaded file: its name as sent and its bytes."""
    name: str
    data: bytes


@dataclass
class Body:
    """A parsed request body."""
    images: list[Upload] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    ids: list[int] | None = None
    k: int | None = None
    radius: int | None = None
    code_encoding: str = "hex"


def from_json(data: Any) -> Body:
    if not isinstance(data, dict):
        raise BadRequest("expected a JSON object with codes, ids, k, radius")
    unknown = set(data) - {"codes", "ids", "k", "radius", "code_encoding"}
    if unknown:
        raise BadRequest(f"unknown fields {quote(sorted(unknown))}; expected codes, ids, k, "
                         f"radius, code_encoding")
    codes = data.get("codes") or []
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise BadRequest("codes: expected a list of strings (hex or base64)")
    encoding = data.get("code_encoding", "hex")
    if encoding not in CODE_ENCODINGS:
        raise BadRequest(f"code_encoding: expected one of {CODE_ENCODINGS}, got "
                         f"{quote(encoding)}")
    ids = data.get("ids")
    if ids is not None and (not isinstance(ids, list)
                            or not all(type(i) is int for i in ids)):
        raise BadRequest("ids: expected a list of integers")
    return Body(codes=codes, ids=ids, k=_int_or_none(data.get("k"), "k"),
                radius=_int_or_none(data.get("radius"), "radius"), code_encoding=encoding)


def from_form(images: list[Upload], fields: dict[str, list[str]]) -> Body:
    unknown = set(fields) - {"k", "radius", "ids"}
    if unknown:
        raise BadRequest(f"unknown form fields {quote(sorted(unknown))}; expected image, k, "
                         f"radius, ids")
    ids = None
    if "ids" in fields:
        parts = [p.strip() for value in fields["ids"] for p in value.split(",") if p.strip()]
        ids = [_int(p, "ids") for p in parts]
    one = {name: values[-1] for name, values in fields.items()}
    return Body(images=images, ids=ids, k=_int_or_none(one.get("k"), "k"),
                radius=_int_or_none(one.get("radius"), "radius"))


def _int(value: Any, name: str) -> int:
    try:
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name}: expected an integer, got {quote(value)}") from None


def _int_or_none(value: Any, name: str) -> int | None:
    return None if value is None or value == "" else _int(value, name)


def check_k(k: int | None, limits: Limits) -> int:
    k = 10 if k is None else k
    if not 1 <= k <= limits.max_k:
        raise BadRequest(f"k: expected 1 to {limits.max_k}, got {quote(k)}")
    return k


def check_radius(radius: int, bits: int) -> int:
    if not 0 <= radius <= bits:
        raise BadRequest(f"radius: expected 0 to {bits} (the code length), got {quote(radius)}")
    return radius


def check_ids(ids: list[int] | None, count: int | None, limits: Limits) -> np.ndarray | None:
    """Ids as int64; ``count``: how many the request must give (None: any, up to the limit)."""
    if ids is None:
        return None
    if count is not None and len(ids) != count:
        raise BadRequest(f"ids: expected one per item ({count}), got {len(ids)}")
    if len(ids) > limits.max_codes:
        raise BadRequest(f"ids: at most {limits.max_codes} a request, got {len(ids)}")
    if any(not 0 <= i <= MAX_ID for i in ids):
        raise BadRequest(f"ids: expected integers from 0 to {MAX_ID} (2**63 - 2)")
    return np.asarray(ids, np.int64)


def parse_codes(codes: list[str], encoding: str, bits: int, limits: Limits) -> np.ndarray:
    """Packed codes uint8 (n, ceil(bits / 8)) from their hex or base64 text."""
    if len(codes) > limits.max_codes:
        raise BadRequest(f"codes: at most {limits.max_codes} a request, got {len(codes)}")
    width = code_size(bits)
    rows = []
    for i, text in enumerate(codes):
        try:
            raw = bytes.fromhex(text) if encoding == "hex" else \
                base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise BadRequest(f"codes[{i}]: not {encoding}") from None
        if len(raw) != width:
            expect = f"{2 * width} hex digits" if encoding == "hex" else f"{width} bytes"
            raise BadRequest(f"codes[{i}]: a {bits}-bit code is {expect}, got "
                             f"{len(text) if encoding == 'hex' else len(raw)}")
        rows.append(np.frombuffer(raw, np.uint8))
    packed = np.stack(rows) if rows else np.empty((0, width), np.uint8)
    try:
        return check_packed(packed, bits, "codes")
    except HashsdkError as exc:
        raise BadRequest(str(exc)) from None


def code_text(code: np.ndarray) -> str:
    """A packed code as hex."""
    return bytes(code).hex()


def sniff_format(data: bytes) -> str | None:
    """The file extension of an image format hashsdk serve takes, from its first bytes."""
    for magic, ext in MAGIC_BYTES:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return None


def decode_image(upload: Upload, meta: ModelMetadata, limits: Limits) -> tuple[np.ndarray, str]:
    """An upload as the model's uint8 (H, W, C) input and the extension of its format."""
    name = shorten(os.path.basename(upload.name or "upload"))
    ext = sniff_format(upload.data)
    if ext is None:
        raise BadRequest(f"{name}: not an image (expected one of {', '.join(FORMATS)})")
    try:
        return load_uint8(upload.data, meta, limits.max_pixels), ext
    except UnreadableImage as exc:
        raise BadRequest(f"{name}: unreadable image ({exc.reason})") from None
