-- Watchers of an application's status (GET .../apps/{name}/status?watch=1)
-- LISTEN on "kubenova_app_status"; the payload is "<tenant>/<app>" of an
-- application whose document, sync state on a cluster (desired_state,
-- applied_state) or reported status (app_status) changed.  Sent at commit;
-- identical ones within a transaction are folded into one by PostgreSQL, so
-- a write that touches many rows of one app wakes its watchers once.
CREATE FUNCTION app_status_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    row  record;
BEGIN
    row := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    IF TG_TABLE_NAME = 'applications' THEN
        PERFORM pg_notify('kubenova_app_status', row.tenant || '/' || row.name);
    ELSIF TG_TABLE_NAME = 'app_status' THEN
        PERFORM pg_notify('kubenova_app_status', row.tenant || '/' || row.app);
    ELSIF row.kind = 'Application' THEN      -- desired_state, applied_state
        PERFORM pg_notify('kubenova_app_status', row.name);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER app_status_notify
    AFTER INSERT OR UPDATE OR DELETE ON applications
    FOR EACH ROW EXECUTE FUNCTION app_status_notify();

CREATE TRIGGER app_status_notify
    AFTER INSERT OR UPDATE OR DELETE ON app_status
    FOR EACH ROW EXECUTE FUNCTION app_status_notify();

CREATE TRIGGER app_status_notify
    AFTER INSERT OR UPDATE OR DELETE ON desired_state
    FOR EACH ROW EXECUTE FUNCTION app_status_notify();

CREATE TRIGGER app_status_notify
    AFTER INSERT OR UPDATE OR DELETE ON applied_state
    FOR EACH ROW EXECUTE FUNCTION app_status_notify();
