"""Synthetic, seeded click streams that behave like a store's: for tests, benchmarks, the demo.

- Items belong to categories; popularity is Zipf-like overall and within each category.
- Items have "neighbourhoods": in a session, the next item is usually close to the previous
  one in its category (accessories after a phone), so item-to-item structure exists to learn.
- Users have latent tastes over categories (a sparse Dirichlet draw); each session picks a
  category from the user's taste and browses it.
- The funnel: each view may become a click, a click an add-to-cart, a cart a purchase.
- Drift: every simulated day, tastes move a little towards a fresh draw, and a handful of
  items become the day's hits (their popularity is multiplied for that day).

Shapes real data has, off by default (``bench/quality.py`` names a scenario after each):
- ``first_visit_share``: that share of users arrives on a random day, not on the first;
- ``dormant_share``: that share of users goes quiet for ``dormant_days`` and comes back;
- ``long_session_share``: that share of sessions are long bursts (``long_session_views``);
- ``repeat_views=False``: a user never views an item twice (films, books, articles).

``stream(GeneratorSettings(...))`` yields ``ClickEvent``s in time order; the same seed gives
the same stream.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from msgspec.structs import replace

from tailor_pipeline.events import ClickEvent

DAY_MS = 86_400_000


@dataclass(frozen=True)
class GeneratorSettings:
    seed: int = 1
    users: int = 2000
    items: int = 3000
    categories: int = 30
    days: int = 4
    sessions_per_user_per_day: float = 1.5
    mean_session_views: float = 6.0
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    zipf_exponent: float = 1.1
    taste_concentration: float = 0.3
    daily_drift: float = 0.15
    hits_per_day: int = 10
    hit_boost: float = 30.0
    p_click: float = 0.35
    p_cart: float = 0.3
    p_purchase: float = 0.4
    # How far (in items of the same category) the next item usually lies from the last.
    neighbourhood: int = 4
    first_visit_share: float = 0.0
    dormant_share: float = 0.0
    dormant_days: int = 21
    long_session_share: float = 0.0
    long_session_views: float = 60.0
    repeat_views: bool = True


def _dirichlet(rng: random.Random, n: int, concentration: float) -> list[float]:
    draws = [rng.gammavariate(concentration, 1.0) for _ in range(n)]
    total = sum(draws) or 1.0
    return [d / total for d in draws]


class _Catalogue:
    def __init__(self, s: GeneratorSettings, rng: random.Random) -> None:
        self.by_category: list[list[int]] = [[] for _ in range(s.categories)]
        for item in range(s.items):
            self.by_category[rng.randrange(s.categories)].append(item)
        self.base = [1.0 / (rank + 1) ** s.zipf_exponent for rank in range(s.items)]
        rng.shuffle(self.base)
        self.category_of = {i: c for c, items in enumerate(self.by_category) for i in items}
        self.boost: dict[int, float] = {}
        self._cumulative: list[list[float]] = []
        self.refresh()

    def refresh(self) -> None:
        self._cumulative = [
            list(itertools.accumulate(self.base[i] * self.boost.get(i, 1.0) for i in items))
            for items in self.by_category
        ]

    def pick(self, rng: random.Random, category: int) -> int:
        items, cumulative = self.by_category[category], self._cumulative[category]
        return items[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


def stream(s: GeneratorSettings) -> Iterator[ClickEvent]:
    rng = random.Random(s.seed)
    catalogue = _Catalogue(s, rng)
    categories = [c for c in range(s.categories) if catalogue.by_category[c]]
    tastes = [_dirichlet(rng, len(categories), s.taste_concentration) for _ in range(s.users)]
    active = _activity(s, rng)
    viewed: list[set[int]] | None = None if s.repeat_views else [set() for _ in range(s.users)]
    session_counter = itertools.count()
    for day in range(s.days):
        catalogue.boost = {rng.randrange(s.items): s.hit_boost for _ in range(s.hits_per_day)}
        catalogue.refresh()
        if day:
            for user in range(s.users):
                fresh = _dirichlet(rng, len(categories), s.taste_concentration)
                tastes[user] = [
                    (1 - s.daily_drift) * a + s.daily_drift * b
                    for a, b in zip(tastes[user], fresh, strict=True)
                ]
        day_events: list[ClickEvent] = []
        day_start = s.start_ms + day * DAY_MS
        for user in range(s.users):
            if active is not None:
                first, leaves, back = active[user]
                if day < first or leaves <= day < back:
                    continue
            sessions = int(s.sessions_per_user_per_day) + (
                rng.random() < s.sessions_per_user_per_day % 1
            )
            for _ in range(sessions):
                day_events.extend(
                    _session(
                        s,
                        rng,
                        catalogue,
                        categories,
                        tastes[user],
                        user,
                        day_start,
                        next(session_counter),
                        viewed[user] if viewed is not None else None,
                    )
                )
        day_events.sort(key=lambda e: (e.ts, e.user_id))
        yield from day_events


def _activity(s: GeneratorSettings, rng: random.Random) -> list[tuple[int, int, int]] | None:
    """Per user, ``(first, leaves, back)``: they come on day ``d`` if ``d >= first`` and
    not ``leaves <= d < back`` (None: every user comes every day)."""
    if not (s.first_visit_share or s.dormant_share):
        return None
    days: list[tuple[int, int, int]] = []
    for _ in range(s.users):
        draw = rng.random()
        if draw < s.first_visit_share:
            days.append((rng.randrange(s.days), 0, 0))
        elif draw < s.first_visit_share + s.dormant_share and s.days > s.dormant_days + 1:
            leaves = rng.randrange(1, s.days - s.dormant_days)
            days.append((0, leaves, leaves + s.dormant_days))
        else:
            days.append((0, 0, 0))
    return days


def _session(
    s: GeneratorSettings,
    rng: random.Random,
    catalogue: _Catalogue,
    categories: list[int],
    taste: list[float],
    user: int,
    day_start: int,
    session: int,
    viewed: set[int] | None,
) -> Iterator[ClickEvent]:
    category = rng.choices(categories, weights=taste)[0]
    items = catalogue.by_category[category]
    ts = day_start + rng.randrange(DAY_MS - 3_600_000)
    mean_views = s.mean_session_views
    if s.long_session_share and rng.random() < s.long_session_share:
        mean_views = s.long_session_views
    views = max(1, round(rng.expovariate(1 / mean_views)))
    item = catalogue.pick(rng, category)
    for _ in range(views):
        if viewed is not None:
            # Seen before: try a few other items of the category; a user who has seen
            # them all ends the session.
            for _ in range(8):
                if item not in viewed:
                    break
                item = catalogue.pick(rng, category)
            else:
                return
            viewed.add(item)
        ts += rng.randrange(5_000, 90_000)
        view = ClickEvent(
            user_id=f"user-{user}",
            item_id=f"item-{item}",
            type="view",
            ts=ts,
            session_id=f"s{session}",
            category=f"cat-{category}",
        )
        yield view
        if rng.random() < s.p_click:
            ts += rng.randrange(1_000, 20_000)
            yield replace(view, type="click", ts=ts)
            if rng.random() < s.p_cart:
                ts += rng.randrange(1_000, 30_000)
                yield replace(view, type="add_to_cart", ts=ts)
                if rng.random() < s.p_purchase:
                    ts += rng.randrange(5_000, 60_000)
                    yield replace(view, type="purchase", ts=ts)
        # Next: a neighbour of this item in the category most of the time, else anything.
        if rng.random() < 0.7 and len(items) > 1:
            position = items.index(item)
            offset = rng.randint(-s.neighbourhood, s.neighbourhood) or 1
            item = items[(position + offset) % len(items)]
        else:
            item = catalogue.pick(rng, category)
