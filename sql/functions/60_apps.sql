-- Applications: /api/v1/tenants/{t}/apps.  The body is a KubeVela
-- Application document (JSON, or YAML converted by nginx), stored as given;
-- its metadata.name is the app's name.  Members read, owners and admins
-- write.  Every change re-syncs the tenant's desired state: each cluster the
-- tenant is placed on gets the document as kind "Application", name
-- "<tenant>/<app>".  Every app lives in the tenant's namespace
-- "<tenant>-apps" (api.app_namespace); nothing in it may name another
-- namespace or a cluster outside the tenant's placement (api.validate_app).
-- Read-only views: "clusters" (one entry per cluster: sync state and what
-- its Operator last reported, api.app_clusters), also served alone by
-- GET .../status (api.app_status_json, streamed by nginx with ?watch=1);
-- "sync" and "cluster_status" are the older halves of the same view.

-- The app's latest status from each cluster (index app_status_app).
CREATE FUNCTION api.app_cluster_status(tenant_name text, app_name text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'cluster', s.cluster, 'generation', s.generation, 'phase', s.phase,
               'observed_generation', s.observed_generation,
               'workflow_state', s.workflow_state, 'services', s.services,
               'updated_at', api.ts(s.updated_at))
           ORDER BY s.cluster), '[]')
    FROM app_status s
    WHERE s.tenant = tenant_name AND s.app = app_name
$$;

-- One entry per cluster that holds the app or is to hold it (or, while it
-- is deleting, still has to remove it): "sync" is where the document
-- stands there (api.sync_state; "deleting" until the cluster removed it
-- and acked), then the status the cluster's Operator last reported (nulls
-- before its first report).
CREATE FUNCTION api.app_clusters(a applications) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'cluster', d.cluster,
               'sync', CASE WHEN d.deleted THEN 'deleting'
                            ELSE api.sync_state(d.generation, ap.generation, ap.ok,
                                                ap.error_generation) END,
               'desired_generation', d.generation,
               'applied_generation', ap.generation,
               'error', CASE WHEN NOT ap.ok AND ap.error_generation >= d.generation
                             THEN ap.error END,
               'phase', nullif(s.phase, ''),
               'healthy', CASE WHEN s.cluster IS NOT NULL
                               THEN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(s.services) x
                                                WHERE x -> 'healthy' IS DISTINCT FROM 'true') END,
               'services', s.services,
               'status_generation', s.generation,
               'observed_generation', s.observed_generation,
               'workflow_state', s.workflow_state,
               'status_updated_at', api.ts(s.updated_at))
           ORDER BY d.cluster), '[]')
    FROM desired_state d
    LEFT JOIN applied_state ap
           ON ap.cluster = d.cluster AND ap.kind = d.kind AND ap.name = d.name
    LEFT JOIN app_status s
           ON s.cluster = d.cluster AND s.tenant = a.tenant AND s.app = a.name
    WHERE d.kind = 'Application' AND d.name = a.tenant || '/' || a.name
$$;

-- What GET .../status answers and each server-sent event carries: "state"
-- is "active" or "deleting"; "pending" the clusters where the document is
-- not synced yet (while deleting: that have not removed it yet).
CREATE FUNCTION api.app_status_json(a applications) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'name', a.name,
        'tenant', a.tenant,
        'generation', a.generation,
        'state', a.status,
        'clusters', c.clusters,
        'pending', (SELECT coalesce(jsonb_agg(x -> 'cluster' ORDER BY x ->> 'cluster'), '[]')
                    FROM jsonb_array_elements(c.clusters) x
                    WHERE x ->> 'sync' <> 'synced'))
    FROM (SELECT api.app_clusters(a) AS clusters) c
$$;

CREATE FUNCTION api.app_json(a applications) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT api.app_status_json(a) || jsonb_build_object(
        'status', a.status,
        'document', a.document,
        'sync', api.sync_status('Application', a.tenant || '/' || a.name),
        'cluster_status', api.app_cluster_status(a.tenant, a.name),
        'created_at', api.ts(a.created_at), 'updated_at', api.ts(a.updated_at))
$$;

-- The namespace every app of a tenant is applied into.
CREATE FUNCTION api.app_namespace(tenant_name text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT tenant_name || '-apps'
$$;

-- Every member of a JSON value, nested ones included, with its field path
-- from root ("spec.policies[0].properties").  key is the member's name in
-- its object (null for array elements); depth is bounded (the document is,
-- by kubenova_api_max_body, but nesting costs a row per level).
CREATE FUNCTION api.json_members(doc jsonb, root text)
RETURNS TABLE (path text, key text, value jsonb)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    WITH RECURSIVE m (path, key, value, depth) AS (
        SELECT root, NULL::text, doc, 0
        UNION ALL
        SELECT e.path, e.key, e.value, m.depth + 1
        FROM m, LATERAL (
            SELECT api.field_path(m.path, o.k) AS path, o.k AS key, o.v AS value
            FROM jsonb_each(CASE WHEN jsonb_typeof(m.value) = 'object'
                                 THEN m.value ELSE '{}' END) AS o (k, v)
            UNION ALL
            SELECT m.path || '[' || (a.n - 1) || ']', NULL, a.v
            FROM jsonb_array_elements(CASE WHEN jsonb_typeof(m.value) = 'array'
                                           THEN m.value ELSE '[]' END)
                 WITH ORDINALITY AS a (v, n)
        ) e
        WHERE m.depth < 64
    )
    SELECT m.path, m.key, m.value FROM m WHERE m.depth > 0
$$;

-- Everything an Application document must satisfy to be accepted for a
-- tenant; field names are paths inside the document.  The one place for
-- app rules.  Confinement: the app runs in the tenant's namespace on the
-- tenant's clusters, so
--   * metadata.namespace is "<tenant>-apps" or absent (api.app_normalize
--     sets it);
--   * no member called "namespace" anywhere under spec (topology and
--     override policies, component and trait properties, raw objects of
--     k8s-objects components, workflow steps) names another namespace;
--   * anywhere under spec (policies, workflow steps, component and trait
--     properties), a "cluster" or the entries of a "clusters" list name
--     clusters of the tenant's placement ("local": the cluster the
--     Application is applied to), and a topology policy's
--     clusterLabelSelector (or clusterSelector) selects no other cluster
--     (an empty one selects every cluster).
CREATE FUNCTION api.validate_app(doc jsonb, tenant_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    errors   jsonb := '[]';
    ns       text := api.app_namespace(tenant_name);
    allowed  text[];
    m        record;
    p        record;
    v        jsonb;
    i        bigint;
BEGIN
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' THEN
        RETURN api.field_error('', 'must be an object');
    END IF;

    errors := errors || api.check_required(doc -> 'apiVersion', 'apiVersion');
    IF api.present(doc -> 'apiVersion') AND doc -> 'apiVersion' <> '"core.oam.dev/v1beta1"' THEN
        errors := errors || api.field_error('apiVersion', 'must be "core.oam.dev/v1beta1"');
    END IF;
    errors := errors || api.check_required(doc -> 'kind', 'kind');
    IF api.present(doc -> 'kind') AND doc -> 'kind' <> '"Application"' THEN
        errors := errors || api.field_error('kind', 'must be "Application"');
    END IF;

    IF NOT api.present(doc -> 'metadata') THEN
        errors := errors || api.field_error('metadata.name', 'required');
    ELSIF jsonb_typeof(doc -> 'metadata') <> 'object' THEN
        errors := errors || api.field_error('metadata', 'must be an object');
    ELSE
        errors := errors
            || api.check_required(doc -> 'metadata' -> 'name', 'metadata.name')
            || api.check_string(doc -> 'metadata' -> 'name', 'metadata.name', 'dns_label', 63);
        IF api.present(doc -> 'metadata' -> 'namespace')
           AND doc -> 'metadata' -> 'namespace' IS DISTINCT FROM to_jsonb(ns) THEN
            errors := errors || api.field_error('metadata.namespace',
                'must be "' || ns || '" (the tenant''s namespace) or absent');
        END IF;
    END IF;

    IF NOT api.present(doc -> 'spec') THEN
        RETURN errors;
    ELSIF jsonb_typeof(doc -> 'spec') <> 'object' THEN
        RETURN errors || api.field_error('spec', 'must be an object');
    END IF;
    IF api.present(doc -> 'spec' -> 'policies')
       AND jsonb_typeof(doc -> 'spec' -> 'policies') <> 'array' THEN
        errors := errors || api.field_error('spec.policies', 'must be an array');
    END IF;

    SELECT array_agg(c) || '{local}' INTO allowed
    FROM tenants t, unnest(api.placed_clusters(t)) AS c
    WHERE t.name = tenant_name;

    FOR m IN SELECT * FROM api.json_members(doc -> 'spec', 'spec') LOOP
        IF m.key = 'namespace' AND api.present(m.value)
           AND m.value IS DISTINCT FROM to_jsonb(ns) THEN
            errors := errors || api.field_error(m.path,
                'must be "' || ns || '" (the tenant''s namespace)');
        END IF;
        IF m.key = 'cluster' AND api.present(m.value)
           AND NOT (jsonb_typeof(m.value) = 'string' AND m.value ->> 0 = ANY (allowed)) THEN
            errors := errors || api.field_error(m.path,
                'must name a cluster of the tenant''s placement');
        ELSIF m.key = 'clusters' AND api.present(m.value) THEN
            IF jsonb_typeof(m.value) <> 'array' THEN
                errors := errors || api.field_error(m.path, 'must be an array of cluster names');
                CONTINUE;
            END IF;
            FOR v, i IN SELECT x, n - 1 FROM jsonb_array_elements(m.value)
                                          WITH ORDINALITY AS a (x, n) LOOP
                IF NOT (jsonb_typeof(v) = 'string' AND v #>> '{}' = ANY (allowed)) THEN
                    errors := errors || api.field_error(m.path || '[' || i || ']',
                        'must name a cluster of the tenant''s placement');
                END IF;
            END LOOP;
        END IF;
    END LOOP;

    IF jsonb_typeof(doc -> 'spec' -> 'policies') = 'array' THEN
        FOR p IN SELECT x, n - 1 AS i
                 FROM jsonb_array_elements(doc -> 'spec' -> 'policies')
                      WITH ORDINALITY AS a (x, n) LOOP
            CONTINUE WHEN jsonb_typeof(p.x) <> 'object'
                       OR p.x -> 'type' IS DISTINCT FROM '"topology"'
                       OR jsonb_typeof(p.x -> 'properties') <> 'object';
            FOR m IN SELECT k AS key, p.x -> 'properties' -> k AS value
                     FROM unnest(ARRAY['clusterLabelSelector', 'clusterSelector']) AS k
                     WHERE api.present(p.x -> 'properties' -> k) LOOP
                IF jsonb_typeof(m.value) <> 'object' THEN
                    errors := errors || api.field_error(
                        'spec.policies[' || p.i || '].properties.' || m.key,
                        'must be an object of label keys to values');
                ELSIF EXISTS (SELECT 1 FROM clusters cl
                              WHERE cl.labels @> m.value AND cl.name <> ALL (allowed)) THEN
                    errors := errors || api.field_error(
                        'spec.policies[' || p.i || '].properties.' || m.key,
                        'selects clusters outside the tenant''s placement');
                END IF;
            END LOOP;
        END LOOP;
    END IF;
    RETURN errors;
END
$$;

-- The document as stored: metadata.namespace set to the tenant's (it was
-- absent or already that, see api.validate_app).
CREATE FUNCTION api.app_normalize(doc jsonb, tenant_name text) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_set(doc, '{metadata,namespace}', to_jsonb(api.app_namespace(tenant_name)))
$$;

CREATE FUNCTION api.app_list(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t           tenants := api.tenant_scope(c, api.param(e, 'tenant'), false);
    page_limit  integer := api.page_limit(e);
    after       text := api.page_after(e);
    items       jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(s.j ORDER BY s.k), '[]') INTO items
    FROM (SELECT api.app_json(a) AS j, a.name AS k FROM applications a
          WHERE a.tenant = t.name AND (after IS NULL OR a.name > after)
          ORDER BY a.name LIMIT page_limit + 1) s;
    RETURN api.page_result(items, page_limit);
END
$$;

-- The app a read names (GET .../apps/{name}[/status]): 404 when there is
-- none the caller may see.
CREATE FUNCTION api.app_read(c api.caller, e jsonb) RETURNS applications
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t  tenants := api.tenant_scope(c, api.param(e, 'tenant'), false);
    a  applications;
BEGIN
    SELECT * INTO a FROM applications WHERE tenant = t.name AND name = api.param(e, 'app');
    IF NOT FOUND THEN
        PERFORM api.fail_not_found('application');
    END IF;
    RETURN a;
END
$$;

CREATE FUNCTION api.app_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    a  applications := api.app_read(c, e);
BEGIN
    RETURN api.ok(200, api.app_json(a), a.generation);
END
$$;

-- GET .../apps/{name}/status: the per-cluster view alone (what nginx
-- streams as server-sent events with ?watch=1, asking again on each change).
CREATE FUNCTION api.app_status(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    a  applications := api.app_read(c, e);
BEGIN
    RETURN api.ok(200, api.app_status_json(a), a.generation);
END
$$;

-- Create (cur null) or replace an app with a validated document.
CREATE FUNCTION api.app_store(t tenants, doc jsonb, cur applications) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    a  applications;
BEGIN
    IF cur.name IS NOT NULL THEN
        IF doc = cur.document THEN
            RETURN api.ok(200, api.app_json(cur), cur.generation);
        END IF;
        UPDATE applications SET document = doc, generation = generation + 1, updated_at = now()
        WHERE tenant = t.name AND name = cur.name
        RETURNING * INTO a;
    ELSE
        INSERT INTO applications (tenant, name, document)
        VALUES (t.name, doc -> 'metadata' ->> 'name', doc)
        RETURNING * INTO a;
    END IF;
    PERFORM api.sync_app_desired_state(t, a.name);
    RETURN api.ok(CASE WHEN cur.name IS NOT NULL THEN 200 ELSE 201 END,
                  api.app_json(a), a.generation);
END
$$;

CREATE FUNCTION api.app_create(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t    tenants := api.tenant_scope(c, api.param(e, 'tenant'), true);
    doc  jsonb := api.body_object(e);
    cur  applications;
BEGIN
    PERFORM api.fail_invalid(api.validate_app(doc, t.name));
    doc := api.app_normalize(doc, t.name);
    SELECT * INTO cur FROM applications
    WHERE tenant = t.name AND name = doc -> 'metadata' ->> 'name';
    IF cur.status = 'deleting' THEN
        -- its tombstones still wait for clusters: a new app of that name
        -- would race them (and be deleted by the late acks' cleanup)
        PERFORM api.fail(409, 'conflict',
                         'application ' || cur.name || ' is being deleted; create it again '
                         || 'once it is gone (GET .../status shows the clusters pending)');
    ELSIF FOUND THEN
        PERFORM api.fail(409, 'already_exists',
                         'application ' || cur.name || ' already exists');
    END IF;
    RETURN api.app_store(t, doc, NULL);
END
$$;

CREATE FUNCTION api.app_put(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t         tenants := api.tenant_scope(c, api.param(e, 'tenant'), true);
    app_name  text := api.param(e, 'app');
    cur       applications;
    doc       jsonb;
    errors    jsonb;
BEGIN
    SELECT * INTO cur FROM applications WHERE tenant = t.name AND name = app_name FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    doc := api.body_object(e);
    errors := api.validate_app(doc, t.name);
    IF jsonb_typeof(doc -> 'metadata' -> 'name') = 'string'
       AND doc -> 'metadata' ->> 'name' IS DISTINCT FROM app_name THEN
        errors := errors || api.field_error('metadata.name', 'must match the name in the path');
    END IF;
    PERFORM api.fail_invalid(errors);
    doc := api.app_normalize(doc, t.name);
    IF cur.status = 'deleting' THEN
        PERFORM api.fail(409, 'conflict', 'the application is being deleted');
    END IF;
    RETURN api.app_store(t, doc, cur);
END
$$;

CREATE FUNCTION api.app_delete(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t    tenants := api.tenant_scope(c, api.param(e, 'tenant'), true);
    cur  applications;
BEGIN
    SELECT * INTO cur FROM applications
    WHERE tenant = t.name AND name = api.param(e, 'app') FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.name IS NULL THEN
        PERFORM api.fail_not_found('application');
    END IF;

    IF cur.status = 'deleting' THEN
        RETURN api.ok(202, api.app_json(cur), cur.generation);
    END IF;
    IF NOT api.has_live_state('Application', t.name || '/' || cur.name) THEN
        DELETE FROM applications WHERE tenant = t.name AND name = cur.name;
        RETURN api.ok(204, NULL);
    END IF;

    UPDATE applications SET status = 'deleting', generation = generation + 1, updated_at = now()
    WHERE tenant = t.name AND name = cur.name
    RETURNING * INTO cur;
    PERFORM api.sync_app_desired_state(t, cur.name);
    RETURN api.ok(202, api.app_json(cur), cur.generation);
END
$$;
