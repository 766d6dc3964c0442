-- Tenants: /api/v1/tenants.  Admins see and write all of them; a tenant's
-- members see their own (anything else: 404); its owners may PATCH only
-- suspended, labels and ingress_hostnames (not cluster_resources).  Every change re-syncs the
-- tenant's desired state; a tenant placed on clusters is deleted through
-- tombstones (202, status "deleting"), one placed nowhere at once (204).
-- "sync" (read-only) says where the tenant stands on each of its clusters.

CREATE FUNCTION api.tenant_read_only() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT ARRAY['status', 'sync', 'generation', 'created_at', 'updated_at']
$$;

CREATE FUNCTION api.tenant_json(t tenants) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'name', t.name,
        'plan', t.plan,
        'quota_overrides', t.quota_overrides,
        'labels', t.labels,
        'placement', t.placement,
        'suspended', t.suspended,
        'ingress_hostnames', to_jsonb(t.ingress_hostnames),
        'cluster_resources', to_jsonb(t.cluster_resources),
        'status', t.status,
        'sync', api.sync_status('Tenant', t.name),
        'generation', t.generation,
        'created_at', api.ts(t.created_at), 'updated_at', api.ts(t.updated_at))
$$;

-- quota_overrides: any of the plan's quotas, replacing the plan's value.
CREATE FUNCTION api.check_quota_overrides(v jsonb, field text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT api.present(v) THEN
        RETURN '[]';
    END IF;
    IF jsonb_typeof(v) <> 'object' THEN
        RETURN api.field_error(field, 'must be an object');
    END IF;
    RETURN api.check_fields(v, field, ARRAY['cpu', 'memory', 'storage', 'pods',
                                            'load_balancers', 'gpus'])
        || api.check_quantity(v -> 'cpu', field || '.cpu', 1000)
        || api.check_quantity(v -> 'memory', field || '.memory', 1)
        || api.check_quantity(v -> 'storage', field || '.storage', 1)
        || api.check_int(v -> 'pods', field || '.pods', 0, 2147483647)
        || api.check_int(v -> 'load_balancers', field || '.load_balancers', 0, 2147483647)
        || api.check_int(v -> 'gpus', field || '.gpus', 0, 2147483647);
END
$$;

-- Validated overrides as stored: quantities as strings, nulls dropped.
CREATE FUNCTION api.quota_overrides_value(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(jsonb_object_agg(k, CASE WHEN k IN ('cpu', 'memory', 'storage')
                                             THEN to_jsonb(api.quantity_text(x))
                                             ELSE to_jsonb(x::numeric::bigint) END), '{}')
    FROM jsonb_each(CASE WHEN jsonb_typeof(v) = 'object' THEN v ELSE '{}' END) AS e (k, x)
    WHERE api.present(x)
$$;

-- placement: {"clusters": [names], "cluster_selector": {labels}}, either or
-- both; {} places the tenant nowhere.  Named clusters must exist.
CREATE FUNCTION api.check_placement(v jsonb, field text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    errors  jsonb;
BEGIN
    IF NOT api.present(v) THEN
        RETURN '[]';
    END IF;
    IF jsonb_typeof(v) <> 'object' THEN
        RETURN api.field_error(field, 'must be an object');
    END IF;
    errors := api.check_fields(v, field, ARRAY['clusters', 'cluster_selector'])
           || api.check_label_map(v -> 'cluster_selector', field || '.cluster_selector');
    RETURN errors || api.check_string_set(v -> 'clusters', field || '.clusters',
                                          'cluster names', 'cluster');
END
$$;

CREATE FUNCTION api.placement_value(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'object' THEN jsonb_strip_nulls(v) ELSE '{}' END
$$;

-- A set of strings given as an array: each item a string that
-- api.string_item_problem(kind, item) finds nothing wrong with, and
-- none twice.  what names the items ("host names").
CREATE FUNCTION api.check_string_set(v jsonb, field text, what text, kind text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    errors   jsonb := '[]';
    item     jsonb;
    i        bigint;
    problem  text;
BEGIN
    IF NOT api.present(v) THEN
        RETURN '[]';
    END IF;
    IF jsonb_typeof(v) <> 'array' THEN
        RETURN api.field_error(field, 'must be an array of ' || what);
    END IF;
    FOR item, i IN SELECT x, n - 1 FROM jsonb_array_elements(v) WITH ORDINALITY AS a (x, n) LOOP
        IF jsonb_typeof(item) <> 'string' THEN
            problem := 'must be a string';
        ELSE
            problem := api.string_item_problem(kind, item #>> '{}');
        END IF;
        IF problem IS NULL AND EXISTS (SELECT 1 FROM jsonb_array_elements(v)
                                                     WITH ORDINALITY AS b (x, n)
                                       WHERE b.x = item AND b.n - 1 < i) THEN
            problem := 'duplicate';
        END IF;
        IF problem IS NOT NULL THEN
            errors := errors || api.field_error(field || '[' || i || ']', problem);
        END IF;
    END LOOP;
    RETURN errors;
END
$$;

-- cluster_resources: the cluster-scoped lists a tenant may read through
-- the kube proxy (the Operator filters the others to empty lists,
-- docs/adr/0004).  Nodes are never shown: the Operator may not read them.
CREATE FUNCTION api.cluster_resource_names() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT ARRAY['storageclasses', 'ingressclasses', 'priorityclasses', 'runtimeclasses']
$$;

-- What is wrong with one item of a set of strings of a kind, or null:
--   hostname          a DNS name, optionally "*." in front (unique across
--                     tenants is checked when storing: 409, not 422)
--   cluster           the name of an existing cluster
--   cluster_resource  one of api.cluster_resource_names()
CREATE FUNCTION api.string_item_problem(kind text, s text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE kind
        WHEN 'hostname' THEN
            CASE WHEN length(s) > 253 OR s ~ '[^.]{64}' OR s !~ api.pattern('hostname')
                 THEN api.pattern_message('hostname')
                      || ' (labels of at most 63 characters, 253 in all)' END
        WHEN 'cluster' THEN
            CASE WHEN NOT EXISTS (SELECT 1 FROM clusters WHERE name = s)
                 THEN 'unknown cluster' END
        WHEN 'cluster_resource' THEN
            CASE WHEN s = 'nodes' THEN 'nodes are never shown to tenants'
                 WHEN NOT s = ANY (api.cluster_resource_names())
                 THEN 'must be one of ' || array_to_string(api.cluster_resource_names(), ', ')
            END
    END
$$;

CREATE FUNCTION api.check_plan_ref(v jsonb, field text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE
        WHEN NOT api.present(v) THEN '[]'::jsonb
        WHEN jsonb_typeof(v) <> 'string' THEN api.field_error(field, 'must be a string')
        WHEN NOT EXISTS (SELECT 1 FROM plans WHERE name = v #>> '{}')
            THEN api.field_error(field, 'unknown plan')
        ELSE '[]'::jsonb
    END
$$;

-- A tenant body (POST: path_name null), validated; answers the writable
-- part of the representation with defaults filled in, or raises 422.
CREATE FUNCTION api.tenant_input(body jsonb, path_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM api.fail_invalid(
        api.check_fields(body, '', ARRAY['name', 'plan', 'quota_overrides', 'labels',
                                         'placement', 'suspended', 'ingress_hostnames',
                                         'cluster_resources'],
                         api.tenant_read_only())
        -- at most 57 characters: "<name>-owner" must still be a label
        || api.check_name(body -> 'name', path_name, 'name', 'dns_label', 57)
        || api.check_plan_ref(body -> 'plan', 'plan')
        || api.check_quota_overrides(body -> 'quota_overrides', 'quota_overrides')
        || api.check_label_map(body -> 'labels', 'labels')
        || api.check_placement(body -> 'placement', 'placement')
        || api.check_bool(body -> 'suspended', 'suspended')
        || api.check_string_set(body -> 'ingress_hostnames', 'ingress_hostnames',
                                'host names', 'hostname')
        || api.check_string_set(body -> 'cluster_resources', 'cluster_resources',
                                'resource names', 'cluster_resource'));

    RETURN jsonb_build_object(
        'name', coalesce(path_name, body ->> 'name'),
        'plan', coalesce(api.text_or(body -> 'plan', NULL),
                         (SELECT p.name FROM plans p WHERE p.is_default)),
        'quota_overrides', api.quota_overrides_value(body -> 'quota_overrides'),
        'labels', api.json_or(body -> 'labels', '{}'),
        'placement', api.placement_value(body -> 'placement'),
        'suspended', api.bool_or(body -> 'suspended', false),
        'ingress_hostnames', api.json_or(body -> 'ingress_hostnames', '[]'),
        'cluster_resources', api.json_or(body -> 'cluster_resources', '[]'));
END
$$;

-- Create (cur null) or replace a tenant with validated input, then re-sync
-- its desired state.  Unchanged input changes nothing.
CREATE FUNCTION api.tenant_store(inp jsonb, cur tenants) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t          tenants;
    hostnames  text[];
    taken      text;
BEGIN
    IF cur.name IS NOT NULL AND inp = api.tenant_json(cur) - api.tenant_read_only() THEN
        RETURN api.ok(200, api.tenant_json(cur), cur.generation);
    END IF;

    hostnames := ARRAY(SELECT x FROM jsonb_array_elements_text(inp -> 'ingress_hostnames')
                                     WITH ORDINALITY AS a (x, n) ORDER BY n);
    SELECT h.hostname INTO taken FROM tenant_hostnames h
    WHERE h.hostname = ANY (hostnames) AND h.tenant <> inp ->> 'name'
    ORDER BY h.hostname LIMIT 1;
    IF FOUND THEN
        PERFORM api.fail(409, 'conflict',
                         'ingress host name ' || taken || ' is used by another tenant');
    END IF;

    IF cur.name IS NOT NULL THEN
        UPDATE tenants SET
            plan = inp ->> 'plan',
            quota_overrides = inp -> 'quota_overrides',
            labels = inp -> 'labels',
            placement = inp -> 'placement',
            suspended = (inp ->> 'suspended')::boolean,
            ingress_hostnames = hostnames,
            cluster_resources = ARRAY(SELECT jsonb_array_elements_text(inp -> 'cluster_resources')),
            generation = generation + 1, updated_at = now()
        WHERE name = cur.name
        RETURNING * INTO t;
    ELSE
        INSERT INTO tenants (name, plan, quota_overrides, labels, placement,
                             suspended, ingress_hostnames, cluster_resources)
        VALUES (inp ->> 'name', inp ->> 'plan', inp -> 'quota_overrides', inp -> 'labels',
                inp -> 'placement', (inp ->> 'suspended')::boolean, hostnames,
                ARRAY(SELECT jsonb_array_elements_text(inp -> 'cluster_resources')))
        RETURNING * INTO t;
    END IF;

    DELETE FROM tenant_hostnames h WHERE h.tenant = t.name AND NOT h.hostname = ANY (hostnames);
    INSERT INTO tenant_hostnames (hostname, tenant)
    SELECT x, t.name FROM unnest(hostnames) AS x
    ON CONFLICT (hostname) DO NOTHING;   -- ours already; another tenant's: checked above

    PERFORM api.sync_desired_state(t.name);
    RETURN api.ok(CASE WHEN cur.name IS NOT NULL THEN 200 ELSE 201 END,
                  api.tenant_json(t), t.generation);
END
$$;

CREATE FUNCTION api.tenant_list(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    page_limit  integer := api.page_limit(e);
    after       text := api.page_after(e);
    items       jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(s.j ORDER BY s.k), '[]') INTO items
    FROM (SELECT api.tenant_json(t) AS j, t.name AS k FROM tenants t
          WHERE (after IS NULL OR t.name > after) AND (c.is_admin OR t.name = c.tenant)
          ORDER BY t.name LIMIT page_limit + 1) s;
    RETURN api.page_result(items, page_limit);
END
$$;

CREATE FUNCTION api.tenant_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t  tenants;
BEGIN
    t := api.tenant_scope(c, api.param(e, 'tenant'), false);
    RETURN api.ok(200, api.tenant_json(t), t.generation);
END
$$;

CREATE FUNCTION api.tenant_create(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    inp  jsonb;
BEGIN
    PERFORM api.require_admin(c);
    inp := api.tenant_input(api.body_object(e), NULL);
    IF EXISTS (SELECT 1 FROM tenants WHERE name = inp ->> 'name') THEN
        PERFORM api.fail(409, 'already_exists', 'tenant ' || (inp ->> 'name') || ' already exists');
    END IF;
    RETURN api.tenant_store(inp, NULL);
END
$$;

CREATE FUNCTION api.tenant_put(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    tenant_name  text := api.param(e, 'tenant');
    cur          tenants;
BEGIN
    PERFORM api.require_tenant_visible(c, tenant_name);
    PERFORM api.require_admin(c);
    SELECT * INTO cur FROM tenants WHERE name = tenant_name FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.status = 'deleting' THEN
        PERFORM api.fail(409, 'conflict', 'the tenant is being deleted');
    END IF;
    RETURN api.tenant_store(api.tenant_input(api.body_object(e), tenant_name), cur);
END
$$;

-- Owners may change their tenant's suspended, labels and ingress_hostnames;
-- plan, quotas and placement are the admins' (they are what is billed and
-- where it runs), and so is cluster_resources (what of the shared cluster a
-- tenant may see is the platform's decision).
CREATE FUNCTION api.tenant_patch(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    tenant_name  text := api.param(e, 'tenant');
    cur          tenants;
    merged       jsonb;
    k            text;
BEGIN
    PERFORM api.require_tenant_visible(c, tenant_name);
    IF NOT c.is_admin AND c.role <> 'owner' THEN
        PERFORM api.fail_forbidden('read-only users may not change anything');
    END IF;
    SELECT * INTO cur FROM tenants WHERE name = tenant_name FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.name IS NULL THEN
        PERFORM api.fail_not_found('tenant');
    END IF;
    IF cur.status = 'deleting' THEN
        PERFORM api.fail(409, 'conflict', 'the tenant is being deleted');
    END IF;

    merged := api.merge_patch(api.tenant_json(cur) - api.tenant_read_only(), api.body_object(e));
    IF NOT c.is_admin THEN
        FOREACH k IN ARRAY ARRAY['plan', 'quota_overrides', 'placement', 'cluster_resources'] LOOP
            IF merged -> k IS DISTINCT FROM api.tenant_json(cur) -> k THEN
                PERFORM api.fail_forbidden(
                    'owners may change only suspended, labels and ingress_hostnames');
            END IF;
        END LOOP;
    END IF;
    RETURN api.tenant_store(api.tenant_input(merged, tenant_name), cur);
END
$$;

CREATE FUNCTION api.tenant_delete(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    tenant_name  text := api.param(e, 'tenant');
    cur          tenants;
BEGIN
    PERFORM api.require_tenant_visible(c, tenant_name);
    PERFORM api.require_admin(c);
    SELECT * INTO cur FROM tenants WHERE name = tenant_name FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.name IS NULL THEN
        PERFORM api.fail_not_found('tenant');
    END IF;

    IF cur.status = 'deleting' THEN
        RETURN api.ok(202, api.tenant_json(cur), cur.generation);
    END IF;
    IF NOT api.has_live_state('Tenant', cur.name) THEN
        DELETE FROM tenants WHERE name = cur.name;   -- users, tokens, apps go with it
        RETURN api.ok(204, NULL);
    END IF;

    UPDATE tenants SET status = 'deleting', generation = generation + 1, updated_at = now()
    WHERE name = cur.name
    RETURNING * INTO cur;
    PERFORM api.sync_desired_state(cur.name);
    RETURN api.ok(202, api.tenant_json(cur), cur.generation);
END
$$;
