"""Replay: route a stored event again with the current rules, planning new deliveries next to the old ones.

This is how an operator recovers after fixing a rule (a template that did not render, a route that was missing)
or a function: `relay replay EVENT_ID`. The signature is not checked again: it was checked when the event arrived,
and the stored headers have their credentials redacted.
"""

from __future__ import annotations

from relay import providers, rules
from relay.config import Config
from relay.errors import Rejected, ReplayError
from relay.ingress import new_delivery
from relay.providers import Incoming
from relay.store import Event, NewDelivery, Store


async def replay(config: Config, store: Store, event_id: str, now: float) -> tuple[Event, list[NewDelivery]]:
    """Plan the deliveries the current rules give `event_id` (relay's id or the provider's) and store them."""
    event = await store.event(event_id)
    source = config.sources.get(event.source)
    if source is None:
        raise ReplayError(f"{event.id} came from source {event.source!r}, which {config.file} no longer defines")
    provider = providers.get(source.kind)
    assert provider is not None  # config.load() only builds sources of known kinds
    incoming = Incoming(body=event.body, headers=event.headers, query=event.query)
    try:
        described = provider.describe(source, incoming)
    except Rejected as exc:
        raise ReplayError(f"{event.id} no longer fits source {event.source!r} ({source.kind}): {exc}") from None
    roots = rules.roots(event.source, incoming, described, event.received_at)
    deliveries = [new_delivery(planned) for planned in rules.plan(config, event.source, roots)]
    await store.add_deliveries(event.id, deliveries, now)
    return event, deliveries
