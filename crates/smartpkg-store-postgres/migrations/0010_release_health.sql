-- A staged release's plan (JSON, smartpkg_core::stage::StagePlan); kept, finished, once released.
ALTER TABLE packages ADD COLUMN stage_plan TEXT;
-- Devices' reports, aggregated: per package, event and hour (since the epoch), the events
-- received and a HyperLogLog sketch of the devices that sent them (base64), with its estimate.
CREATE TABLE report_hours (
    package_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    hour BIGINT NOT NULL,
    app_id BIGINT NOT NULL,
    events BIGINT NOT NULL,
    devices BIGINT NOT NULL,
    sketch TEXT NOT NULL,
    PRIMARY KEY (package_id, event, hour)
);
CREATE INDEX report_hours_by_app ON report_hours (app_id, hour);
-- The janitor drops hours past their retention.
CREATE INDEX report_hours_by_hour ON report_hours (hour);
-- One instance judges the staged plans per interval.
INSERT INTO schedules (name, next_at) VALUES ('health_eval', 0);
