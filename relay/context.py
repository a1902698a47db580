"""What the endpoints and workers of one running app share: the config, the store, the clock, a wake-up call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from relay.config import Config
from relay.store import Store


@dataclass
class Context:
    config: Config
    store: Store
    clock: Callable[[], float] = time.time
    work: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        """Tell this process's workers that new deliveries are due (other processes find them by polling)."""
        self.work.set()
