------------------------------------------------------------------------
-- The kube proxy's edge (ngx_kubenova_kube_proxy.c): who may reach which
-- cluster's Kubernetes API through /k8s/clusters/{cluster}/.
--
--   SELECT status, tenant, role, message, node_url
--   FROM api.kube_proxy_auth($1, $2)
--
-- status is the HTTP status the edge answers (200: go on with tenant and
-- role); message says why not; node_url is the Manager node that holds the
-- cluster's stream (kube_proxy_routes), for a node that does not.  A tenant user's token reaches the clusters
-- its tenant is placed on; a proxy kubeconfig's token (tokens.kube_cluster)
-- only its own cluster, with its own role, never more than its user's.
------------------------------------------------------------------------

CREATE FUNCTION api.kube_proxy_auth(token_hash text, cluster_name text)
RETURNS TABLE (status integer, tenant text, role text, message text,
               node_url text)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    hash  text := lower(kube_proxy_auth.token_hash);
    tok   record;
    eff   text;
BEGIN
    IF hash IS NULL OR hash !~ api.pattern('token_hash') THEN
        RETURN QUERY SELECT 401, NULL::text, NULL::text,
                            'missing or invalid bearer token', NULL::text;
        RETURN;
    END IF;

    SELECT t.id, t.last_used_at, t.kube_cluster, t.kube_role,
           u.role AS user_role, u.tenant AS user_tenant,
           tn.suspended
    INTO tok
    FROM tokens t JOIN users u ON u.name = t.user_name
         LEFT JOIN tenants tn ON tn.name = u.tenant
    WHERE t.token_hash = hash
      AND t.revoked_at IS NULL
      AND (t.expires_at IS NULL OR t.expires_at > now());

    IF NOT FOUND THEN
        RETURN QUERY SELECT 401, NULL::text, NULL::text,
                            'missing or invalid bearer token', NULL::text;
        RETURN;
    END IF;

    IF tok.user_tenant IS NULL THEN
        RETURN QUERY SELECT 403, NULL::text, NULL::text,
            'the kube proxy serves tenant users; admins use the cluster''s own credentials',
            NULL::text;
        RETURN;
    END IF;

    IF tok.kube_cluster IS NOT NULL AND tok.kube_cluster <> cluster_name THEN
        RETURN QUERY SELECT 403, tok.user_tenant, NULL::text,
            'this token belongs to a kubeconfig of another cluster', NULL::text;
        RETURN;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM desired_state d
                   WHERE d.cluster = cluster_name AND d.kind = 'Tenant'
                     AND d.name = tok.user_tenant AND NOT d.deleted)
    THEN
        RETURN QUERY SELECT 404, tok.user_tenant, NULL::text,
            'tenant ' || tok.user_tenant || ' is not placed on cluster '
            || cluster_name, NULL::text;
        RETURN;
    END IF;

    IF tok.suspended THEN
        RETURN QUERY SELECT 403, tok.user_tenant, NULL::text,
            'tenant ' || tok.user_tenant || ' is suspended', NULL::text;
        RETURN;
    END IF;

    -- a kubeconfig's role, never above what its user is now
    eff := CASE WHEN tok.user_role = 'readonly' THEN 'readonly'
                ELSE coalesce(tok.kube_role, tok.user_role) END;

    IF tok.last_used_at IS NULL OR tok.last_used_at < now() - interval '1 minute' THEN
        UPDATE tokens SET last_used_at = now() WHERE id = tok.id;
    END IF;

    RETURN QUERY SELECT 200, tok.user_tenant, eff, NULL::text,
        (SELECT r.node_url FROM kube_proxy_routes r
         WHERE r.cluster = cluster_name);
END
$$;

-- A proxy kubeconfig's token for the caller: one per (user, cluster, role),
-- named "kubeconfig-<role>-<cluster>"; asking again rotates it (the older
-- kubeconfig stops working).  Revoked like any token:
-- DELETE /users/{u}/tokens/kubeconfig-<role>-<cluster>.
CREATE FUNCTION api.kube_proxy_token(owner_name text, cluster_name text,
                                     role_name text)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    secret      text := api.new_secret('kn_');
    token_name  text := 'kubeconfig-' || role_name || '-' || cluster_name;
BEGIN
    DELETE FROM tokens WHERE user_name = owner_name AND name = token_name;
    INSERT INTO tokens (user_name, name, token_hash, kube_cluster, kube_role)
    VALUES (owner_name, token_name, api.secret_hash(secret), cluster_name,
            role_name);
    RETURN secret;
END
$$;

-- The stream of a cluster is on this node now (the newest stream wins) ...
CREATE FUNCTION api.kube_proxy_route_set(cluster_name text, url text)
RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, public, pg_temp AS $$
    INSERT INTO kube_proxy_routes AS r (cluster, node_url)
    SELECT cluster_name, url WHERE EXISTS (SELECT 1 FROM clusters c
                                           WHERE c.name = cluster_name)
    ON CONFLICT (cluster) DO UPDATE SET node_url = excluded.node_url,
                                        updated_at = now()
    RETURNING true
$$;

-- ... and no longer (unless a newer stream registered another node).
CREATE FUNCTION api.kube_proxy_route_unset(cluster_name text, url text)
RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, public, pg_temp AS $$
    DELETE FROM kube_proxy_routes r
    WHERE r.cluster = cluster_name AND r.node_url = url
    RETURNING true
$$;
