"""Why a record went to orders-dlq: the codes of the dead letters' ``reason`` header, of the
stage results' ``reasons`` counts and of the Order metrics page, in one list."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a record was dead-lettered; the value is the code the header, the counts and the page show."""

    # process: the value breaks the order contract (orders.parse)
    TOMBSTONE = "tombstone"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    BAD_UTF8 = "bad_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    INVALID_ORDER_ID = "invalid_order_id"
    INVALID_USER_ID = "invalid_user_id"
    UNKNOWN_PRODUCT = "unknown_product"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_TIMESTAMP = "invalid_timestamp"
    # analyze: a valid order that is not counted (analyzer.Analyzer)
    LATE = "late"
    DUPLICATE = "duplicate"
