-- The janitor's shared schedule (one instance runs it per interval) and the index it scans.
INSERT INTO schedules (name, next_at) VALUES ('janitor', 0);
CREATE INDEX packages_by_state_updated ON packages (state, updated_at);
