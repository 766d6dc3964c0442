-- The audit log: GET /api/v1/audit (admins), newest first.  Rows are
-- written by api.call (99_call.sql) for every write operation.

CREATE FUNCTION api.audit_json(l audit_log) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object('id', l.id, 'at', api.ts(l.at), 'principal', l.principal,
                              'tenant', l.tenant, 'action', l.action,
                              'resource', l.resource, 'status', l.status)
$$;

CREATE FUNCTION api.audit_list(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    page_limit  integer;
    after       text;
    items       jsonb;
BEGIN
    PERFORM api.require_admin(c);
    page_limit := api.page_limit(e);
    after := api.page_after(e);
    IF after !~ '^[0-9]{1,18}$' THEN
        PERFORM api.fail(400, 'invalid_query', 'continue is not a value from a previous page');
    END IF;
    SELECT coalesce(jsonb_agg(s.j ORDER BY s.k DESC), '[]') INTO items
    FROM (SELECT api.audit_json(l) AS j, l.id AS k FROM audit_log l
          WHERE after IS NULL OR l.id < after::bigint
          ORDER BY l.id DESC LIMIT page_limit + 1) s;
    RETURN api.page_result(items, page_limit, 'id');
END
$$;

-- A string member of the body, for naming what a POST was about.
CREATE FUNCTION api.body_string(e jsonb, VARIADIC path text[]) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN jsonb_typeof(e -> 'body' #> path) = 'string'
                THEN left(e -> 'body' #>> path, 253) END
$$;

-- What a write was about, as the path below /api/v1 ("tenants/acme/apps/web").
CREATE FUNCTION api.audit_resource(op text, e jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE split_part(op, '.', 1)
        WHEN 'plan' THEN concat_ws('/', 'plans',
                                   coalesce(api.param(e, 'plan'), api.body_string(e, 'name')))
        WHEN 'cluster' THEN concat_ws('/', 'clusters',
                                      coalesce(api.param(e, 'cluster'), api.body_string(e, 'name')),
                                      CASE op WHEN 'cluster.join_token' THEN 'join-token'
                                              WHEN 'cluster.register' THEN 'register' END)
        WHEN 'cluster_config' THEN concat_ws('/', 'clusters', api.param(e, 'cluster'), 'config')
        WHEN 'tenant' THEN concat_ws('/', 'tenants',
                                     coalesce(api.param(e, 'tenant'), api.body_string(e, 'name')))
        WHEN 'user' THEN concat_ws('/', 'tenants', api.param(e, 'tenant'), 'users',
                                   coalesce(api.param(e, 'user'), api.body_string(e, 'name')))
        WHEN 'admin' THEN concat_ws('/', 'admins',
                                    coalesce(api.param(e, 'user'), api.body_string(e, 'name')))
        WHEN 'token' THEN concat_ws('/', 'users', api.param(e, 'user'), 'tokens',
                                    coalesce(api.param(e, 'token'), api.body_string(e, 'name')))
        WHEN 'app' THEN concat_ws('/', 'tenants', api.param(e, 'tenant'), 'apps',
                                  coalesce(api.param(e, 'app'),
                                           api.body_string(e, 'metadata', 'name')))
        WHEN 'signup' THEN concat_ws('/', 'tenants', api.body_string(e, 'tenant'))
        ELSE op
    END
$$;
