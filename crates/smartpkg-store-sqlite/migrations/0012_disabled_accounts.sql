-- An operator can disable a console account (someone who left, a leaked password): it can no
-- longer sign in and its sessions end. NULL while the account is enabled.
ALTER TABLE accounts ADD COLUMN disabled_at INTEGER;
