------------------------------------------------------------------------
-- Kubeconfigs of a tenant: GET /tenants/{t}/kubeconfig?cluster=&role=&via=
--
-- via=proxy (the default): a kubeconfig for the Manager's kube proxy
-- (/k8s/clusters/{cluster}), whose credential is a KubeNova token of the
-- caller bound to that cluster and role (api.kube_proxy_token, 85_*); only
-- tenant members get one.  Answers the token; nginx writes the YAML.
--
-- via=direct: the kubeconfig the cluster's Operator issued.  Answers the
-- ciphertext; the nginx side decrypts it and serves the YAML.  Members of
-- the tenant and admins may read.
--
-- Either way a readonly member only gets the readonly kubeconfig (the owner
-- one would be an escalation).
------------------------------------------------------------------------

CREATE FUNCTION api.kubeconfig_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t             tenants := api.tenant_scope(c, api.param(e, 'tenant'), false);
    cluster_name  text := e -> 'query' ->> 'cluster';
    role_name     text := coalesce(e -> 'query' ->> 'role', 'owner');
    via           text := coalesce(e -> 'query' ->> 'via', 'proxy');
    k             kubeconfigs;
BEGIN
    IF cluster_name IS NULL OR cluster_name = '' THEN
        PERFORM api.fail(400, 'invalid_query', 'cluster= is required');
    END IF;
    IF role_name NOT IN ('owner', 'readonly') THEN
        PERFORM api.fail(400, 'invalid_query', 'role= must be owner or readonly');
    END IF;
    IF via NOT IN ('proxy', 'direct') THEN
        PERFORM api.fail(400, 'invalid_query', 'via= must be proxy or direct');
    END IF;
    IF NOT c.is_admin AND c.role = 'readonly' AND role_name = 'owner' THEN
        PERFORM api.fail_forbidden('read-only users get the readonly kubeconfig only');
    END IF;

    IF via = 'proxy' THEN
        IF c.user_name IS NULL OR c.tenant IS NULL THEN
            PERFORM api.fail(400, 'invalid_query',
                'proxy kubeconfigs carry a tenant user''s token; admins use via=direct');
        END IF;
        IF NOT EXISTS (SELECT 1 FROM desired_state d
                       WHERE d.cluster = cluster_name AND d.kind = 'Tenant'
                         AND d.name = t.name AND NOT d.deleted) THEN
            PERFORM api.fail_not_found('kubeconfig');
        END IF;
        RETURN api.ok(200, jsonb_build_object(
            'tenant', t.name, 'cluster', cluster_name, 'role', role_name,
            'via', 'proxy',
            'token', api.kube_proxy_token(c.user_name, cluster_name, role_name)));
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
