-- A package's timeline in the console reads its own log entries, newest first, without
-- scanning the rest of its app's log.
CREATE INDEX package_log_by_package ON package_log (package_id, log_id);
