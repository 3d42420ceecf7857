-- smartpkg schema, version 1 (SQLite). Kept to SQL that PostgreSQL also speaks, apart from
-- the id columns, so the PostgreSQL migration is this file with its own key types.

CREATE TABLE tps (
    tp_id            INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id        TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    event_url        TEXT NOT NULL DEFAULT '',
    auth_event_url   TEXT NOT NULL DEFAULT '',
    msg_token        TEXT NOT NULL,
    encoding_aes_key TEXT NOT NULL,
    audit_quota      INTEGER,
    created_at       INTEGER NOT NULL
);

CREATE TABLE apps (
    app_id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    app_key                TEXT NOT NULL UNIQUE,
    name                   TEXT NOT NULL,
    name_audited           INTEGER NOT NULL,
    category_audited       INTEGER NOT NULL,
    authenticity_certified INTEGER NOT NULL,
    tp_id                  INTEGER REFERENCES tps (tp_id),
    created_at             INTEGER NOT NULL
);

CREATE TABLE drafts (
    draft_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    tp_id        INTEGER NOT NULL REFERENCES tps (tp_id),
    user_version TEXT NOT NULL,
    user_desc    TEXT NOT NULL,
    blob_sha256  TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE templates (
    template_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    draft_id     INTEGER NOT NULL REFERENCES drafts (draft_id),
    tp_id        INTEGER NOT NULL REFERENCES tps (tp_id),
    user_version TEXT NOT NULL,
    user_desc    TEXT NOT NULL,
    blob_sha256  TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    deleted_at   INTEGER
);

-- Tokens are kept only as SHA-256 of the token.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    tp_id      INTEGER NOT NULL REFERENCES tps (tp_id),
    app_id     INTEGER REFERENCES apps (app_id),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX access_tokens_by_app ON access_tokens (app_id);

CREATE TABLE packages (
    package_id          INTEGER PRIMARY KEY,
    app_id              INTEGER NOT NULL REFERENCES apps (app_id),
    tp_id               INTEGER NOT NULL REFERENCES tps (tp_id),
    template_id         INTEGER NOT NULL REFERENCES templates (template_id),
    state               TEXT NOT NULL,
    version             TEXT NOT NULL,
    version_desc        TEXT NOT NULL,
    ext_json            TEXT NOT NULL,
    built_ext_json      TEXT,
    direct_commit       INTEGER NOT NULL,
    test_account        TEXT,
    test_password       TEXT,
    audit_content       TEXT,
    remark              TEXT NOT NULL DEFAULT '',
    msg                 TEXT NOT NULL DEFAULT '',
    upload_err_code     INTEGER,
    upload_err_msg      TEXT,
    previous_package_id INTEGER,
    restored            INTEGER NOT NULL DEFAULT 0,
    commit_time         INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
-- The lifecycle's invariants, also as constraints: one package per slot per mini program,
-- hence one online version and at most one audit in flight.
CREATE UNIQUE INDEX packages_one_development ON packages (app_id)
    WHERE state IN ('building', 'build_failed', 'development');
CREATE UNIQUE INDEX packages_one_audit ON packages (app_id)
    WHERE state IN ('auditing', 'audit_failed', 'audit_passed');
CREATE UNIQUE INDEX packages_one_online ON packages (app_id)
    WHERE state IN ('online', 'rolling_back');
CREATE INDEX packages_by_app_state ON packages (app_id, state);
CREATE INDEX packages_by_state ON packages (state);

CREATE TABLE audit_submissions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tp_id        INTEGER NOT NULL REFERENCES tps (tp_id),
    package_id   INTEGER NOT NULL,
    submitted_at INTEGER NOT NULL
);
CREATE INDEX audit_submissions_by_tp ON audit_submissions (tp_id, submitted_at);

-- Everything that happens later is a row here, written in the transaction that causes it.
CREATE TABLE jobs (
    job_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    package_id  INTEGER NOT NULL,
    run_at      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER,
    last_error  TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_at);
