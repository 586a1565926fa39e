"""Prices, spend and the budget stop (``--price-in`` / ``--price-out`` / ``--max-cost``).

Prices are in US dollars per million tokens. ``--price-in``/``--price-out`` win; otherwise a small built-in table
of well-known model names is used (list prices as published by the providers; check them, they change). The
spend is an *estimate*: the tokens the endpoint reports times the prices, plus, while deciding whether a new
request may start, the worst case of the requests in flight (their estimated prompt plus ``max_tokens``), so that a
run stops before the budget is crossed rather than after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reflectkit.llm.base import FatalModelError

#: (input, output) USD per million tokens, by model name (the longest matching prefix wins)
BUILTIN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "o1": (15.00, 60.00),
    "o3": (2.00, 8.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-opus": (15.00, 75.00),
}


class BudgetExhausted(FatalModelError):
    """The estimated spend reached ``--max-cost``: the run stops gracefully (exit 1) and can be resumed."""

    exit_code = 1


@dataclass(frozen=True)
class Prices:
    price_in: float  # USD per million prompt tokens
    price_out: float  # USD per million completion tokens
    source: str  # "--price-in/--price-out" or "built-in table (<name>)"

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1e6

    def describe(self) -> dict[str, Any]:
        return {"price_in_per_mtok": self.price_in, "price_out_per_mtok": self.price_out, "source": self.source}


def builtin_prices(model: str | None) -> tuple[str, tuple[float, float]] | None:
    """The table entry for ``model`` (``openai/gpt-4o-2024-08-06`` matches ``gpt-4o``), or None."""
    if not model:
        return None
    name = model.lower().rsplit("/", 1)[-1]
    for key in sorted(BUILTIN_PRICES, key=len, reverse=True):
        if name == key or name.startswith(key + "-"):
            return key, BUILTIN_PRICES[key]
    return None


def prices_for(spec: Any) -> Prices | None:
    """The prices of a ModelSpec: its own ``price_in``/``price_out`` (a missing one is 0), else the table."""
    if spec is None:
        return None
    pin, pout = getattr(spec, "price_in", None), getattr(spec, "price_out", None)
    if pin is not None or pout is not None:
        return Prices(float(pin or 0.0), float(pout or 0.0), "--price-in/--price-out")
    found = builtin_prices(getattr(spec, "model", None))
    if found is None:
        return None
    key, (i, o) = found
    return Prices(i, o, f"built-in table ({key})")


class Budget:
    """Spend tracking for one client: what was spent (reported tokens x prices, across invocations of the run when
    the engine sets ``spent_before``) and the worst case of the requests in flight."""

    def __init__(self, prices: Prices | None, max_cost: float | None, *, where: str = "--max-cost") -> None:
        if max_cost is not None and prices is None:
            raise FatalModelError(f"{where} needs prices: give --price-in and --price-out (USD per million tokens); "
                                  "this model is not in the built-in price table")
        self.prices = prices
        self.max_cost = max_cost
        self.spent_before = 0.0  # spend of earlier invocations of the same run (set by the engine)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._reserved = 0.0

    def spent(self) -> float:
        """Estimated spend so far (earlier invocations included), in USD; 0 without prices."""
        if self.prices is None:
            return self.spent_before
        return self.spent_before + self.prices.cost(self.prompt_tokens, self.completion_tokens)

    def reserve(self, prompt_estimate: int, max_tokens: int) -> float:
        """Admit one request or raise :class:`BudgetExhausted`; returns the amount reserved (release it after)."""
        if self.prices is None:
            return 0.0
        worst = self.prices.cost(prompt_estimate, max_tokens)
        if self.max_cost is not None and self.spent() + self._reserved + worst > self.max_cost:
            raise BudgetExhausted(
                f"the estimated spend ${self.spent():.4f} (plus ${self._reserved:.4f} in flight) has reached "
                f"--max-cost ${self.max_cost:g}")
        self._reserved += worst
        return worst

    def settle(self, reserved: float, prompt_tokens: int, completion_tokens: int) -> None:
        self._reserved = max(0.0, self._reserved - reserved)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
