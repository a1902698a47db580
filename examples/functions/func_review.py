"""Handle a GitHub webhook event (routed from `pull_request.opened` by the example routes.yaml)."""


def run(event_type: str, data: dict[str, object]) -> dict[str, object]:
    pull_request = data.get("pull_request")
    title = pull_request.get("title") if isinstance(pull_request, dict) else None
    print(f"review: {event_type} {title or ''}".rstrip())
    return {"status": "processed", "event": event_type, "title": title}
