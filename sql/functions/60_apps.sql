-- Applications: /api/v1/tenants/{t}/apps.  The body is a KubeVela
-- Application document (JSON, or YAML converted by nginx), stored as given;
-- its metadata.name is the app's name.  Members read, owners and admins
-- write.  Every change re-syncs the tenant's desired state: each cluster the
-- tenant is placed on gets the document as kind "Application", name
-- "<tenant>/<app>".  Read-only views: "sync" (where the document stands on
-- each cluster) and "cluster_status" (what each cluster's Operator last
-- reported about the running app, table app_status).

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

CREATE FUNCTION api.app_json(a applications) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'name', a.name,
        'tenant', a.tenant,
        'generation', a.generation,
        'status', a.status,
        'document', a.document,
        'sync', api.sync_status('Application', a.tenant || '/' || a.name),
        'cluster_status', api.app_cluster_status(a.tenant, a.name),
        'created_at', api.ts(a.created_at), 'updated_at', api.ts(a.updated_at))
$$;

-- Everything an Application document must satisfy to be accepted for a
-- tenant; field names are paths inside the document.  The one place for
-- app rules (namespaces, policies ... come here).
CREATE FUNCTION api.validate_app(doc jsonb, tenant_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    errors  jsonb := '[]';
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
    END IF;
    RETURN errors;
END
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

CREATE FUNCTION api.app_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t  tenants := api.tenant_scope(c, api.param(e, 'tenant'), false);
    a  applications;
BEGIN
    SELECT * INTO a FROM applications WHERE tenant = t.name AND name = api.param(e, 'app');
    IF NOT FOUND THEN
        PERFORM api.fail_not_found('application');
    END IF;
    RETURN api.ok(200, api.app_json(a), a.generation);
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
BEGIN
    PERFORM api.fail_invalid(api.validate_app(doc, t.name));
    IF EXISTS (SELECT 1 FROM applications
               WHERE tenant = t.name AND name = doc -> 'metadata' ->> 'name') THEN
        PERFORM api.fail(409, 'already_exists',
                         'application ' || (doc -> 'metadata' ->> 'name') || ' already exists');
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
