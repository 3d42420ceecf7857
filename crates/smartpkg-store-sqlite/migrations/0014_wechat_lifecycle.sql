-- The WeChat dialect's own audit quota: each dialect counts its own submissions.
ALTER TABLE audit_submissions ADD COLUMN dialect TEXT NOT NULL DEFAULT 'baidu';
-- A push's dialect is decided when it is attempted (the third party's settings); each
-- attempt records the one it used.
ALTER TABLE delivery_attempts ADD COLUMN dialect TEXT NOT NULL DEFAULT 'baidu';
-- Audits a third party asked WeChat to speed up (`speedupaudit`): once per audit.
CREATE TABLE audit_speedups (
    package_id BIGINT PRIMARY KEY,
    tp_id BIGINT NOT NULL,
    sped_at BIGINT NOT NULL
);
CREATE INDEX audit_speedups_by_tp ON audit_speedups (tp_id, sped_at);
