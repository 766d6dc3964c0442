-- A cluster's configuration (its NovaClusterConfig) and health, for
-- /api/v1/clusters (20_clusters.sql shows both in every cluster answer).
--
-- PUT /clusters/{cluster}/config replaces the configuration: which
-- components the Operator installs from the bundles it ships, at which
-- version, and cluster-wide defaults.  The normalised document (every
-- component present, versions filled in) is stored in clusters.config and
-- placed on the cluster as desired_state kind "ClusterConfig", name the
-- cluster's own, with the usual generation and ack.  The Operator reports
-- per-component status (ComponentStatus); gateway.components keeps the
-- newest.
--
-- Health: a cluster is "connected" while its stream is up and the gateway
-- heard from it within the silence nginx allows
-- (kubenova_cluster_unavailable_after, sent in the envelope); past it the
-- cluster is "unavailable" whatever the connected flag says (a worker
-- killed with SIGKILL never wrote its disconnect).

-- The versions of each component whose bundle the Operator ships
-- (operator/bundles/<component>/<version>/), oldest first: a version not
-- listed is refused with 422.  t/075 checks that the list and the bundles
-- agree.
CREATE FUNCTION api.component_versions() RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT '{"capsule": ["0.3.3"],
             "capsule-proxy": ["0.4.6"],
             "kubevela": ["1.9.11"]}'::jsonb
$$;

-- The silence after which a cluster is unavailable: the envelope's
-- cluster_unavailable_after_ms (nginx's directive), 90 s when absent.
CREATE FUNCTION api.cluster_unavailable_after(e jsonb) RETURNS interval
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN jsonb_typeof(e -> 'cluster_unavailable_after_ms') = 'number'
                THEN (e ->> 'cluster_unavailable_after_ms')::numeric * interval '1 ms'
                ELSE interval '90 s' END
$$;

-- "pending" (never connected), "connected", "disconnected" (its stream
-- ended, recently), "unavailable" (silent longer than unavailable_after).
CREATE FUNCTION api.cluster_state(cl clusters, unavailable_after interval) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE
        WHEN cl.last_seen_at IS NULL THEN 'pending'
        WHEN cl.last_seen_at < now() - unavailable_after THEN 'unavailable'
        WHEN cl.connected THEN 'connected'
        ELSE 'disconnected'
    END
$$;

-- The health, configuration and components of a cluster, as its answers
-- show them (read-only: api.cluster_config_read_only()).
CREATE FUNCTION api.cluster_status_json(cl clusters, unavailable_after interval)
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'state', api.cluster_state(cl, unavailable_after),
        'connected', api.cluster_state(cl, unavailable_after) = 'connected',
        'last_heartbeat_at', api.ts(cl.last_seen_at),
        'config', cl.config,
        'config_sync', (SELECT s -> 0 FROM api.sync_status('ClusterConfig', cl.name) AS s),
        'components', (SELECT jsonb_build_object(
                                  'config_generation', cc.config_generation,
                                  'reported_at', api.ts(cc.reported_at),
                                  'items', cc.components)
                       FROM cluster_components cc WHERE cc.cluster = cl.name))
$$;

CREATE FUNCTION api.cluster_status_fields() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT ARRAY['state', 'last_heartbeat_at', 'config', 'config_sync', 'components']
$$;

-- One component's entry of a config: {enabled, version}.
CREATE FUNCTION api.check_component(v jsonb, field text, versions jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    errors  jsonb;
BEGIN
    IF jsonb_typeof(v) <> 'object' THEN
        RETURN api.field_error(field, 'must be an object {enabled, version}');
    END IF;
    errors := api.check_fields(v, field, ARRAY['enabled', 'version'])
              || api.check_required(v -> 'enabled', field || '.enabled')
              || api.check_bool(v -> 'enabled', field || '.enabled');
    IF api.present(v -> 'version') THEN
        IF jsonb_typeof(v -> 'version') <> 'string' THEN
            errors := errors || api.field_error(field || '.version', 'must be a string');
        ELSIF NOT versions ? (v ->> 'version') THEN
            errors := errors || api.field_error(field || '.version',
                'version ' || (v ->> 'version') || ' is not shipped by the Operator; '
                || 'shipped: ' || array_to_string(ARRAY(
                       SELECT jsonb_array_elements_text(versions)), ', '));
        END IF;
    END IF;
    RETURN errors;
END
$$;

-- A config body, validated (422 naming every bad field) and normalised.
CREATE FUNCTION api.cluster_config_input(body jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    known       jsonb := api.component_versions();
    components  jsonb := api.json_or(body -> 'components', '{}');
    defaults    jsonb := api.json_or(body -> 'defaults', '{}');
    errors      jsonb;
    k           text;
    v           jsonb;
    out         jsonb := '{}';
BEGIN
    errors := api.check_fields(body, '', ARRAY['components', 'defaults'],
                               ARRAY['generation', 'sync']);
    IF jsonb_typeof(components) <> 'object' THEN
        errors := errors || api.field_error('components',
            'must be an object of component names to {enabled, version}');
    ELSE
        FOR k, v IN SELECT * FROM jsonb_each(components) ORDER BY 1 LOOP
            IF NOT known ? k THEN
                errors := errors || api.field_error(api.field_path('components', k),
                    'unknown component; known: ' || array_to_string(ARRAY(
                        SELECT jsonb_object_keys(known) ORDER BY 1), ', '));
            ELSE
                errors := errors || api.check_component(v, api.field_path('components', k),
                                                        known -> k);
            END IF;
        END LOOP;
    END IF;
    IF jsonb_typeof(defaults) <> 'object' THEN
        errors := errors || api.field_error('defaults', 'must be an object {labels}');
    ELSE
        errors := errors || api.check_fields(defaults, 'defaults', ARRAY['labels'])
                         || api.check_label_map(defaults -> 'labels', 'defaults.labels');
    END IF;
    PERFORM api.fail_invalid(errors);

    -- every component, disabled unless asked for; the newest version
    -- shipped unless one is named
    FOR k IN SELECT jsonb_object_keys(known) ORDER BY 1 LOOP
        v := components -> k;
        out := out || jsonb_build_object(k, jsonb_build_object(
            'enabled', coalesce((v ->> 'enabled')::boolean, false),
            'version', coalesce(v ->> 'version', known -> k ->> -1)));
    END LOOP;
    RETURN jsonb_build_object('components', out,
                              'defaults', jsonb_build_object(
                                  'labels', api.json_or(defaults -> 'labels', '{}')));
END
$$;

CREATE FUNCTION api.cluster_config_json(cl clusters) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(cl.config, '{}')
           || jsonb_build_object(
                  'generation', (SELECT d.generation FROM desired_state d
                                 WHERE d.cluster = cl.name AND d.kind = 'ClusterConfig'
                                   AND d.name = cl.name),
                  'sync', (SELECT s -> 0 FROM api.sync_status('ClusterConfig', cl.name) AS s))
$$;

-- GET /clusters/{cluster}/config (admins)
CREATE FUNCTION api.cluster_config_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cl  clusters;
BEGIN
    PERFORM api.require_admin(c);
    SELECT * INTO cl FROM clusters WHERE name = api.param(e, 'cluster');
    IF NOT FOUND THEN
        PERFORM api.fail_not_found('cluster');
    END IF;
    RETURN api.ok(200, api.cluster_config_json(cl));
END
$$;

-- PUT /clusters/{cluster}/config (admins): the same config again changes
-- nothing (no new generation, nothing sent to the cluster).
CREATE FUNCTION api.cluster_config_put(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cl   clusters;
    cfg  jsonb;
BEGIN
    PERFORM api.require_admin(c);
    SELECT * INTO cl FROM clusters WHERE name = api.param(e, 'cluster') FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM api.fail_not_found('cluster');
    END IF;
    cfg := api.cluster_config_input(api.body_object(e));

    UPDATE clusters SET config = cfg WHERE name = cl.name RETURNING * INTO cl;
    INSERT INTO desired_state AS d (cluster, kind, name, tenant, generation, spec, deleted)
    VALUES (cl.name, 'ClusterConfig', cl.name, '', nextval('desired_state_generation_seq'),
            cfg, false)
    ON CONFLICT (cluster, kind, name) DO UPDATE
        SET spec = excluded.spec, deleted = false, generation = excluded.generation,
            updated_at = now()
        WHERE d.deleted OR d.spec IS DISTINCT FROM excluded.spec;
    RETURN api.ok(200, api.cluster_config_json(cl));
END
$$;
