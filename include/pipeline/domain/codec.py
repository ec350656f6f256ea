"""JSON in and out. Floats decode to Decimal so money stays exact; data is never evaluated."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

import msgspec


def _exact(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent past what a Decimal holds: bad input, not a crash
        raise ValueError(f"the number {text[:40]} is beyond what a decimal can hold") from None


_decoder = msgspec.json.Decoder(float_hook=_exact)
_encoder = msgspec.json.Encoder(decimal_format="number")

DecodeError = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def decode(raw: bytes) -> Any:
    """Parse JSON bytes; raises one of ``DecodeError`` on anything that is not strict JSON."""
    return _decoder.decode(raw)


def encode(obj: Any) -> bytes:
    """JSON bytes; a Decimal is written as an exact JSON number."""
    return _encoder.encode(obj)


def encode_lines(items: Iterable[Any]) -> bytes:
    """JSON lines, each ending in a newline, in one call."""
    return _encoder.encode_lines(items)
