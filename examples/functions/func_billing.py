"""Record a paid Stripe invoice (routed from `invoice.paid` by the example routes.yaml)."""

import logging

log = logging.getLogger(__name__)


def run(invoice_id: str, amount: int, email: str | None = None, note: str = "") -> dict[str, object]:
    if amount <= 0:
        raise ValueError(f"amount must be positive, got {amount}")
    print(f"billing: invoice {invoice_id} paid, {amount / 100:.2f} (customer {email or 'unknown'})")
    if note:
        log.info("note: %s", note)
    return {"invoice_id": invoice_id, "amount": amount, "email": email, "recorded": True}
