"""relay: verify provider webhooks, record them durably, route them to Notte Functions."""

__version__ = "0.1.0"
