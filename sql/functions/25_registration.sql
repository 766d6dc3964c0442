-- Cluster registration (issue 6): join tokens and the certificates of
-- Operators.
--
-- POST /clusters answers a join token (shown once, stored as its SHA-256,
-- expiring, single use) with the install URL built from the Manager's
-- public URL (nginx puts kubenova_public_url and kubenova_join_token_ttl in
-- the envelope as "registration").  POST /clusters/{c}/join-token issues a
-- fresh one; the cluster's unused older ones stop working.
--
-- GET /clusters/{c}/install.yaml?token= (cluster.install) and POST
-- /clusters/{c}/register (cluster.register) carry no bearer token: the join
-- token authorizes them.  nginx parses the CSR and checks its subject names
-- the cluster before asking (a malformed CSR is 422, another cluster's 403);
-- it draws the serial and expiry of the certificate it will sign and puts
-- them in the envelope as "certificate".  The database checks the token,
-- consumes it and records the serial, all or nothing; nginx signs only once
-- that committed.

CREATE FUNCTION api.join_token_ttl_default() RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT 86400
$$;

-- A new join token for the cluster: the answer's fields.  Unused tokens of
-- the cluster are dropped; used and expired ones older than a week too.
CREATE FUNCTION api.join_token_issue(cluster_name text, ttl jsonb, e jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    token       text := api.new_secret('knjt_');
    seconds     integer;
    expires     timestamptz;
    public_url  text := rtrim(e -> 'registration' ->> 'public_url', '/');
    install     text;
BEGIN
    PERFORM api.fail_invalid(api.check_int(ttl, 'join_token_ttl', 60, 2592000));
    seconds := coalesce((ttl #>> '{}')::integer,
                        (e -> 'registration' ->> 'join_token_ttl')::integer,
                        api.join_token_ttl_default());
    expires := now() + make_interval(secs => seconds);

    DELETE FROM join_tokens j
    WHERE j.cluster = cluster_name
      AND (j.used_at IS NULL OR j.created_at < now() - interval '7 days');
    INSERT INTO join_tokens (token_hash, cluster, expires_at)
    VALUES (api.secret_hash(token), cluster_name, expires);

    IF public_url IS NOT NULL AND public_url <> '' THEN
        install := public_url || '/api/v1/clusters/' || cluster_name
                   || '/install.yaml?token=' || token;
    END IF;
    RETURN jsonb_build_object(
        'join_token', token,
        'join_token_expires_at', api.ts(expires),
        'install_url', install,
        'join_command', 'kubectl apply -f ''' || install || '''');   -- null without install
END
$$;

-- POST /clusters/{cluster}/join-token (admin): no body; the TTL of
-- kubenova_join_token_ttl.
CREATE FUNCTION api.cluster_join_token(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cl  clusters;
BEGIN
    PERFORM api.require_admin(c);
    SELECT * INTO cl FROM clusters WHERE name = api.param(e, 'cluster') FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM api.fail_not_found('cluster');
    END IF;
    RETURN api.ok(201, jsonb_build_object('cluster', cl.name)
                       || api.join_token_issue(cl.name, NULL, e));
END
$$;

-- The join token presented for a cluster, locked, or a 401 that says
-- what is wrong with it.
CREATE FUNCTION api.join_token_check(cluster_name text, token text) RETURNS join_tokens
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    j  join_tokens;
BEGIN
    IF token IS NOT NULL AND token <> '' THEN
        SELECT * INTO j FROM join_tokens t
        WHERE t.token_hash = api.secret_hash(token) AND t.cluster = cluster_name
        FOR UPDATE;
    END IF;
    IF j.token_hash IS NULL THEN
        PERFORM api.fail(401, 'invalid_join_token', 'unknown join token for this cluster');
    END IF;
    IF j.used_at IS NOT NULL THEN
        PERFORM api.fail(401, 'invalid_join_token',
                         'the join token was already used (at ' || api.ts(j.used_at)
                         || '); issue a new one with POST /api/v1/clusters/'
                         || cluster_name || '/join-token');
    END IF;
    IF j.expires_at <= now() THEN
        PERFORM api.fail(401, 'invalid_join_token',
                         'the join token expired at ' || api.ts(j.expires_at)
                         || '; issue a new one with POST /api/v1/clusters/'
                         || cluster_name || '/join-token');
    END IF;
    RETURN j;
END
$$;

-- GET /clusters/{cluster}/install.yaml?token=: nginx renders the manifest
-- when the token is good (it is not consumed: registration does that).
CREATE FUNCTION api.cluster_install(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    j  join_tokens;
BEGIN
    j := api.join_token_check(api.param(e, 'cluster'), e -> 'query' ->> 'token');
    RETURN api.ok(200, jsonb_build_object('cluster', j.cluster,
                                          'join_token_expires_at', api.ts(j.expires_at)));
END
$$;

-- POST /clusters/{cluster}/register {"join_token", "csr"}: consumes the
-- token and records the certificate nginx is about to sign.
CREATE FUNCTION api.cluster_register(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    body    jsonb := api.body_object(e);
    cert    jsonb := e -> 'certificate';
    j       join_tokens;
    expiry  timestamptz;
BEGIN
    PERFORM api.fail_invalid(
        api.check_fields(body, '', ARRAY['join_token', 'csr'])
        || api.check_required(body -> 'join_token', 'join_token')
        || api.check_required(body -> 'csr', 'csr')
        || CASE WHEN jsonb_typeof(body -> 'join_token') NOT IN ('string', 'null')
                THEN api.field_error('join_token', 'must be a string') ELSE '[]' END
        || CASE WHEN jsonb_typeof(body -> 'csr') NOT IN ('string', 'null')
                THEN api.field_error('csr', 'must be a string') ELSE '[]' END);
    IF cert IS NULL OR cert ->> 'serial' IS NULL
       OR cert ->> 'cn' IS DISTINCT FROM api.param(e, 'cluster') THEN
        RAISE EXCEPTION 'api.cluster_register: nginx did not describe the certificate';
    END IF;

    j := api.join_token_check(api.param(e, 'cluster'), body ->> 'join_token');
    expiry := to_timestamp((cert ->> 'not_after')::bigint);

    UPDATE join_tokens SET used_at = now() WHERE token_hash = j.token_hash;
    INSERT INTO cluster_certificates (serial, cluster, not_after)
    VALUES (cert ->> 'serial', j.cluster, expiry);
    RETURN api.ok(201, jsonb_build_object('cluster', j.cluster,
                                          'serial', cert ->> 'serial',
                                          'not_after', api.ts(expiry)));
END
$$;
