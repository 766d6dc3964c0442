-- Plans: /api/v1/plans.  Everybody authenticated reads them; admins write.
-- Exactly one plan is the default (new tenants get it): making a plan the
-- default takes it from the previous one; the default can be neither unset
-- nor deleted directly.  usage_prices are what invoices charge per
-- resource-hour (75_usage.sql), in minor units with up to 6 decimals.

CREATE FUNCTION api.plan_read_only() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT ARRAY['generation', 'created_at', 'updated_at']
$$;

-- The members of usage_prices and their columns, in one place.
CREATE FUNCTION api.plan_price_members() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT ARRAY['cpu_core_hour', 'memory_gib_hour', 'storage_gib_hour',
                 'load_balancer_hour', 'gpu_hour']
$$;

CREATE FUNCTION api.plan_prices_json(p plans) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'cpu_core_hour', trim_scale(p.price_cpu_core_hour),
        'memory_gib_hour', trim_scale(p.price_memory_gib_hour),
        'storage_gib_hour', trim_scale(p.price_storage_gib_hour),
        'load_balancer_hour', trim_scale(p.price_load_balancer_hour),
        'gpu_hour', trim_scale(p.price_gpu_hour))
$$;

-- usage_prices: any of api.plan_price_members(), each a number >= 0 with
-- at most 6 decimals (the columns' scale: nothing is rounded away).
CREATE FUNCTION api.check_plan_prices(v jsonb, field text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    errors  jsonb;
    k       text;
    x       jsonb;
BEGIN
    IF NOT api.present(v) THEN
        RETURN '[]';
    END IF;
    IF jsonb_typeof(v) <> 'object' THEN
        RETURN api.field_error(field, 'must be an object');
    END IF;
    errors := api.check_fields(v, field, api.plan_price_members());
    FOREACH k IN ARRAY api.plan_price_members() LOOP
        x := v -> k;
        CONTINUE WHEN NOT api.present(x);
        IF jsonb_typeof(x) <> 'number' THEN
            errors := errors || api.field_error(field || '.' || k, 'must be a number');
        ELSIF x::numeric < 0 OR x::numeric >= 1e14 OR x::numeric <> round(x::numeric, 6) THEN
            errors := errors || api.field_error(field || '.' || k,
                'must be from 0 to 99999999999999.999999, with at most 6 decimals');
        END IF;
    END LOOP;
    RETURN errors;
END
$$;

-- Validated usage_prices, every member present (0 when not given).
CREATE FUNCTION api.plan_prices_value(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_object_agg(k, trim_scale(coalesce(CASE WHEN jsonb_typeof(v -> k) = 'number'
                                                        THEN (v -> k)::numeric END, 0)))
    FROM unnest(api.plan_price_members()) AS k
$$;

CREATE FUNCTION api.plan_json(p plans) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'name', p.name,
        'cpu', p.cpu, 'memory', p.memory, 'storage', p.storage,
        'pods', p.pods, 'load_balancers', p.load_balancers, 'gpus', p.gpus,
        'price_monthly', p.price_monthly, 'currency', p.currency,
        'usage_prices', api.plan_prices_json(p),
        'default', p.is_default,
        'generation', p.generation,
        'created_at', api.ts(p.created_at), 'updated_at', api.ts(p.updated_at))
$$;

-- A plan body (POST: path_name null), validated; answers the writable part
-- of the representation with defaults filled in, or raises 422.
CREATE FUNCTION api.plan_input(body jsonb, path_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM api.fail_invalid(
        api.check_fields(body, '', ARRAY['name', 'cpu', 'memory', 'storage', 'pods',
                                         'load_balancers', 'gpus', 'price_monthly',
                                         'currency', 'usage_prices', 'default'],
                         api.plan_read_only())
        || api.check_name(body -> 'name', path_name, 'name', 'dns_label', 63)
        || api.check_required(body -> 'cpu', 'cpu')
        || api.check_quantity(body -> 'cpu', 'cpu', 1000)
        || api.check_required(body -> 'memory', 'memory')
        || api.check_quantity(body -> 'memory', 'memory', 1)
        || api.check_required(body -> 'storage', 'storage')
        || api.check_quantity(body -> 'storage', 'storage', 1)
        || api.check_required(body -> 'pods', 'pods')
        || api.check_int(body -> 'pods', 'pods', 0, 2147483647)
        || api.check_int(body -> 'load_balancers', 'load_balancers', 0, 2147483647)
        || api.check_int(body -> 'gpus', 'gpus', 0, 2147483647)
        || api.check_required(body -> 'price_monthly', 'price_monthly')
        || api.check_int(body -> 'price_monthly', 'price_monthly', 0, 1000000000000000)
        || api.check_string(body -> 'currency', 'currency', 'currency', 3)
        || api.check_plan_prices(body -> 'usage_prices', 'usage_prices')
        || api.check_bool(body -> 'default', 'default'));

    RETURN jsonb_build_object(
        'name', coalesce(path_name, body ->> 'name'),
        'cpu', api.quantity_text(body -> 'cpu'),
        'memory', api.quantity_text(body -> 'memory'),
        'storage', api.quantity_text(body -> 'storage'),
        'pods', api.int_or(body -> 'pods', NULL),
        'load_balancers', api.int_or(body -> 'load_balancers', 0),
        'gpus', api.int_or(body -> 'gpus', 0),
        'price_monthly', api.int_or(body -> 'price_monthly', NULL),
        'currency', api.text_or(body -> 'currency', 'EUR'),
        'usage_prices', api.plan_prices_value(body -> 'usage_prices'),
        'default', api.bool_or(body -> 'default', false));
END
$$;

-- Create (cur null) or replace a plan with validated input.  Unchanged
-- input changes nothing (same generation).  Tenants on the plan get their
-- desired state recomputed (their quotas come from it).
CREATE FUNCTION api.plan_store(inp jsonb, cur plans) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    existed      boolean := cur.name IS NOT NULL;
    p            plans;
    tenant_name  text;
BEGIN
    IF existed THEN
        IF inp = api.plan_json(cur) - api.plan_read_only() THEN
            RETURN api.ok(200, api.plan_json(cur), cur.generation);
        END IF;
        IF cur.is_default AND NOT (inp ->> 'default')::boolean THEN
            PERFORM api.fail_invalid(api.field_error('default',
                'the default plan stays the default until another plan is made the default'));
        END IF;
    END IF;

    IF (inp ->> 'default')::boolean THEN
        UPDATE plans
        SET is_default = false, generation = generation + 1, updated_at = now()
        WHERE is_default AND name <> inp ->> 'name';
    END IF;

    IF existed THEN
        UPDATE plans SET
            cpu = inp ->> 'cpu', cpu_millicores = api.quantity_units(inp ->> 'cpu', 1000),
            memory = inp ->> 'memory', memory_bytes = api.quantity_units(inp ->> 'memory', 1),
            storage = inp ->> 'storage', storage_bytes = api.quantity_units(inp ->> 'storage', 1),
            pods = (inp ->> 'pods')::integer,
            load_balancers = (inp ->> 'load_balancers')::integer,
            gpus = (inp ->> 'gpus')::integer,
            price_monthly = (inp ->> 'price_monthly')::bigint,
            currency = inp ->> 'currency',
            price_cpu_core_hour = (inp #>> '{usage_prices,cpu_core_hour}')::numeric,
            price_memory_gib_hour = (inp #>> '{usage_prices,memory_gib_hour}')::numeric,
            price_storage_gib_hour = (inp #>> '{usage_prices,storage_gib_hour}')::numeric,
            price_load_balancer_hour = (inp #>> '{usage_prices,load_balancer_hour}')::numeric,
            price_gpu_hour = (inp #>> '{usage_prices,gpu_hour}')::numeric,
            is_default = (inp ->> 'default')::boolean,
            generation = generation + 1, updated_at = now()
        WHERE name = cur.name
        RETURNING * INTO p;

        FOR tenant_name IN SELECT t.name FROM tenants t WHERE t.plan = p.name ORDER BY t.name LOOP
            PERFORM api.sync_desired_state(tenant_name);
        END LOOP;
    ELSE
        INSERT INTO plans (name, cpu, cpu_millicores, memory, memory_bytes,
                           storage, storage_bytes, pods, load_balancers, gpus,
                           price_monthly, currency, price_cpu_core_hour,
                           price_memory_gib_hour, price_storage_gib_hour,
                           price_load_balancer_hour, price_gpu_hour, is_default)
        VALUES (inp ->> 'name',
                inp ->> 'cpu', api.quantity_units(inp ->> 'cpu', 1000),
                inp ->> 'memory', api.quantity_units(inp ->> 'memory', 1),
                inp ->> 'storage', api.quantity_units(inp ->> 'storage', 1),
                (inp ->> 'pods')::integer, (inp ->> 'load_balancers')::integer,
                (inp ->> 'gpus')::integer, (inp ->> 'price_monthly')::bigint,
                inp ->> 'currency',
                (inp #>> '{usage_prices,cpu_core_hour}')::numeric,
                (inp #>> '{usage_prices,memory_gib_hour}')::numeric,
                (inp #>> '{usage_prices,storage_gib_hour}')::numeric,
                (inp #>> '{usage_prices,load_balancer_hour}')::numeric,
                (inp #>> '{usage_prices,gpu_hour}')::numeric,
                (inp ->> 'default')::boolean)
        RETURNING * INTO p;
    END IF;

    RETURN api.ok(CASE WHEN existed THEN 200 ELSE 201 END, api.plan_json(p), p.generation);
END
$$;

CREATE FUNCTION api.plan_list(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    page_limit  integer := api.page_limit(e);
    after       text := api.page_after(e);
    items       jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(s.j ORDER BY s.k), '[]') INTO items
    FROM (SELECT api.plan_json(p) AS j, p.name AS k FROM plans p
          WHERE after IS NULL OR p.name > after
          ORDER BY p.name LIMIT page_limit + 1) s;
    RETURN api.page_result(items, page_limit);
END
$$;

CREATE FUNCTION api.plan_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    p  plans;
BEGIN
    SELECT * INTO p FROM plans WHERE name = api.param(e, 'plan');
    IF NOT FOUND THEN
        PERFORM api.fail_not_found('plan');
    END IF;
    RETURN api.ok(200, api.plan_json(p), p.generation);
END
$$;

CREATE FUNCTION api.plan_create(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    inp  jsonb;
BEGIN
    PERFORM api.require_admin(c);
    inp := api.plan_input(api.body_object(e), NULL);
    IF EXISTS (SELECT 1 FROM plans WHERE name = inp ->> 'name') THEN
        PERFORM api.fail(409, 'already_exists', 'plan ' || (inp ->> 'name') || ' already exists');
    END IF;
    RETURN api.plan_store(inp, NULL);
END
$$;

CREATE FUNCTION api.plan_put(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    plan_name  text := api.param(e, 'plan');
    cur        plans;
BEGIN
    PERFORM api.require_admin(c);
    SELECT * INTO cur FROM plans WHERE name = plan_name FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    RETURN api.plan_store(api.plan_input(api.body_object(e), plan_name), cur);
END
$$;

CREATE FUNCTION api.plan_patch(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    plan_name  text := api.param(e, 'plan');
    cur        plans;
BEGIN
    PERFORM api.require_admin(c);
    SELECT * INTO cur FROM plans WHERE name = plan_name FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.name IS NULL THEN
        PERFORM api.fail_not_found('plan');
    END IF;
    RETURN api.plan_store(
        api.plan_input(api.merge_patch(api.plan_json(cur) - api.plan_read_only(),
                                       api.body_object(e)),
                       plan_name),
        cur);
END
$$;

CREATE FUNCTION api.plan_delete(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cur    plans;
    users  bigint;
BEGIN
    PERFORM api.require_admin(c);
    SELECT * INTO cur FROM plans WHERE name = api.param(e, 'plan') FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.name IS NULL THEN
        PERFORM api.fail_not_found('plan');
    END IF;
    IF cur.is_default THEN
        PERFORM api.fail(409, 'conflict',
            'the default plan cannot be deleted; make another plan the default first');
    END IF;
    SELECT count(*) INTO users FROM tenants WHERE plan = cur.name;
    IF users > 0 THEN
        PERFORM api.fail(409, 'conflict',
            'plan ' || cur.name || ' is used by ' || users || ' tenant(s)');
    END IF;
    DELETE FROM plans WHERE name = cur.name;
    RETURN api.ok(204, NULL);
END
$$;
