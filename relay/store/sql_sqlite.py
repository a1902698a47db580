"""The SQLite store's statements, named. Parameters are always bound, never formatted in (except `{marks}`,
a run of `?` placeholders)."""

# The dedupe key (`{source} {event_id}`) is unique among events whose window is open; when a window is over the key
# is cleared from the old event, so the same provider id can be stored again.
DEDUPE_HOLDER = "SELECT id, dedupe_until FROM events WHERE dedupe_key = ?"

DEDUPE_RELEASE = "UPDATE events SET dedupe_key = NULL WHERE id = ?"

EVENT_INSERT = """
INSERT INTO events (id, source, event_id, type, status, received_at, headers, query, body, dedupe_key, dedupe_until)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

# Many rows in one statement: `?` is a JSON array of rows, each the JSON array of the columns in this order.
EVENTS_FROM_JSON = """
INSERT INTO events (id, source, event_id, type, status, received_at, headers, query, body, dedupe_key, dedupe_until)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value -> 6, value -> 7,
       CAST(value ->> 8 AS BLOB), value ->> 9, value ->> 10
FROM json_each(?)
"""

DELIVERIES_FROM_JSON = """
INSERT INTO deliveries (id, event, route_id, target_index, function_id, status, next_attempt_at, variables,
                        stream, timeout, retry, runtime, last_error, created_at, updated_at)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value -> 7,
       value ->> 8, value ->> 9, value -> 10, nullif(value -> 11, 'null'), value ->> 12, value ->> 13, value ->> 14
FROM json_each(?)
"""

DELIVERY_INSERT = """
INSERT INTO deliveries (id, event, route_id, target_index, function_id, status, next_attempt_at, variables,
                        stream, timeout, retry, runtime, last_error, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_EVENT_COLUMNS = "id, source, event_id, type, status, received_at, headers, query, body"

EVENT = f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = :id"

# Not indexed: a provider id is looked up by hand, rarely, and an index on random keys costs every ingest a page.
EVENT_BY_PROVIDER_ID = f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = :event_id ORDER BY id DESC LIMIT 1"

EVENTS = f"""
SELECT {_EVENT_COLUMNS} FROM events
WHERE (:source IS NULL OR source = :source)
  AND (:type IS NULL OR type GLOB :type)
  AND (:since IS NULL OR received_at >= :since)
  AND (:until IS NULL OR received_at < :until)
  AND (:status IS NULL OR status = :status
       OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event = events.id AND d.status = :status))
ORDER BY received_at DESC, id DESC
LIMIT :limit
"""

_DELIVERY_COLUMNS = """id, event, route_id, target_index, function_id, status, attempts, rate_limited,
next_attempt_at, variables, stream, timeout, retry, runtime, last_error, function_run_id, created_at, updated_at,
spent, retried_at"""

DELIVERIES_OF_EVENTS = (
    f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE event IN ({{marks}}) ORDER BY event, route_id, target_index"
)

DELIVERY = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id = :id"

ATTEMPTS = """
SELECT number, started_at, latency_ms, outcome, http_status, error, function_run_id, session_id, function_status,
       result, logs
FROM attempts WHERE delivery = :delivery ORDER BY number
"""

# Finishes, many in one statement each: `?` is a JSON array of rows, each the JSON array built by
# SQLiteStore.finish: [delivery, owner, started_at, latency_ms, outcome, http_status, error, function_run_id,
# session_id, function_status, result, logs, status, next_attempt_at, last_error, rate_limited, now].
# The attempt number is counted here, not trusted from the worker: a reclaimed lease may race a slow first owner.
ATTEMPTS_FROM_JSON = """
INSERT INTO attempts (delivery, number, started_at, latency_ms, outcome, http_status, error, function_run_id,
                      session_id, function_status, result, logs)
SELECT f.value ->> 0, (SELECT coalesce(max(a.number), 0) + 1 FROM attempts a WHERE a.delivery = f.value ->> 0),
       f.value ->> 2, f.value ->> 3, f.value ->> 4, f.value ->> 5, f.value ->> 6, f.value ->> 7, f.value ->> 8,
       f.value ->> 9, f.value ->> 10, f.value -> 11
FROM json_each(?) AS f
"""

# Only while the lease is still the finisher's: a delivery handed to another worker meanwhile is theirs now.
# The unary `+` keeps SQLite from scanning the in-flight rows by status: each row is looked up by its id.
FINISHES_FROM_JSON = """
UPDATE deliveries
SET status = f.value ->> 12, next_attempt_at = f.value ->> 13, last_error = f.value ->> 14,
    attempts = deliveries.attempts + 1, rate_limited = deliveries.rate_limited + (f.value ->> 15),
    function_run_id = coalesce(f.value ->> 7, deliveries.function_run_id),
    lease_owner = NULL, lease_until = NULL, updated_at = f.value ->> 16
FROM json_each(?) AS f
WHERE deliveries.id = f.value ->> 0 AND deliveries.lease_owner = f.value ->> 1 AND +deliveries.status = 'in_flight'
"""

# The leases other workers hold: the claiming worker counts its own runs itself (see Store.claim).
IN_FLIGHT_ELSEWHERE = """
SELECT count(*) FROM deliveries WHERE status = 'in_flight' AND lease_until > :now AND lease_owner != :owner
"""

CLAIM = f"""
UPDATE deliveries SET status = 'in_flight', lease_owner = :owner, lease_until = :until, updated_at = :now
WHERE id IN (
    SELECT id FROM deliveries WHERE status IN ('pending', 'retrying') AND next_attempt_at <= :now
    UNION ALL
    SELECT id FROM deliveries WHERE status = 'in_flight' AND lease_until <= :now
    LIMIT :n
)
RETURNING {_DELIVERY_COLUMNS}
"""

RENEW = """
UPDATE deliveries SET lease_until = :until
WHERE id = :id AND lease_owner = :owner AND status = 'in_flight'
"""

DELIVERY_FINISH = """
UPDATE deliveries
SET status = :status, next_attempt_at = :next_attempt_at, last_error = :last_error,
    attempts = attempts + 1, rate_limited = rate_limited + :rate_limited,
    function_run_id = coalesce(:function_run_id, function_run_id),
    lease_owner = NULL, lease_until = NULL, updated_at = :now
WHERE id = :id AND lease_owner = :owner AND status = 'in_flight'
"""

RELEASE = """
UPDATE deliveries SET status = 'retrying', next_attempt_at = :now, lease_owner = NULL, lease_until = NULL
WHERE lease_owner = :owner AND status = 'in_flight'
"""

RELEASE_ALL = """
UPDATE deliveries SET status = 'retrying', next_attempt_at = :now, lease_owner = NULL, lease_until = NULL
WHERE status = 'in_flight'
"""

REJECTION_COUNT = """
INSERT INTO rejection_counts (source, reason, count) VALUES (:source, :reason, 1)
ON CONFLICT (source, reason) DO UPDATE SET count = count + 1
"""

REJECTION_INSERT = """
INSERT INTO rejections (source, reason, status, message, received_at, headers, body_head, body_size)
VALUES (:source, :reason, :status, :message, :received_at, :headers, :body_head, :body_size)
"""

REJECTION_PRUNE = """
DELETE FROM rejections WHERE source = :source AND id <= (
    SELECT id FROM rejections WHERE source = :source ORDER BY id DESC LIMIT 1 OFFSET :keep
)
"""

REJECTIONS = """
SELECT source, reason, status, message, received_at, headers, body_head, body_size FROM rejections
WHERE (:source IS NULL OR source = :source) ORDER BY id DESC
"""

REJECTION_COUNTS = "SELECT source, reason, count FROM rejection_counts ORDER BY source, reason"

EVENT_ROUTED = "UPDATE events SET status = 'routed' WHERE id = ?"

# A manual retry: due now, and the counted attempts so far are set aside so the delivery gets its whole budget.
RETRY_MATCH = """
SELECT id FROM deliveries
WHERE status IN (SELECT value FROM json_each(:statuses))
  AND variables != 'null'
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
  AND (:since IS NULL OR updated_at >= :since)
  AND (:function_id IS NULL OR function_id = :function_id)
ORDER BY created_at
"""

RETRY = """
UPDATE deliveries
SET status = 'pending', next_attempt_at = :now, spent = attempts - rate_limited, retried_at = :now, updated_at = :now
WHERE id = :id AND status IN ('failed', 'dead', 'cancelled')
"""

PURGE_EVENTS = "DELETE FROM events WHERE received_at < :before"

PURGE_REJECTIONS = "DELETE FROM rejections WHERE received_at < :before"
