-- The runtime channel (issue 10): staged releases, the package archive devices download,
-- the mini program's runtime settings (paused, domains, minimum runtime version), the third
-- party's registered domains, and the host apps that run mini programs.
ALTER TABLE packages ADD COLUMN staged_percent INTEGER;
ALTER TABLE packages ADD COLUMN archive_sha256 TEXT;
ALTER TABLE packages ADD COLUMN archive_size INTEGER;
ALTER TABLE apps ADD COLUMN runtime_settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tps ADD COLUMN domains TEXT NOT NULL DEFAULT '{}';
CREATE TABLE host_apps (
    host_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    host_key    TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
-- A mini program with rows here runs only in those host apps; with none, in every one.
CREATE TABLE app_host_apps (
    app_id  INTEGER NOT NULL REFERENCES apps (app_id),
    host_id INTEGER NOT NULL REFERENCES host_apps (host_id),
    PRIMARY KEY (app_id, host_id)
);
-- The last former online versions of an app, newest first (rollback to a chosen version).
CREATE INDEX packages_app_state_updated ON packages (app_id, state, updated_at);
-- Downloads look an archive up by its hash (unknown hashes included: keep that cheap).
CREATE INDEX packages_archive ON packages (archive_sha256);
