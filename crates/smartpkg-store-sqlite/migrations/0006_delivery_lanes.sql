-- Deliveries get their own lane of workers, a cap per third party, and a hold on targets
-- that keep failing (a circuit breaker), so one slow receiver slows nobody else.

-- The third party a push job delivers to, copied from its delivery so the claim can count
-- and cap work per target without a join.
ALTER TABLE jobs ADD COLUMN target INTEGER;
UPDATE jobs SET target = (SELECT d.tp_id FROM deliveries d WHERE d.delivery_id = jobs.delivery_id)
    WHERE kind = 'push';
CREATE INDEX jobs_by_kind_due ON jobs (kind, run_at);
CREATE INDEX jobs_by_target ON jobs (target, lease_until);
CREATE INDEX jobs_by_delivery ON jobs (delivery_id);

-- One row per third party that has been pushed to: its run of consecutive failures and, when
-- that run grew too long, until when its deliveries are held.
CREATE TABLE push_targets (
    tp_id                INTEGER PRIMARY KEY REFERENCES tps (tp_id),
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    failing_since        INTEGER,
    hold_until           INTEGER,
    holds                INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT,
    updated_at           INTEGER NOT NULL
);
