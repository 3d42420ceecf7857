-- The WeChat dialect's identities (docs/wechat.md). Every third party has a component appid,
-- an appsecret (kept as SHA-256, issued by the admin API; none for third parties created
-- before this version until an operator issues one), a message token and an EncodingAESKey of
-- its own, and the two URLs WeChat-dialect pushes go to; every mini program has a wx appid.
-- Existing rows get theirs here, from gen_random_uuid's strong random source.
ALTER TABLE tps
    ADD COLUMN component_appid TEXT,
    ADD COLUMN component_secret_hash TEXT,
    ADD COLUMN wechat_token TEXT NOT NULL DEFAULT '',
    ADD COLUMN wechat_encoding_aes_key TEXT NOT NULL DEFAULT '',
    ADD COLUMN wechat_auth_event_url TEXT NOT NULL DEFAULT '',
    ADD COLUMN wechat_message_url TEXT NOT NULL DEFAULT '';
UPDATE tps SET
    component_appid = 'wx' || substr(replace(gen_random_uuid()::TEXT, '-', ''), 1, 16),
    wechat_token = replace(gen_random_uuid()::TEXT, '-', ''),
    -- 43 characters of the base64 alphabet; the last one carries no stray bits.
    wechat_encoding_aes_key = substr(replace(gen_random_uuid()::TEXT, '-', '')
        || replace(gen_random_uuid()::TEXT, '-', ''), 1, 42) || 'A';
ALTER TABLE tps ALTER COLUMN component_appid SET NOT NULL;
ALTER TABLE tps ADD CONSTRAINT tps_component_appid_key UNIQUE (component_appid);

ALTER TABLE apps ADD COLUMN wx_appid TEXT;
UPDATE apps SET wx_appid = 'wx' || substr(replace(gen_random_uuid()::TEXT, '-', ''), 1, 16);
ALTER TABLE apps ALTER COLUMN wx_appid SET NOT NULL;
ALTER TABLE apps ADD CONSTRAINT apps_wx_appid_key UNIQUE (wx_appid);
