-- Bearer tokens: /api/v1/users/{u}/tokens.  Managed by the user itself, the
-- owners of its tenant and admins; other members of the tenant get 403,
-- everybody else 404.  The secret is shown once, by the POST that makes it;
-- only its SHA-256 is stored.  DELETE revokes (the row stays, revoked).

CREATE FUNCTION api.token_json(tk tokens) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'name', tk.name,
        'user', tk.user_name,
        'expires_at', api.ts(tk.expires_at),
        'created_at', api.ts(tk.created_at),
        'last_used_at', api.ts(tk.last_used_at),
        'revoked', tk.revoked_at IS NOT NULL)
$$;

-- A token that can still authenticate.
CREATE FUNCTION api.token_live(tk tokens) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT tk.revoked_at IS NULL AND (tk.expires_at IS NULL OR tk.expires_at > now())
$$;

-- The user whose tokens the caller wants to see or manage.
CREATE FUNCTION api.token_user(c api.caller, user_name text) RETURNS users
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    u  users;
BEGIN
    SELECT * INTO u FROM users WHERE name = user_name;
    IF FOUND AND (c.is_admin OR c.user_name = u.name) THEN
        RETURN u;
    END IF;
    IF FOUND AND u.tenant = c.tenant THEN
        IF c.role <> 'owner' THEN
            PERFORM api.fail_forbidden(
                'only the user, the owners of its tenant and admins may manage its tokens');
        END IF;
        RETURN u;
    END IF;
    PERFORM api.fail_not_found('user');
END
$$;

-- Make a token: "kn_" and 43 characters of base64url (api.new_secret).
-- A revoked or expired token of the same name is replaced; a live one is a
-- conflict.  Answers the token's representation plus the secret ("token").
CREATE FUNCTION api.new_token(owner_name text, token_name text, expires timestamptz)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    old     tokens;
    secret  text := api.new_secret('kn_');
    tk      tokens;
BEGIN
    SELECT * INTO old FROM tokens WHERE user_name = owner_name AND name = token_name FOR UPDATE;
    IF FOUND AND api.token_live(old) THEN
        PERFORM api.fail(409, 'already_exists', 'token ' || token_name || ' already exists');
    END IF;
    DELETE FROM tokens WHERE id = old.id;
    INSERT INTO tokens (user_name, name, token_hash, expires_at)
    VALUES (owner_name, token_name, api.secret_hash(secret), expires)
    RETURNING * INTO tk;
    RETURN api.token_json(tk) || jsonb_build_object('token', secret);
END
$$;

CREATE FUNCTION api.token_list(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    u           users := api.token_user(c, api.param(e, 'user'));
    page_limit  integer := api.page_limit(e);
    after       text := api.page_after(e);
    items       jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(s.j ORDER BY s.k), '[]') INTO items
    FROM (SELECT api.token_json(tk) AS j, tk.name AS k FROM tokens tk
          WHERE tk.user_name = u.name AND (after IS NULL OR tk.name > after)
          ORDER BY tk.name LIMIT page_limit + 1) s;
    RETURN api.page_result(items, page_limit);
END
$$;

CREATE FUNCTION api.token_create(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    u     users := api.token_user(c, api.param(e, 'user'));
    body  jsonb := api.body_object(e);
BEGIN
    PERFORM api.fail_invalid(
        api.check_fields(body, '', ARRAY['name', 'expires_at'],
                         ARRAY['user', 'created_at', 'last_used_at', 'revoked', 'token'])
        || api.check_name(body -> 'name', NULL, 'name', 'dns_label', 63)
        || api.check_future_timestamp(body -> 'expires_at', 'expires_at'));
    RETURN api.ok(201, api.new_token(u.name, body ->> 'name',
                                     (body ->> 'expires_at')::timestamptz));
END
$$;

CREATE FUNCTION api.token_revoke(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    u  users := api.token_user(c, api.param(e, 'user'));
BEGIN
    UPDATE tokens SET revoked_at = coalesce(revoked_at, now())
    WHERE user_name = u.name AND name = api.param(e, 'token');
    IF NOT FOUND THEN
        PERFORM api.fail_not_found('token');
    END IF;
    RETURN api.ok(204, NULL);
END
$$;
