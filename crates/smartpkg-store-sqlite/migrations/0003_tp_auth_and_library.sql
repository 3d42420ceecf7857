-- Third-party tickets and tokens, pushes to the authorization-event URL, and the template
-- library (drafts already exist; templates gain deletion through the API).

-- Tickets are kept only as SHA-256, like tokens.
CREATE TABLE tickets (
    ticket_hash TEXT PRIMARY KEY,
    tp_id       INTEGER NOT NULL REFERENCES tps (tp_id),
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX tickets_by_tp ON tickets (tp_id);

-- Periodic work shared by every instance: whoever moves next_at forward does the run.
CREATE TABLE schedules (
    name    TEXT PRIMARY KEY,
    next_at INTEGER NOT NULL
);
INSERT INTO schedules (name, next_at) VALUES ('ticket_push', 0);

-- 'event' pushes go to the TP's event_url, 'auth' pushes to its auth_event_url. A push that
-- is not a package audit result carries its plain JSON in payload.
ALTER TABLE events ADD COLUMN channel TEXT NOT NULL DEFAULT 'event';
ALTER TABLE events ADD COLUMN payload TEXT;

CREATE INDEX templates_by_tp ON templates (tp_id, deleted_at);
CREATE INDEX drafts_by_tp ON drafts (tp_id);
