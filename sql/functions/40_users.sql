-- Users: /api/v1/tenants/{t}/users (role owner or readonly) and
-- /api/v1/admins (role admin, no tenant).  Names are unique across the
-- whole installation.  Deleting a user deletes its tokens with it.

CREATE FUNCTION api.user_read_only() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT ARRAY['generation', 'created_at', 'updated_at']
$$;

CREATE FUNCTION api.user_json(u users) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'name', u.name,
        'tenant', u.tenant,
        'role', u.role,
        'generation', u.generation,
        'created_at', api.ts(u.created_at), 'updated_at', api.ts(u.updated_at))
$$;

-- A user body (POST: path_name null) for tenant tenant_name, or for an
-- admin when tenant_name is null.  Tenant users need a role (owner or
-- readonly); for admins it may be left out.  tenant may be repeated but
-- not changed.  Answers {name, tenant, role} or raises 422.
CREATE FUNCTION api.user_input(body jsonb, path_name text, tenant_name text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    roles   text[] := CASE WHEN tenant_name IS NULL THEN ARRAY['admin']
                           ELSE ARRAY['owner', 'readonly'] END;
    errors  jsonb;
BEGIN
    errors := api.check_fields(body, '', ARRAY['name', 'tenant', 'role'], api.user_read_only())
           || api.check_name(body -> 'name', path_name, 'name', 'user_name', 63);
    IF api.present(body -> 'tenant') AND body -> 'tenant' IS DISTINCT FROM to_jsonb(tenant_name) THEN
        errors := errors || api.field_error('tenant', CASE WHEN tenant_name IS NULL
                                                           THEN 'admins belong to no tenant'
                                                           ELSE 'must match the tenant in the path' END);
    END IF;
    IF tenant_name IS NOT NULL THEN
        errors := errors || api.check_required(body -> 'role', 'role');
    END IF;
    IF api.present(body -> 'role')
       AND (jsonb_typeof(body -> 'role') <> 'string' OR NOT body ->> 'role' = ANY (roles)) THEN
        errors := errors || api.field_error('role', 'must be one of: ' || array_to_string(roles, ', '));
    END IF;
    PERFORM api.fail_invalid(errors);
    RETURN jsonb_build_object('name', coalesce(path_name, body ->> 'name'),
                              'tenant', tenant_name,
                              'role', coalesce(body ->> 'role', 'admin'));
END
$$;

-- An owner may not leave their tenant without an owner (deleting or
-- demoting the last one): nobody in the tenant could manage it any more.
-- Admins may.  The caller holds the tenant row lock (api.tenant_scope), so
-- two owners cannot demote each other at once.
CREATE FUNCTION api.check_last_owner(c api.caller, u users, new_role text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT c.is_admin AND u.role = 'owner' AND new_role IS DISTINCT FROM 'owner'
       AND NOT EXISTS (SELECT 1 FROM users o
                       WHERE o.tenant = u.tenant AND o.role = 'owner' AND o.name <> u.name) THEN
        PERFORM api.fail(409, 'conflict', 'a tenant must keep at least one owner');
    END IF;
END
$$;

CREATE FUNCTION api.user_insert(inp jsonb) RETURNS users
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    u  users;
BEGIN
    IF EXISTS (SELECT 1 FROM users WHERE name = inp ->> 'name') THEN
        PERFORM api.fail(409, 'already_exists', 'user ' || (inp ->> 'name') || ' already exists');
    END IF;
    INSERT INTO users (name, tenant, role)
    VALUES (inp ->> 'name', inp ->> 'tenant', inp ->> 'role')
    RETURNING * INTO u;
    RETURN u;
END
$$;

-- One page of users: of a tenant, or the admins (tenant_name null).
CREATE FUNCTION api.user_page(e jsonb, tenant_name text) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    page_limit  integer := api.page_limit(e);
    after       text := api.page_after(e);
    items       jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(s.j ORDER BY s.k), '[]') INTO items
    FROM (SELECT api.user_json(u) AS j, u.name AS k FROM users u
          WHERE (after IS NULL OR u.name > after)
            AND CASE WHEN tenant_name IS NULL THEN u.role = 'admin'
                     ELSE u.tenant = tenant_name END
          ORDER BY u.name LIMIT page_limit + 1) s;
    RETURN api.page_result(items, page_limit);
END
$$;

CREATE FUNCTION api.user_list(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN api.user_page(e, (api.tenant_scope(c, api.param(e, 'tenant'), false)).name);
END
$$;

CREATE FUNCTION api.user_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t  tenants := api.tenant_scope(c, api.param(e, 'tenant'), false);
    u  users;
BEGIN
    SELECT * INTO u FROM users WHERE tenant = t.name AND name = api.param(e, 'user');
    IF NOT FOUND THEN
        PERFORM api.fail_not_found('user');
    END IF;
    RETURN api.ok(200, api.user_json(u), u.generation);
END
$$;

CREATE FUNCTION api.user_create(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t  tenants := api.tenant_scope(c, api.param(e, 'tenant'), true);
    u  users;
BEGIN
    u := api.user_insert(api.user_input(api.body_object(e), NULL, t.name));
    RETURN api.ok(201, api.user_json(u), u.generation);
END
$$;

CREATE FUNCTION api.user_patch(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t    tenants := api.tenant_scope(c, api.param(e, 'tenant'), true);
    cur  users;
    inp  jsonb;
BEGIN
    SELECT * INTO cur FROM users WHERE tenant = t.name AND name = api.param(e, 'user') FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.name IS NULL THEN
        PERFORM api.fail_not_found('user');
    END IF;
    inp := api.user_input(api.merge_patch(api.user_json(cur) - api.user_read_only(),
                                          api.body_object(e)),
                          cur.name, t.name);
    IF inp = api.user_json(cur) - api.user_read_only() THEN
        RETURN api.ok(200, api.user_json(cur), cur.generation);
    END IF;
    PERFORM api.check_last_owner(c, cur, inp ->> 'role');
    UPDATE users SET role = inp ->> 'role', generation = generation + 1, updated_at = now()
    WHERE name = cur.name
    RETURNING * INTO cur;
    RETURN api.ok(200, api.user_json(cur), cur.generation);
END
$$;

CREATE FUNCTION api.user_delete(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t    tenants := api.tenant_scope(c, api.param(e, 'tenant'), true);
    cur  users;
BEGIN
    SELECT * INTO cur FROM users WHERE tenant = t.name AND name = api.param(e, 'user') FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.name IS NULL THEN
        PERFORM api.fail_not_found('user');
    END IF;
    PERFORM api.check_last_owner(c, cur, NULL);
    DELETE FROM users WHERE name = cur.name;   -- its tokens go with it
    RETURN api.ok(204, NULL);
END
$$;

CREATE FUNCTION api.admin_list(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM api.require_admin(c);
    RETURN api.user_page(e, NULL);
END
$$;

CREATE FUNCTION api.admin_create(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    u  users;
BEGIN
    PERFORM api.require_admin(c);
    u := api.user_insert(api.user_input(api.body_object(e), NULL, NULL));
    RETURN api.ok(201, api.user_json(u), u.generation);
END
$$;

CREATE FUNCTION api.admin_delete(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cur  users;
BEGIN
    PERFORM api.require_admin(c);
    SELECT * INTO cur FROM users WHERE name = api.param(e, 'user') AND role = 'admin' FOR UPDATE;
    PERFORM api.check_if_match(e, cur.generation);
    IF cur.name IS NULL THEN
        PERFORM api.fail_not_found('admin');
    END IF;
    DELETE FROM users WHERE name = cur.name;
    RETURN api.ok(204, NULL);
END
$$;

-- GET /whoami: who the bearer token says the caller is.
CREATE FUNCTION api.whoami(c api.caller, e jsonb) RETURNS api.result
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT api.ok(200, jsonb_build_object('principal', c.principal, 'user', c.user_name,
                                          'role', c.role, 'tenant', c.tenant))
$$;
