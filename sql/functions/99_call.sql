-- api.call: the one statement nginx sends for every API request
-- (docs/api-design.md):
--
--   SELECT status, etag, body::text, principal, tenant FROM api.call($1, $2::jsonb)
--
-- It authenticates the envelope, runs the operation, turns a refusal into
-- the error answer, and writes the audit row of a write, all in the
-- statement's one transaction.

-- Operation name (as routed by nginx) to function.
CREATE FUNCTION api.dispatch(op text, c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    CASE op
        WHEN 'whoami'         THEN RETURN api.whoami(c, e);
        WHEN 'plan.list'      THEN RETURN api.plan_list(c, e);
        WHEN 'plan.get'       THEN RETURN api.plan_get(c, e);
        WHEN 'plan.create'    THEN RETURN api.plan_create(c, e);
        WHEN 'plan.put'       THEN RETURN api.plan_put(c, e);
        WHEN 'plan.patch'     THEN RETURN api.plan_patch(c, e);
        WHEN 'plan.delete'    THEN RETURN api.plan_delete(c, e);
        WHEN 'cluster.list'   THEN RETURN api.cluster_list(c, e);
        WHEN 'cluster.get'    THEN RETURN api.cluster_get(c, e);
        WHEN 'cluster.create' THEN RETURN api.cluster_create(c, e);
        WHEN 'cluster.put'    THEN RETURN api.cluster_put(c, e);
        WHEN 'cluster.patch'  THEN RETURN api.cluster_patch(c, e);
        WHEN 'cluster.delete' THEN RETURN api.cluster_delete(c, e);
        WHEN 'cluster_config.get' THEN RETURN api.cluster_config_get(c, e);
        WHEN 'cluster_config.put' THEN RETURN api.cluster_config_put(c, e);
        WHEN 'cluster.join_token' THEN RETURN api.cluster_join_token(c, e);
        WHEN 'cluster.install' THEN RETURN api.cluster_install(c, e);
        WHEN 'cluster.register' THEN RETURN api.cluster_register(c, e);
        WHEN 'kubeconfig.get' THEN RETURN api.kubeconfig_get(c, e);
        WHEN 'tenant.list'    THEN RETURN api.tenant_list(c, e);
        WHEN 'tenant.get'     THEN RETURN api.tenant_get(c, e);
        WHEN 'tenant.create'  THEN RETURN api.tenant_create(c, e);
        WHEN 'tenant.put'     THEN RETURN api.tenant_put(c, e);
        WHEN 'tenant.patch'   THEN RETURN api.tenant_patch(c, e);
        WHEN 'tenant.delete'  THEN RETURN api.tenant_delete(c, e);
        WHEN 'user.list'      THEN RETURN api.user_list(c, e);
        WHEN 'user.get'       THEN RETURN api.user_get(c, e);
        WHEN 'user.create'    THEN RETURN api.user_create(c, e);
        WHEN 'user.patch'     THEN RETURN api.user_patch(c, e);
        WHEN 'user.delete'    THEN RETURN api.user_delete(c, e);
        WHEN 'admin.list'     THEN RETURN api.admin_list(c, e);
        WHEN 'admin.create'   THEN RETURN api.admin_create(c, e);
        WHEN 'admin.delete'   THEN RETURN api.admin_delete(c, e);
        WHEN 'token.list'     THEN RETURN api.token_list(c, e);
        WHEN 'token.create'   THEN RETURN api.token_create(c, e);
        WHEN 'token.revoke'   THEN RETURN api.token_revoke(c, e);
        WHEN 'app.list'       THEN RETURN api.app_list(c, e);
        WHEN 'app.get'        THEN RETURN api.app_get(c, e);
        WHEN 'app.status'     THEN RETURN api.app_status(c, e);
        WHEN 'app.create'     THEN RETURN api.app_create(c, e);
        WHEN 'app.put'        THEN RETURN api.app_put(c, e);
        WHEN 'app.delete'     THEN RETURN api.app_delete(c, e);
        WHEN 'signup'         THEN RETURN api.signup(c, e);
        WHEN 'usage.get'      THEN RETURN api.usage_get(c, e);
        WHEN 'usage.list'     THEN RETURN api.usage_list(c, e);
        WHEN 'invoice.get'    THEN RETURN api.invoice_get(c, e);
        WHEN 'audit.list'     THEN RETURN api.audit_list(c, e);
        ELSE
            PERFORM api.fail(404, 'not_found', 'unknown operation ' || coalesce(op, 'null'));
    END CASE;
END
$$;

-- Writes are audited; reads are not.
CREATE FUNCTION api.is_write_op(op text) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT op = 'signup'
        OR split_part(op, '.', 2) IN ('create', 'put', 'patch', 'delete', 'revoke',
                                      'join_token', 'register')
$$;

-- Errors that only a race between two transactions produces (the checks in
-- the operations saw nothing wrong, the constraints did).
CREATE FUNCTION api.race_error(sqlstate text, constraint_name text) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE
        WHEN constraint_name = 'tenant_hostnames_pkey'
            THEN api.error_body(409, 'conflict', 'an ingress host name is used by another tenant')
        WHEN sqlstate = '23505'
            THEN api.error_body(409, 'already_exists', 'the object already exists (created concurrently)')
        ELSE api.error_body(409, 'conflict', 'a concurrent change got in the way; retry')
    END
$$;

CREATE FUNCTION api.call(op text, e jsonb)
RETURNS TABLE (status integer, etag text, body jsonb, principal text, tenant text)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    c       api.caller;
    r       api.result;
    err     jsonb;
    state   text;
    constr  text;
BEGIN
    IF op = 'signup' THEN
        c := ROW(NULL, NULL, NULL, NULL, false)::api.caller;   -- anonymous
    ELSIF op IN ('cluster.install', 'cluster.register') THEN
        -- no bearer: the join token in the request authorizes it
        c := ROW('join-token:' || api.param(e, 'cluster'), NULL, NULL, NULL,
                 false)::api.caller;
    ELSE
        c := api.authenticate(e);
        IF c.principal IS NULL THEN   -- not audited: nobody to attribute it to
            RETURN QUERY SELECT 401, NULL::text,
                api.error_body(401, 'unauthorized', 'missing or invalid bearer token'),
                NULL::text, NULL::text;
            RETURN;
        END IF;
    END IF;

    -- A block with handlers is a subtransaction: a refusal rolls back what
    -- the operation wrote, and the audit row below still commits.
    BEGIN
        r := api.dispatch(op, c, e);
    EXCEPTION
        WHEN SQLSTATE 'KNAPI' THEN
            err := SQLERRM::jsonb;
            r := ROW((err -> 'error' ->> 'status')::integer, NULL, err)::api.result;
        WHEN unique_violation OR foreign_key_violation
             OR deadlock_detected OR serialization_failure THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, constr = CONSTRAINT_NAME;
            err := api.race_error(state, constr);
            r := ROW(409, NULL, err)::api.result;
    END;

    -- a refused registration is unauthenticated: not audited either
    IF api.is_write_op(op) AND (op <> 'cluster.register' OR r.status = 201) THEN
        PERFORM api.audit(c,
                          coalesce(c.tenant,
                                   CASE WHEN op = 'signup' AND r.status = 201
                                        THEN r.body -> 'tenant' ->> 'name' END),
                          op, api.audit_resource(op, e), r.status);
    END IF;
    RETURN QUERY SELECT r.status, r.etag, r.body, c.principal, c.tenant;
END
$$;
