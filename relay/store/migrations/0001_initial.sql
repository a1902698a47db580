-- relay schema, version 1. Times are unix seconds (REAL). JSON is stored as TEXT.

CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    type         TEXT NOT NULL,
    status       TEXT NOT NULL,
    received_at  REAL NOT NULL,
    headers      TEXT NOT NULL,
    query        TEXT NOT NULL,
    body         BLOB NOT NULL,
    -- `{source} {event_id}` while the dedupe window is open, NULL after: one live event per provider event.
    dedupe_key   TEXT UNIQUE,
    dedupe_until REAL NOT NULL
);
CREATE INDEX events_received_at ON events (received_at);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    event           TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    route_id        TEXT NOT NULL,
    target_index    INTEGER NOT NULL,
    function_id     TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    rate_limited    INTEGER NOT NULL DEFAULT 0,
    spent           INTEGER NOT NULL DEFAULT 0,  -- counted attempts made before the last manual retry
    retried_at      REAL,                        -- the last manual retry: max_age counts from here
    next_attempt_at REAL,
    lease_owner     TEXT,
    lease_until     REAL,
    variables       TEXT,
    stream          INTEGER NOT NULL,
    timeout         REAL NOT NULL,
    retry           TEXT NOT NULL,
    runtime         TEXT,
    last_error      TEXT,
    function_run_id TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX deliveries_event ON deliveries (event);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX deliveries_in_flight ON deliveries (lease_until) WHERE status = 'in_flight';
CREATE INDEX deliveries_status ON deliveries (status, updated_at);

CREATE TABLE attempts (
    delivery        TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number          INTEGER NOT NULL,
    started_at      REAL NOT NULL,
    latency_ms      REAL NOT NULL,
    outcome         TEXT NOT NULL,
    http_status     INTEGER,
    error           TEXT,
    function_run_id TEXT,
    session_id      TEXT,
    function_status TEXT,
    result          TEXT,
    logs            TEXT NOT NULL,
    PRIMARY KEY (delivery, number)
);

CREATE TABLE rejections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    message     TEXT NOT NULL,
    received_at REAL NOT NULL,
    headers     TEXT NOT NULL,
    body_head   BLOB NOT NULL,
    body_size   INTEGER NOT NULL
);
CREATE INDEX rejections_source ON rejections (source, id);

CREATE TABLE rejection_counts (
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (source, reason)
);
