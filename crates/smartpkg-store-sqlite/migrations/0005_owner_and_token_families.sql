-- Hardening: the owner's credential, token families (replay of a used code or refresh token
-- revokes what was issued from it), server-wide secrets, and indexes the janitor needs.

-- A slow password hash (argon2 PHC string) of the owner's credential; NULL = none set yet.
ALTER TABLE apps ADD COLUMN owner_password_hash TEXT;

-- Every app token and refresh token descends from one authorization (an authorization code,
-- or an operator's grant): its family. Refresh tokens are marked used instead of deleted,
-- so that a second use is recognised as a replay.
ALTER TABLE access_tokens ADD COLUMN family TEXT;
ALTER TABLE access_tokens ADD COLUMN used_at INTEGER;
CREATE INDEX access_tokens_by_family ON access_tokens (family);
CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);

CREATE INDEX codes_by_expiry ON codes (expires_at);
CREATE INDEX codes_by_app ON codes (app_id);
CREATE INDEX tickets_by_expiry ON tickets (expires_at);

-- Random keys shared by every instance (CSRF tokens of the authorization page).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
