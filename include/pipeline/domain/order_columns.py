"""A batch of order values parsed at once, the input of the process and analyze steps: the valid
orders as columns (numpy arrays, where the steps compute on them), the others rejected with the
reason and detail ``orders.parse`` gives.

The bulk path decides only what it can decide exactly, in bulk: a value msgspec decodes as an
``orders.Wire`` (in C) with a known product, an amount on the cents path (``money.cents_many``)
and a timestamp of a common shape (``timestamps.epoch_us_many``). Any other value goes through
``orders.parse`` whole, the per-record path, so every reason, detail and accepted value is the
parser's (``decode_each`` sends every value that way).
"""

from __future__ import annotations

from decimal import Decimal
from itertools import repeat
from operator import attrgetter, itemgetter

import msgspec
import numpy as np

from include.pipeline.domain import codec, money, timestamps
from include.pipeline.domain.catalogue import PRODUCTS, WINDOW_SECONDS
from include.pipeline.domain.orders import (
    MAX_ORDER_BYTES,
    WINDOW_US,
    Order,
    Rejected,
    Wire,
    parse,
    wire_decoder,
)

PRODUCT_IDS = list(PRODUCTS)
_PRODUCT_INDEX = {product_id: i for i, product_id in enumerate(PRODUCT_IDS)}


class OrderColumns(msgspec.Struct):
    """Valid orders of a batch, a row each, in the batch's order."""

    index: np.ndarray  # int64: the order's position in the batch
    product: np.ndarray  # int64: its product's position in PRODUCT_IDS
    cents: np.ndarray  # int64: the amount in cents (0 where ``exact`` holds it)
    exponent: np.ndarray  # int64: the exponent of the amount as a Decimal (what a sum keeps)
    event_us: np.ndarray  # int64: the timestamp, epoch microseconds (UTC)
    order_ids: list[bytes]  # the order id, UTF-8 (its key in processed-orders)
    wires: list[Wire]  # the order as decoded (process's record, once enriched); [] once unneeded
    exact: dict[int, Decimal]  # row -> amount, for an amount off the cents path (rare)

    @classmethod
    def of(cls, orders: list[Order], index: list[int] | None = None) -> OrderColumns:
        """Columns of orders the per-record parser made (at ``index`` of their batch)."""
        cents, exponent, exact = [], [], {}
        for row, order in enumerate(orders):
            on_path = money.cents_of(order.amount)
            if on_path is None:
                exact[row] = order.amount
            cents.append(on_path[0] if on_path else 0)
            exponent.append(on_path[1] if on_path else 0)
        wires = [
            Wire(order_id=o.order_id, user_id=o.user_id, product_id=o.product_id,
                 amount=msgspec.Raw(codec.encode(o.amount)), timestamp=o.timestamp)
            for o in orders
        ]
        return cls(
            _ints(range(len(orders)) if index is None else index),
            _ints(_PRODUCT_INDEX[o.product_id] for o in orders), _ints(cents), _ints(exponent),
            _ints(o.event_us for o in orders), [_utf8(o.order_id) for o in orders], wires, exact,
        )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def window_start(self) -> np.ndarray:
        """The start (epoch seconds) of each order's window."""
        return self.event_us // WINDOW_US * WINDOW_SECONDS

    @property
    def window_codes(self) -> np.ndarray:
        """Each order's (window_start, product_id) as one integer (``window_code``)."""
        return self.window_start * len(PRODUCT_IDS) + self.product

    def take(self, rows: np.ndarray) -> OrderColumns:
        """These rows, in this order, as columns of their own."""
        exact = {}
        if self.exact:
            exact = {new: self.exact[old] for new, old in enumerate(rows.tolist()) if old in self.exact}
        return OrderColumns(
            self.index[rows], self.product[rows], self.cents[rows], self.exponent[rows], self.event_us[rows],
            _picked(self.order_ids, rows), self.wires and _picked(self.wires, rows), exact,
        )

    def totals(self, groups: np.ndarray, count: int) -> list[Decimal]:
        """The exact sum of the amounts of each of ``count`` groups (``groups``: each row's, every
        group has one), as adding its Decimals one by one gives it (their smallest exponent)."""
        on_path = self.cents > 0  # the others are in ``exact``
        cents = np.zeros(count, np.int64)
        np.add.at(cents, groups, self.cents)
        exponent = np.full(count, _NONE, np.int64)
        np.minimum.at(exponent, groups[on_path], self.exponent[on_path])
        sums: list[Decimal | None] = [
            None if e == _NONE else money.from_cents(c, e) for c, e in zip(cents.tolist(), exponent.tolist())
        ]
        for row, amount in self.exact.items():
            group = int(groups[row])
            sums[group] = amount if sums[group] is None else money.total([amount], sums[group])
        return sums  # type: ignore[return-value]


_NONE = 1 << 30  # no amount on the cents path in a group


def window_code(key: tuple[int, str]) -> int:
    """A (window_start, product_id) as one integer, as ``OrderColumns.window_codes`` has it."""
    return key[0] * len(PRODUCT_IDS) + _PRODUCT_INDEX[key[1]]


def window_key(code: int) -> tuple[int, str]:
    """The (window_start, product_id) of a ``window_code``."""
    start, product = divmod(code, len(PRODUCT_IDS))
    return start, PRODUCT_IDS[product]


def decode(values: list[bytes | None]) -> tuple[OrderColumns, list[tuple[int, Rejected]]]:
    """The valid orders of a batch of record values, and (position, why) for each of the others."""
    sized = values
    if None in values or max(map(len, values), default=0) > MAX_ORDER_BYTES:
        sized = [v if v is not None and len(v) <= MAX_ORDER_BYTES else b"" for v in values]  # to parse
    columns = _decoded(sized)
    rest = np.ones(len(values), bool)
    rest[columns.index] = False
    if not rest.any():
        return columns, []
    slow, rejected = decode_each(values, np.flatnonzero(rest).tolist())
    return _merged(columns, slow), rejected


def _decoded(values: list[bytes]) -> OrderColumns:
    """The values that msgspec decodes as an ``orders.Wire`` (in C) with a product, amount and
    timestamp the bulk path reads."""
    wires = _wires(values)
    found = np.arange(len(values)) if None not in wires else np.flatnonzero([w is not None for w in wires])
    if len(found) < len(wires):
        wires = [w for w in wires if w is not None]
    product = np.fromiter(
        map(_PRODUCT_INDEX.get, map(attrgetter("product_id"), wires), repeat(-1)), np.int64, len(wires),
    )
    cents, exponent, amount_read = money.cents_many(list(map(attrgetter("amount"), wires)))
    event_us, time_read = timestamps.epoch_us_many(list(map(attrgetter("timestamp"), wires)))
    order_ids = [wire.order_id.encode("utf-8", "surrogatepass") for wire in wires]  # _utf8, a call less
    columns = OrderColumns(found, product, cents, exponent, event_us, order_ids, wires, {})
    read = (product >= 0) & amount_read & time_read
    return columns if read.all() else columns.take(np.flatnonzero(read))


def decode_each(
    values: list[bytes | None], positions: list[int] | None = None,
) -> tuple[OrderColumns, list[tuple[int, Rejected]]]:
    """decode() through ``orders.parse``, a value at a time (of ``positions`` only, if given)."""
    valid: list[Order] = []
    index: list[int] = []
    rejected: list[tuple[int, Rejected]] = []
    for position in range(len(values)) if positions is None else positions:
        result = parse(values[position])
        if type(result) is Order:
            valid.append(result)
            index.append(position)
        else:
            rejected.append((position, result))
    return OrderColumns.of(valid, index), rejected


def _wires(values: list[bytes]) -> list[Wire | None]:
    """Each value decoded as a Wire in C; None where it is not one (for the per-record path)."""
    wires: list[Wire | None] = []
    remaining = iter(values)
    while True:
        try:
            wires.extend(map(wire_decoder.decode, remaining))  # keeps those before a failure
            return wires
        except codec.DecodeError:
            wires.append(None)


def _merged(a: OrderColumns, b: OrderColumns) -> OrderColumns:
    """Two sets of rows of one batch as one, in the batch's order."""
    if not len(a) or not len(b):
        return b if len(b) else a
    order = np.argsort(np.concatenate([a.index, b.index]), kind="stable")
    exact = {**a.exact, **{len(a) + row: amount for row, amount in b.exact.items()}}
    arrays = (np.concatenate([getattr(a, name), getattr(b, name)]) for name in _ARRAYS)
    both = OrderColumns(*arrays, a.order_ids + b.order_ids, a.wires + b.wires, exact)
    return both.take(order)


_ARRAYS = ("index", "product", "cents", "exponent", "event_us")


def _utf8(order_id: str) -> bytes:
    return order_id.encode("utf-8", "surrogatepass")


def _ints(values) -> np.ndarray:
    return np.fromiter(values, np.int64)


def _picked(items: list, rows: np.ndarray) -> list:
    """items[row] for each of ``rows``."""
    return list(itemgetter(*rows.tolist())(items)) if len(rows) > 1 else [items[row] for row in rows.tolist()]
