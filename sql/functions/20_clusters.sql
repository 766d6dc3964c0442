-- Clusters: /api/v1/clusters.  Admins see and write all of them; a tenant
-- user sees only the clusters their tenant is placed on (404 for others) and
-- writes none (403, whatever the cluster: that tells nothing about which
-- clusters exist).  Labels drive placement through tenants' selectors, so
-- every label change re-places the tenants that have one.  A cluster's
-- Operator authenticates with the certificate it registered with its join
-- token (25_registration.sql).

CREATE FUNCTION api.cluster_read_only() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    -- reported by the cluster's Operator through the gateway
    SELECT ARRAY['connected', 'last_seen_at', 'connected_at', 'operator_version',
                 'kubernetes_version', 'generation', 'created_at', 'updated_at',
                 -- the registration fields of the creating answer
                 'join_token', 'join_token_expires_at', 'install_url', 'join_command']
           || api.cluster_status_fields()
$$;

-- unavailable_after: api.cluster_unavailable_after() of the request
CREATE FUNCTION api.cluster_json(cl clusters, unavailable_after interval DEFAULT '90 s')
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'name', cl.name,
        'labels', cl.labels,
        'connected', cl.connected,
        'last_seen_at', api.ts(cl.last_seen_at),
        'connected_at', api.ts(cl.connected_at),
        'operator_version', cl.operator_version,
        'kubernetes_version', cl.kubernetes_version,
        'generation', cl.generation,
        'created_at', api.ts(cl.created_at), 'updated_at', api.ts(cl.updated_at))
           || api.cluster_status_json(cl, unavailable_after)
$$;

-- Admins see every cluster; members the ones their tenant is placed on.
CREATE FUNCTION api.cluster_visible(c api.caller, cluster_name text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT c.is_admin
        OR EXISTS (SELECT 1 FROM desired_state d
                   WHERE d.cluster = cluster_name AND d.kind = 'Tenant'
                     AND d.name = c.tenant AND NOT d.deleted)
$$;

CREATE FUNCTION api.cluster_input(body jsonb, path_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM api.fail_invalid(
        api.check_fields(body, '', ARRAY['name', 'labels'], api.cluster_read_only())
        || api.check_name(body -> 'name', path_name, 'name', 'dns_label', 63)
        || api.check_label_map(body -> 'labels', 'labels'));
    RETURN jsonb_build_object('name', coalesce(path_name, body ->> 'name'),
                              'labels', api.json_or(body -> 'labels', '{}'));
END
$$;

-- Re-place every tenant that selects clusters by label.
CREATE FUNCTION api.sync_selector_tenants() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    tenant_name  text;
BEGIN
    FOR tenant_name IN SELECT t.name FROM tenants t
                       WHERE t.placement -> 'cluster_selector' <> '{}'
                       ORDER BY t.name LOOP
        PERFORM api.sync_desired_state(tenant_name);
    END LOOP;
END
$$;

-- Create (cur null) or replace a cluster with validated input.
CREATE FUNCTION api.cluster_store(inp jsonb, cur clusters) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cl      clusters;
BEGIN
    IF cur.name IS NOT NULL THEN
        IF inp = api.cluster_json(cur) - api.cluster_read_only() THEN
            RETURN api.ok(200, api.cluster_json(cur), cur.generation);
        END IF;
        UPDATE clusters
        SET labels = inp -> 'labels', generation = generation + 1, updated_at = now()
        WHERE name = cur.name
        RETURNING * INTO cl;
    ELSE
        INSERT INTO clusters (name, labels)
        VALUES (inp ->> 'name', inp -> 'labels')
        RETURNING * INTO cl;
    END IF;
    PERFORM api.sync_selector_tenants();
    IF cur.name IS NULL THEN
        RETURN api.ok(201, api.cluster_json(cl), cl.generation);
    END IF;
    RETURN api.ok(200, api.cluster_json(cl), cl.generation);
END
$$;

CREATE FUNCTION api.cluster_list(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    page_limit  integer := api.page_limit(e);
    after       text := api.page_after(e);
    items       jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(s.j ORDER BY s.k), '[]') INTO items
    FROM (SELECT api.cluster_json(cl, api.cluster_unavailable_after(e)) AS j, cl.name AS k
          FROM clusters cl
          WHERE (after IS NULL OR cl.name > after) AND api.cluster_visible(c, cl.name)
          ORDER BY cl.name LIMIT page_limit + 1) s;
    RETURN api.page_result(items, page_limit);
END
$$;

CREATE FUNCTION api.cluster_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cl  clusters;
BEGIN
    SELECT * INTO cl FROM clusters WHERE name = api.param(e, 'cluster');
    IF NOT FOUND OR NOT api.cluster_visible(c, cl.name) THEN
        PERFORM api.fail_not_found('cluster');
    END IF;
    RETURN api.ok(200, api.cluster_json(cl, api.cluster_unavailable_after(e)), cl.generation);
END
$$;

CREATE FUNCTION api.cluster_create(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    inp        jsonb;
    ttl        jsonb;
    bootstrap  bytea;
    r          api.result;
BEGIN
    PERFORM api.require_admin(c);
    -- join_token_ttl and the bootstrap kubeconfig (26_bootstrap.sql) are
    -- parameters of the creation, not of the cluster
    ttl := api.body_object(e) -> 'join_token_ttl';
    bootstrap := api.bootstrap_input(api.body_object(e));
    inp := api.cluster_input(api.body_object(e) - 'join_token_ttl' - 'bootstrap_kubeconfig'
                             - 'bootstrap_kubeconfig_sealed', NULL);
    IF EXISTS (SELECT 1 FROM clusters WHERE name = inp ->> 'name') THEN
        PERFORM api.fail(409, 'already_exists', 'cluster ' || (inp ->> 'name') || ' already exists');
    END IF;
    r := api.cluster_store(inp, NULL);
    r.body := r.body || api.join_token_issue(inp ->> 'name', ttl, e)
              || api.bootstrap_store(inp ->> 'name', bootstrap);
    RETURN r;
END
$$;

CREATE FUNCTION api.cluster_put(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cluster_name  text := api.param(e, 'cluster');
    cur           clusters;
    r             api.result;
BEGIN
    PERFORM api.require_admin(c);
    SELECT * INTO cur FROM clusters WHERE name = cluster_name FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    r := api.cluster_store(api.cluster_input(api.body_object(e), cluster_name), cur);
    IF cur.name IS NULL THEN   -- created: its join token, as for POST
        r.body := r.body || api.join_token_issue(cluster_name, NULL, e);
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION api.cluster_patch(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cluster_name  text := api.param(e, 'cluster');
    cur           clusters;
BEGIN
    PERFORM api.require_admin(c);
    SELECT * INTO cur FROM clusters WHERE name = cluster_name FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.name IS NULL THEN
        PERFORM api.fail_not_found('cluster');
    END IF;
    RETURN api.cluster_store(
        api.cluster_input(api.merge_patch(api.cluster_json(cur) - api.cluster_read_only(),
                                          api.body_object(e)),
                          cluster_name),
        cur);
END
$$;

-- A deleted cluster takes its desired_state rows with it (foreign key):
-- there is nobody left to acknowledge tombstones.  Tenants that named it in
-- placement.clusters lose that entry (a new generation: their document
-- changed); tenants and apps that were only waiting for this cluster to
-- acknowledge their deletion are removed for good.  The cluster's stream
-- ends: another cluster created under the name later is not this one.
CREATE FUNCTION api.cluster_delete(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cur          clusters;
    affected     text[];
    tenant_name  text;
BEGIN
    PERFORM api.require_admin(c);
    SELECT * INTO cur FROM clusters WHERE name = api.param(e, 'cluster') FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.name IS NULL THEN
        PERFORM api.fail_not_found('cluster');
    END IF;

    SELECT coalesce(array_agg(DISTINCT x.tenant ORDER BY x.tenant), '{}') INTO affected
    FROM (SELECT d.tenant FROM desired_state d WHERE d.cluster = cur.name
          UNION
          SELECT t.name FROM tenants t WHERE t.placement -> 'clusters' ? cur.name) x;
    PERFORM 1 FROM tenants t WHERE t.name = ANY (affected) ORDER BY t.name FOR UPDATE;

    UPDATE tenants t
    SET placement = jsonb_set(t.placement, '{clusters}',
            (SELECT coalesce(jsonb_agg(x.v ORDER BY x.i), '[]')
             FROM jsonb_array_elements(t.placement -> 'clusters') WITH ORDINALITY AS x (v, i)
             WHERE x.v <> to_jsonb(cur.name))),
        generation = generation + 1, updated_at = now()
    WHERE t.placement -> 'clusters' ? cur.name;

    DELETE FROM clusters WHERE name = cur.name;
    -- its Operator's certificates stop working at the next connect
    UPDATE cluster_certificates SET revoked_at = now()
    WHERE cluster = cur.name AND revoked_at IS NULL;
    PERFORM pg_notify('kubenova_stream', cur.name || E'\t');

    FOREACH tenant_name IN ARRAY affected LOOP
        PERFORM api.sync_desired_state(tenant_name);
        PERFORM api.finalize_deletions(tenant_name);
    END LOOP;
    RETURN api.ok(204, NULL);
END
$$;
