-- The console: accounts, their sessions, owners' mini programs, and the package log (every
-- state change of every package with who caused it).
CREATE TABLE accounts (
    account_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_by    INTEGER,
    created_at    INTEGER NOT NULL
);

CREATE TABLE account_apps (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id),
    app_id     INTEGER NOT NULL REFERENCES apps (app_id),
    PRIMARY KEY (account_id, app_id)
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (account_id),
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE package_log (
    log_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    package_id INTEGER NOT NULL,
    app_id     INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    account_id INTEGER,
    detail     TEXT
);
CREATE INDEX package_log_by_app ON package_log (app_id, log_id);

-- The mini-program list pages newest first and searches by name.
CREATE INDEX apps_by_tp ON apps (tp_id, app_id);
