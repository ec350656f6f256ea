"""The product catalogue and the window size: what an order may name, and how metrics group it."""

PRODUCTS: dict[str, str] = {
    "prod-1": "Laptop",
    "prod-2": "Phone",
    "prod-3": "Tablet",
    "prod-4": "Monitor",
    "prod-5": "Keyboard",
}

WINDOW_SECONDS = 60  # the tumbling windows' length
