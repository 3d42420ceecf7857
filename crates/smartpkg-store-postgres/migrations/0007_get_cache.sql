-- Every change that can alter what `package/get` answers (a package, a token, an app's
-- authorization) tells every instance to drop what it caches of `get` (see the crate's
-- `cache` module). One notification per statement, and PostgreSQL folds identical ones of a
-- transaction into one, delivered at its commit.
CREATE OR REPLACE FUNCTION smartpkg_get_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smartpkg_get', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER packages_get_changed AFTER INSERT OR UPDATE OR DELETE ON packages
    FOR EACH STATEMENT EXECUTE FUNCTION smartpkg_get_changed();
CREATE TRIGGER access_tokens_get_changed AFTER UPDATE OR DELETE ON access_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION smartpkg_get_changed();
CREATE TRIGGER apps_get_changed AFTER UPDATE OR DELETE ON apps
    FOR EACH STATEMENT EXECUTE FUNCTION smartpkg_get_changed();
