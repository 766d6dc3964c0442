------------------------------------------------------------------------
-- Kubeconfigs of a tenant: GET /tenants/{t}/kubeconfig?cluster=&role=
--
-- Answers the ciphertext; the nginx side decrypts it and serves the YAML.
-- Members of the tenant and admins may read; a readonly member only its
-- readonly kubeconfig (the owner one would be an escalation).
------------------------------------------------------------------------

CREATE FUNCTION api.kubeconfig_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t             tenants := api.tenant_scope(c, api.param(e, 'tenant'), false);
    cluster_name  text := e -> 'query' ->> 'cluster';
    role_name     text := coalesce(e -> 'query' ->> 'role', 'owner');
    k             kubeconfigs;
BEGIN
    IF cluster_name IS NULL OR cluster_name = '' THEN
        PERFORM api.fail(400, 'invalid_query', 'cluster= is required');
    END IF;
    IF role_name NOT IN ('owner', 'readonly') THEN
        PERFORM api.fail(400, 'invalid_query', 'role= must be owner or readonly');
    END IF;
    IF NOT c.is_admin AND c.role = 'readonly' AND role_name = 'owner' THEN
        PERFORM api.fail_forbidden('read-only users get the readonly kubeconfig only');
    END IF;

    SELECT * INTO k FROM kubeconfigs
    WHERE tenant = t.name AND cluster = cluster_name AND role = role_name;
    IF NOT FOUND THEN
        PERFORM api.fail_not_found('kubeconfig');
    END IF;

    RETURN api.ok(200, jsonb_build_object(
        'tenant', k.tenant, 'cluster', k.cluster, 'role', k.role,
        'issued_at', api.ts(k.issued_at),
        'ciphertext', translate(encode(k.ciphertext, 'base64'), E'\n', '')));
END
$$;
