-- Every change that can alter what `package/get` answers for a mini program (one of its
-- packages, one of its tokens, its authorization) tells every instance to drop what it caches
-- of that mini program's `get` (see the crate's `cache` module). The payload is the app id;
-- PostgreSQL folds identical notifications of a transaction into one, delivered at its commit.
-- The transaction's own instance reads the same ids from the transaction-local setting
-- `smartpkg.get_changed` before it commits ('*' once the list grows long: everything).
CREATE OR REPLACE FUNCTION smartpkg_get_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    app BIGINT;
    seen TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        app := OLD.app_id;
    ELSE
        app := NEW.app_id;
    END IF;
    IF app IS NOT NULL THEN
        PERFORM pg_notify('smartpkg_get', app::TEXT);
        seen := COALESCE(current_setting('smartpkg.get_changed', true), '');
        IF seen = '' THEN
            seen := app::TEXT;
        ELSIF seen <> '*' AND position(',' || app::TEXT || ',' IN ',' || seen || ',') = 0 THEN
            seen := CASE WHEN length(seen) > 4000 THEN '*' ELSE seen || ',' || app::TEXT END;
        END IF;
        PERFORM set_config('smartpkg.get_changed', seen, true);
    END IF;
    -- An update that moves a row to another app (never done today) tells both.
    IF TG_OP = 'UPDATE' AND OLD.app_id IS DISTINCT FROM NEW.app_id AND OLD.app_id IS NOT NULL THEN
        PERFORM pg_notify('smartpkg_get', OLD.app_id::TEXT);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER packages_get_changed AFTER INSERT OR UPDATE OR DELETE ON packages
    FOR EACH ROW EXECUTE FUNCTION smartpkg_get_changed();
CREATE TRIGGER access_tokens_get_changed AFTER UPDATE OR DELETE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION smartpkg_get_changed();
CREATE TRIGGER apps_get_changed AFTER UPDATE OR DELETE ON apps
    FOR EACH ROW EXECUTE FUNCTION smartpkg_get_changed();
