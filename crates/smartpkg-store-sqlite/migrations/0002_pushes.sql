-- Pushes: an event is written in the transaction of the decision it announces (outbox),
-- with one delivery per target and a log of every attempt.

CREATE TABLE events (
    event_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Stable across every retry and replay; sent as X-Smartpkg-Event-Id.
    uid             TEXT NOT NULL UNIQUE,
    tp_id           INTEGER NOT NULL REFERENCES tps (tp_id),
    app_id          INTEGER NOT NULL,
    package_id      INTEGER NOT NULL,
    event           TEXT NOT NULL,
    reason          TEXT,
    package_version TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE deliveries (
    delivery_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        INTEGER NOT NULL REFERENCES events (event_id),
    tp_id           INTEGER NOT NULL,
    url             TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Attempts since the delivery was created or last replayed: the retry schedule's index.
    cycle_attempts  INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    next_attempt_at INTEGER,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX deliveries_by_tp ON deliveries (tp_id, delivery_id);
CREATE INDEX deliveries_by_state ON deliveries (state);

CREATE TABLE delivery_attempts (
    attempt_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (delivery_id),
    at          INTEGER NOT NULL,
    url         TEXT NOT NULL,
    status      INTEGER,
    latency_ms  INTEGER NOT NULL,
    error       TEXT,
    body        TEXT
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);

ALTER TABLE jobs ADD COLUMN delivery_id INTEGER;
