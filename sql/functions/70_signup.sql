-- POST /api/v1/signup (no authentication; nginx only routes it here with
-- "kubenova_signup on"): a tenant on the default plan, placed nowhere, its
-- first owner, and that owner's token "signup", all or nothing.
CREATE FUNCTION api.signup(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    body     jsonb := api.body_object(e);
    created  api.result;
    owner    users;
    token    jsonb;
BEGIN
    PERFORM api.fail_invalid(
        api.check_fields(body, '', ARRAY['tenant', 'user'])
        || api.check_required(body -> 'tenant', 'tenant')
        || api.check_string(body -> 'tenant', 'tenant', 'dns_label', 57)
        || api.check_required(body -> 'user', 'user')
        || api.check_string(body -> 'user', 'user', 'user_name', 63));
    IF EXISTS (SELECT 1 FROM tenants WHERE name = body ->> 'tenant') THEN
        PERFORM api.fail(409, 'already_exists', 'tenant ' || (body ->> 'tenant') || ' already exists');
    END IF;

    created := api.tenant_store(api.tenant_input(jsonb_build_object('name', body -> 'tenant'), NULL),
                               NULL);
    owner := api.user_insert(jsonb_build_object('name', body -> 'user',
                                                'tenant', body -> 'tenant',
                                                'role', 'owner'));
    token := api.new_token(owner.name, 'signup', NULL);
    RETURN api.ok(201, jsonb_build_object('tenant', created.body,
                                          'user', api.user_json(owner),
                                          'token', token -> 'token'));
END
$$;
