-- smartpkg on PostgreSQL: the same schema as the SQLite migrations 0001-0007, with ids from
-- sequences (BIGSERIAL), times in milliseconds (BIGINT) and flags as BOOLEAN.

CREATE TABLE tps (
    tp_id            BIGSERIAL PRIMARY KEY,
    client_id        TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    event_url        TEXT NOT NULL DEFAULT '',
    auth_event_url   TEXT NOT NULL DEFAULT '',
    msg_token        TEXT NOT NULL,
    encoding_aes_key TEXT NOT NULL,
    audit_quota      BIGINT,
    redirect_domain  TEXT NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL
);

CREATE TABLE apps (
    app_id                 BIGSERIAL PRIMARY KEY,
    app_key                TEXT NOT NULL UNIQUE,
    name                   TEXT NOT NULL,
    name_audited           BOOLEAN NOT NULL,
    category_audited       BOOLEAN NOT NULL,
    authenticity_certified BOOLEAN NOT NULL,
    tp_id                  BIGINT REFERENCES tps (tp_id),
    owner_password_hash    TEXT,
    created_at             BIGINT NOT NULL
);

CREATE TABLE drafts (
    draft_id     BIGSERIAL PRIMARY KEY,
    tp_id        BIGINT NOT NULL REFERENCES tps (tp_id),
    user_version TEXT NOT NULL,
    user_desc    TEXT NOT NULL,
    blob_sha256  TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX drafts_by_tp ON drafts (tp_id);

CREATE TABLE templates (
    template_id  BIGSERIAL PRIMARY KEY,
    draft_id     BIGINT NOT NULL REFERENCES drafts (draft_id),
    tp_id        BIGINT NOT NULL REFERENCES tps (tp_id),
    user_version TEXT NOT NULL,
    user_desc    TEXT NOT NULL,
    blob_sha256  TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    deleted_at   BIGINT
);
CREATE INDEX templates_by_tp ON templates (tp_id, deleted_at);

CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    tp_id      BIGINT NOT NULL REFERENCES tps (tp_id),
    app_id     BIGINT REFERENCES apps (app_id),
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    family     TEXT,
    used_at    BIGINT
);
CREATE INDEX access_tokens_by_app ON access_tokens (app_id);
CREATE INDEX access_tokens_by_family ON access_tokens (family);
CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);

CREATE SEQUENCE package_ids;
CREATE TABLE packages (
    package_id          BIGINT PRIMARY KEY,
    app_id              BIGINT NOT NULL REFERENCES apps (app_id),
    tp_id               BIGINT NOT NULL REFERENCES tps (tp_id),
    template_id         BIGINT NOT NULL REFERENCES templates (template_id),
    state               TEXT NOT NULL,
    version             TEXT NOT NULL,
    version_desc        TEXT NOT NULL,
    ext_json            TEXT NOT NULL,
    built_ext_json      TEXT,
    direct_commit       BOOLEAN NOT NULL,
    test_account        TEXT,
    test_password       TEXT,
    audit_content       TEXT,
    remark              TEXT NOT NULL DEFAULT '',
    msg                 TEXT NOT NULL DEFAULT '',
    upload_err_code     BIGINT,
    upload_err_msg      TEXT,
    previous_package_id BIGINT,
    restored            BOOLEAN NOT NULL DEFAULT FALSE,
    commit_time         BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
-- The lifecycle's invariants, also as constraints.
CREATE UNIQUE INDEX packages_one_development ON packages (app_id)
    WHERE state IN ('building', 'build_failed', 'development');
CREATE UNIQUE INDEX packages_one_audit ON packages (app_id)
    WHERE state IN ('auditing', 'audit_failed', 'audit_passed');
CREATE UNIQUE INDEX packages_one_online ON packages (app_id)
    WHERE state IN ('online', 'rolling_back');
CREATE INDEX packages_by_app_state ON packages (app_id, state);
CREATE INDEX packages_by_state ON packages (state);
CREATE INDEX packages_by_state_updated ON packages (state, updated_at);

CREATE TABLE audit_submissions (
    id           BIGSERIAL PRIMARY KEY,
    tp_id        BIGINT NOT NULL REFERENCES tps (tp_id),
    package_id   BIGINT NOT NULL,
    submitted_at BIGINT NOT NULL
);
CREATE INDEX audit_submissions_by_tp ON audit_submissions (tp_id, submitted_at);

CREATE TABLE jobs (
    job_id      BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL,
    package_id  BIGINT NOT NULL,
    run_at      BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    lease_until BIGINT,
    last_error  TEXT,
    created_at  BIGINT NOT NULL,
    delivery_id BIGINT,
    target      BIGINT
);
CREATE INDEX jobs_due ON jobs (run_at);
CREATE INDEX jobs_by_kind_due ON jobs (kind, run_at);
CREATE INDEX jobs_by_target ON jobs (target, lease_until);
CREATE INDEX jobs_by_delivery ON jobs (delivery_id);

CREATE TABLE events (
    event_id        BIGSERIAL PRIMARY KEY,
    uid             TEXT NOT NULL UNIQUE,
    tp_id           BIGINT NOT NULL REFERENCES tps (tp_id),
    app_id          BIGINT NOT NULL,
    package_id      BIGINT,
    event           TEXT NOT NULL,
    reason          TEXT,
    package_version TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    channel         TEXT NOT NULL DEFAULT 'event',
    payload         TEXT
);

CREATE TABLE deliveries (
    delivery_id     BIGSERIAL PRIMARY KEY,
    event_id        BIGINT NOT NULL REFERENCES events (event_id),
    tp_id           BIGINT NOT NULL,
    url             TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    cycle_attempts  BIGINT NOT NULL DEFAULT 0,
    last_status     BIGINT,
    last_error      TEXT,
    next_attempt_at BIGINT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX deliveries_by_tp ON deliveries (tp_id, delivery_id);
CREATE INDEX deliveries_by_state ON deliveries (state);

CREATE TABLE delivery_attempts (
    attempt_id  BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES deliveries (delivery_id),
    at          BIGINT NOT NULL,
    url         TEXT NOT NULL,
    status      BIGINT,
    latency_ms  BIGINT NOT NULL,
    error       TEXT,
    body        TEXT
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);

CREATE TABLE tickets (
    ticket_hash TEXT PRIMARY KEY,
    tp_id       BIGINT NOT NULL REFERENCES tps (tp_id),
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX tickets_by_tp ON tickets (tp_id);
CREATE INDEX tickets_by_expiry ON tickets (expires_at);

CREATE TABLE schedules (
    name    TEXT PRIMARY KEY,
    next_at BIGINT NOT NULL
);
INSERT INTO schedules (name, next_at) VALUES ('ticket_push', 0), ('janitor', 0);

CREATE TABLE codes (
    code_hash  TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    tp_id      BIGINT NOT NULL REFERENCES tps (tp_id),
    app_id     BIGINT,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX codes_by_expiry ON codes (expires_at);
CREATE INDEX codes_by_app ON codes (app_id);

CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE push_targets (
    tp_id                BIGINT PRIMARY KEY REFERENCES tps (tp_id),
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    failing_since        BIGINT,
    hold_until           BIGINT,
    holds                BIGINT NOT NULL DEFAULT 0,
    last_error           TEXT,
    updated_at           BIGINT NOT NULL
);
