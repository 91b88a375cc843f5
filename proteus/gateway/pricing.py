"""What a request may cost before it is forwarded (its reservation) and what it did cost after
(its charge), in USD at the artifact's prices. `proteus.gateway.budget` holds and settles them.

Reservation, an upper bound computed from the request alone:
  prompt tokens  <= the request body's bytes: a byte-level BPE token covers at least one byte
                    of text, every text the upstream tokenises is in the JSON body, and each
                    message's JSON punctuation (~30 bytes) outweighs the few tokens a chat
                    template adds per message;
  output tokens  <= `max_completion_tokens` or `max_tokens` (when the request states neither,
                    the gateway's `max_output_tokens`, which it then adds to the request it sends
                    upstream: `max_completion_tokens` for chat, `max_tokens` for completions),
                    times `n` (and `best_of`), times the prompts of a /completions batch;
  at the chosen model's price, or its fallback's when that is dearer. A model the artifact has
  no price for reserves (and is charged) the router's ĉ for it.
  Not bounded by it: image, audio or file inputs (their tokens do not follow their bytes), and an
  upstream that generates past the limit it was sent.

Charge, once the answer is in:
  valid usage    prompt and completion tokens (integers in [0, `max_usage_tokens`]) x the price
                 of the model that answered;
  no usage       (a stream without `stream_options.include_usage`): ĉ, at most the reservation;
  bad usage      (negative, fractional, NaN or infinite counts, strings, beyond the cap, not an
                 object): the reservation, and counted (`proteus_gateway_bad_usage_total`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from proteus.gateway.errors import GatewayError

MAX_CHOICES = 128  # n / best_of beyond this get 400 (OpenAI's own limit)
Price = dict[str, float]  # {"usd_per_input_token", "usd_per_output_token"}


class BadUsage(ValueError):
    """An upstream `usage` block that cannot be trusted (the message says why)."""


@dataclasses.dataclass(frozen=True)
class Reservation:
    """A request's worst-case cost and how it was bounded (for the 402 message)."""

    usd: float
    why: str


def _count(payload: dict[str, Any], field: str, lo: int, hi: float) -> int | None:
    value = payload.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise GatewayError(400, f"'{field}' must be an integer in [{lo}, {hi:g}], got "
                                f"{value!r:.40}", "invalid_request_error", f"invalid_{field}")
    return value


def output_bound(payload: dict[str, Any], chat: bool, cap: int) -> tuple[int, int, str | None]:
    """(output tokens per completion, completions, the field to add upstream or None).

    Raises:
      GatewayError: 400 when max_tokens, max_completion_tokens, n or best_of is not a positive
        integer (or n, best_of over `MAX_CHOICES`).
    """
    stated = _count(payload, "max_completion_tokens", 1, math.inf)
    stated = _count(payload, "max_tokens", 1, math.inf) if stated is None else stated
    n = _count(payload, "n", 1, MAX_CHOICES) or 1
    if not chat:
        n = max(n, _count(payload, "best_of", 1, MAX_CHOICES) or 1)
        prompt = payload.get("prompt")  # a list of texts (or of token lists) is a batch
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            n *= len(prompt)
    if stated is not None:
        return stated, n, None
    return cap, n, "max_completion_tokens" if chat else "max_tokens"


def reservation(prompt_bytes: int, output_tokens: int, completions: int,
                prices: Sequence[tuple[str, Price | None]], c_hat: float) -> Reservation:
    """The worst case over `prices` ([(model, its price or None)]: the chosen model and its
    fallback), see the module docstring."""
    best, why = 0.0, ""
    for model, price in prices:
        if price is None:
            usd, how = c_hat, f"the router's estimate for {model!r} (no price)"
        else:
            usd = (prompt_bytes * price["usd_per_input_token"]
                   + output_tokens * completions * price["usd_per_output_token"])
            how = (f"a {prompt_bytes}-byte prompt and {completions} x {output_tokens} output "
                   f"tokens (max_tokens) at {model!r}'s price")
        if usd >= best:
            best, why = usd, how
    return Reservation(best, why)


def checked_usage(usage: Any, cap: int) -> tuple[int, int] | None:
    """(prompt tokens, completion tokens) of an OpenAI `usage` block; None when there is none.

    Raises:
      BadUsage: not an object, or a count that is not an integer in [0, cap] (a float counts
        when it is a whole number, as some servers write them).
    """
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise BadUsage(f"usage is a {type(usage).__name__}, not an object")
    if "prompt_tokens" not in usage and "completion_tokens" not in usage:
        raise BadUsage("usage has neither prompt_tokens nor completion_tokens")
    counts = []
    for field in ("prompt_tokens", "completion_tokens"):
        value = usage.get(field, 0)
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole or not 0 <= value <= cap:
            raise BadUsage(f"usage.{field} = {value!r:.40} is not an integer in [0, {cap}]")
        counts.append(int(value))
    return counts[0], counts[1]


def token_cost(prompt_tokens: int, completion_tokens: int, price: Price) -> float:
    """USD of `usage` tokens at `price`."""
    return (prompt_tokens * price["usd_per_input_token"]
            + completion_tokens * price["usd_per_output_token"])
