-- Each claim of a job gets a random token; settling the job requires it, so a worker whose
-- lease ran out (and whose job another worker took) cannot change anything any more.
ALTER TABLE jobs ADD COLUMN lease_token INTEGER;
