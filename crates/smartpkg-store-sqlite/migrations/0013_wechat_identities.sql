-- The WeChat dialect's identities (docs/wechat.md). Every third party has a component appid,
-- an appsecret (kept as SHA-256, issued by the admin API; none for third parties created
-- before this version until an operator issues one), a message token and an EncodingAESKey of
-- its own, and the two URLs WeChat-dialect pushes go to; every mini program has a wx appid.
-- Existing rows get theirs here, from SQLite's own random source.
ALTER TABLE tps ADD COLUMN component_appid TEXT;
ALTER TABLE tps ADD COLUMN component_secret_hash TEXT;
ALTER TABLE tps ADD COLUMN wechat_token TEXT NOT NULL DEFAULT '';
ALTER TABLE tps ADD COLUMN wechat_encoding_aes_key TEXT NOT NULL DEFAULT '';
ALTER TABLE tps ADD COLUMN wechat_auth_event_url TEXT NOT NULL DEFAULT '';
ALTER TABLE tps ADD COLUMN wechat_message_url TEXT NOT NULL DEFAULT '';
UPDATE tps SET component_appid = 'wx' || lower(hex(randomblob(8))),
    wechat_token = lower(hex(randomblob(16))),
    -- 43 characters of the base64 alphabet; the last one carries no stray bits.
    wechat_encoding_aes_key = lower(hex(randomblob(21))) || 'A';
CREATE UNIQUE INDEX tps_component_appid ON tps (component_appid);

ALTER TABLE apps ADD COLUMN wx_appid TEXT;
UPDATE apps SET wx_appid = 'wx' || lower(hex(randomblob(8)));
CREATE UNIQUE INDEX apps_wx_appid ON apps (wx_appid);
