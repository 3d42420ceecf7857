-- Authorization of mini programs to third parties: the TP's redirect domain, and the
-- single-use codes of the flow (pre-auth codes, authorization codes), kept as hashes.

ALTER TABLE tps ADD COLUMN redirect_domain TEXT NOT NULL DEFAULT '';

CREATE TABLE codes (
    code_hash  TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    tp_id      INTEGER NOT NULL REFERENCES tps (tp_id),
    app_id     INTEGER,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
);
