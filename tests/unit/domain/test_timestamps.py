"""timestamps: the bulk reading of the common ISO-8601 shapes gives the microsecond parse()
gives, and leaves every other text to parse()."""

from datetime import datetime, timezone

from include.pipeline.domain import timestamps

US = 1_000_000
T = 1767607230  # 2026-01-05T10:00:30Z


def test_the_common_shapes_are_read_in_bulk_to_the_microsecond():
    texts = [
        "2026-01-05T10:00:30Z", "2026-01-05T10:00:30", "2026-01-05T12:00:30+02:00",
        "2026-01-05T04:30:30-05:30", "2026-01-05T10:00:30.5Z", "2026-01-05T10:00:30.123+00:00",
        "2026-01-05T10:00:30.000001", "2024-02-29T00:00:00Z", "1969-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
    ]
    event_us, read = timestamps.epoch_us_many(texts)
    assert read.tolist() == [True] * len(texts)
    assert event_us.tolist() == [
        T * US, T * US, T * US, T * US, T * US + 500_000, T * US + 123_000, T * US + 1,
        1709164800 * US, -1, -62135596800 * US, 253402300800 * US - 1,
    ]


def test_anything_else_is_left_to_parse_which_decides():
    texts = [
        "2026-01-05 10:00:30Z",  # a space: parse accepts it
        "2026-01-05t10:00:30",  # lower-case t: parse accepts it
        "2026-01-05T10:00:30.1234567Z",  # 7 fraction digits: parse cuts to 6
        "2026-01-05T10:00:30+0200",  # offset without a colon: parse accepts it
        "2026-01-05T10:00:30Z\x00",  # a NUL at the end: fromisoformat stops at it
        "2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-05T24:00:00Z", "2026-01-05T10:60:00Z",
        # before year 1, after 9999 (in UTC)
        "0000-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
        "2026-01-05T10:00:30+24:00", "٢026-01-05T10:00:30Z", "yesterday", "",
    ]
    event_us, read = timestamps.epoch_us_many(texts)
    assert read.tolist() == [False] * len(texts)
    parsed = [timestamps.parse(text) for text in texts]
    at_30 = datetime(2026, 1, 5, 10, 0, 30, tzinfo=timezone.utc)
    assert parsed[:5] == [at_30, at_30, at_30.replace(microsecond=123456), at_30.replace(hour=8), at_30]
    assert parsed[5:] == [None] * (len(texts) - 5)
