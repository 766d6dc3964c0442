-- The PostgreSQL half of the REST API (docs/api-design.md): helpers shared by
-- every resource.  sql/migrate applies every file of sql/functions/ on every
-- run, in name order, in one transaction; this one starts by dropping the
-- whole schema so that a renamed or re-typed function never leaves a stale
-- copy behind.  Tables are in "public" (numbered migrations), never in "api".
--
-- Conventions:
--   * an operation is api.<resource>_<verb>(c api.caller, e jsonb) returning
--     api.result; api.call (99_call.sql) dispatches to it;
--   * a refusal is raised with api.fail(), which api.call turns into the
--     answer (and whatever the operation had written is rolled back);
--   * check_* functions return a jsonb array of {field, message} (empty when
--     fine, and empty for an absent value: "required" is check_required's
--     job), so an operation collects every problem before answering 422.

DROP SCHEMA IF EXISTS api CASCADE;
CREATE SCHEMA api;

-- Who is calling, once the envelope is authenticated.
CREATE TYPE api.caller AS (
    principal  text,     -- 'user:<name>', 'bootstrap-admin', null (anonymous)
    user_name  text,     -- null for bootstrap-admin and anonymous
    role       text,     -- 'admin' | 'owner' | 'readonly', null (anonymous)
    tenant     text,     -- null for admins and anonymous
    is_admin   boolean
);

-- What an operation answers; api.call adds principal and tenant.
CREATE TYPE api.result AS (
    status  integer,
    etag    text,
    body    jsonb
);


------------------------------------------------------------------------
-- Names: every syntax rule of the API, in one place.
------------------------------------------------------------------------

CREATE FUNCTION api.pattern(kind text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE kind
        -- RFC 1123 label: plans, clusters, tenants, apps, token names
        WHEN 'dns_label'     THEN '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
        -- RFC 1123 subdomain: label key prefixes
        WHEN 'dns_subdomain' THEN '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'
        -- ingress host names: a subdomain, optionally "*." in front
        WHEN 'hostname'      THEN '^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'
        WHEN 'user_name'     THEN '^[a-z0-9]([a-z0-9._@-]*[a-z0-9])?$'
        -- Kubernetes label value, and the name part of a label key
        WHEN 'label_name'    THEN '^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'
        WHEN 'currency'      THEN '^[A-Z]{3}$'
        -- Kubernetes resource quantity, non-negative
        WHEN 'quantity'      THEN '^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]{1,3})?$'
        WHEN 'rfc3339'       THEN '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$'
        WHEN 'token_hash'    THEN '^[0-9a-f]{64}$'
    END
$$;

-- What to tell the user when a value does not match api.pattern(kind).
CREATE FUNCTION api.pattern_message(kind text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE kind
        WHEN 'dns_label'     THEN 'must consist of lowercase letters, digits and "-", and start and end with a letter or digit'
        WHEN 'dns_subdomain' THEN 'must be a lowercase DNS name'
        WHEN 'hostname'      THEN 'must be a lowercase DNS name, optionally starting with "*."'
        WHEN 'user_name'     THEN 'must consist of lowercase letters, digits, ".", "_", "@" and "-", and start and end with a letter or digit'
        WHEN 'label_name'    THEN 'must consist of letters, digits, "-", "_" and ".", and start and end with a letter or digit'
        WHEN 'currency'      THEN 'must be three uppercase letters (ISO 4217)'
        WHEN 'quantity'      THEN 'must be a non-negative quantity such as "500m", "2", "512Mi" or "10Gi"'
        WHEN 'rfc3339'       THEN 'must be an RFC 3339 timestamp such as "2030-01-31T12:00:00Z"'
        ELSE 'is invalid'
    END
$$;


------------------------------------------------------------------------
-- Results and errors
------------------------------------------------------------------------

-- A successful answer; generation (single objects) becomes the ETag.
CREATE FUNCTION api.ok(status integer, body jsonb, generation bigint DEFAULT NULL)
RETURNS api.result
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT ROW(status,
               CASE WHEN generation IS NOT NULL THEN '"' || generation || '"' END,
               body)::api.result
$$;

-- The one error shape; details only when given (422).
CREATE FUNCTION api.error_body(status integer, code text, message text,
                               details jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object('error',
               jsonb_build_object('status', status, 'code', code, 'message', message)
               || CASE WHEN details IS NOT NULL
                       THEN jsonb_build_object('details', details)
                       ELSE '{}'::jsonb END)
$$;

-- Refuse the request.  The error travels as an exception (SQLSTATE KNAPI,
-- message = the error body) so that api.call rolls back whatever the
-- operation wrote before it noticed, yet still writes the audit row.
CREATE FUNCTION api.fail(status integer, code text, message text,
                         details jsonb DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'KNAPI',
        MESSAGE = api.error_body(status, code, message, details)::text;
END
$$;

CREATE FUNCTION api.fail_not_found(what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM api.fail(404, 'not_found', what || ' not found');
END
$$;

CREATE FUNCTION api.fail_forbidden(message text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM api.fail(403, 'forbidden', message);
END
$$;

-- 422 with every collected problem, or nothing when there is none.
CREATE FUNCTION api.fail_invalid(errors jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF jsonb_array_length(errors) > 0 THEN
        PERFORM api.fail(422, 'invalid_field',
                         CASE WHEN jsonb_array_length(errors) = 1
                              THEN 'the request has an invalid field'
                              ELSE 'the request has ' || jsonb_array_length(errors)
                                   || ' invalid fields' END,
                         errors);
    END IF;
END
$$;

-- Timestamps in answers: RFC 3339, UTC, whole seconds.
CREATE FUNCTION api.ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;


------------------------------------------------------------------------
-- Validation: each check returns a jsonb array of {field, message}
------------------------------------------------------------------------

-- Absent key and JSON null mean the same thing: "not given".
CREATE FUNCTION api.present(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT v IS NOT NULL AND jsonb_typeof(v) <> 'null'
$$;

CREATE FUNCTION api.field_error(field text, message text) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_array(jsonb_build_object('field', field, 'message', message))
$$;

-- JSON path of a member: "labels.foo", but labels["app.kubernetes.io/name"]
-- when the key is not a plain identifier.
CREATE FUNCTION api.field_path(prefix text, key text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE
        WHEN key ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND coalesce(prefix, '') = '' THEN key
        WHEN key ~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN prefix || '.' || key
        ELSE coalesce(prefix, '') || '[' || to_jsonb(key)::text || ']'
    END
$$;

CREATE FUNCTION api.check_required(v jsonb, field text) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN api.present(v) THEN '[]'::jsonb
                ELSE api.field_error(field, 'required') END
$$;

-- Members of obj that are neither writable nor read-only.  Read-only members
-- (generation, status, timestamps...) are ignored, so that what a GET
-- answered can be edited and sent back with PUT.
CREATE FUNCTION api.check_fields(obj jsonb, prefix text, writable text[],
                                 read_only text[] DEFAULT '{}') RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'field', api.field_path(prefix, k),
               'message', 'unknown field') ORDER BY k), '[]')
    FROM jsonb_object_keys(obj) AS k
    WHERE NOT k = ANY (writable) AND NOT k = ANY (read_only)
$$;

-- A string matching api.pattern(kind) of at most max_length characters.
CREATE FUNCTION api.check_string(v jsonb, field text, kind text, max_length integer)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    s text;
BEGIN
    IF NOT api.present(v) THEN
        RETURN '[]';
    END IF;
    IF jsonb_typeof(v) <> 'string' THEN
        RETURN api.field_error(field, 'must be a string');
    END IF;
    s := v #>> '{}';
    IF length(s) > max_length THEN
        RETURN api.field_error(field, 'must be at most ' || max_length || ' characters');
    END IF;
    IF s !~ api.pattern(kind) THEN
        RETURN api.field_error(field, api.pattern_message(kind));
    END IF;
    RETURN '[]';
END
$$;

-- The object's name.  With a path name (PUT, PATCH) the body may repeat it
-- but not change it, and the path name itself must be valid (PUT creates);
-- without one (POST) the body must carry it.
CREATE FUNCTION api.check_name(v jsonb, path_name text, field text, kind text,
                               max_length integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF path_name IS NULL THEN
        RETURN api.check_required(v, field) || api.check_string(v, field, kind, max_length);
    END IF;
    IF api.present(v) AND v IS DISTINCT FROM to_jsonb(path_name) THEN
        RETURN api.field_error(field, 'must match the name in the path');
    END IF;
    RETURN api.check_string(to_jsonb(path_name), field, kind, max_length);
END
$$;

CREATE FUNCTION api.check_int(v jsonb, field text, min_value bigint, max_value bigint)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT api.present(v) THEN
        RETURN '[]';
    END IF;
    IF jsonb_typeof(v) <> 'number' OR v::numeric <> trunc(v::numeric) THEN
        RETURN api.field_error(field, 'must be an integer');
    END IF;
    IF v::numeric < min_value THEN
        RETURN api.field_error(field, 'must be at least ' || min_value);
    END IF;
    IF v::numeric > max_value THEN
        RETURN api.field_error(field, 'must be at most ' || max_value);
    END IF;
    RETURN '[]';
END
$$;

CREATE FUNCTION api.check_bool(v jsonb, field text) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN NOT api.present(v) OR jsonb_typeof(v) = 'boolean' THEN '[]'::jsonb
                ELSE api.field_error(field, 'must be a boolean') END
$$;

-- Kubernetes quantities.  "1", "500m", "2Gi", "1.5", "1e3" ... in base units
-- (cores, bytes); null when not a valid non-negative quantity.
CREATE FUNCTION api.parse_quantity(q text) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    m       text[];
    suffix  text;
BEGIN
    IF q IS NULL OR q !~ api.pattern('quantity') THEN
        RETURN NULL;
    END IF;
    m := regexp_match(q, '^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(.*)$');
    suffix := m[2];
    RETURN m[1]::numeric * CASE
        WHEN suffix = ''   THEN 1
        WHEN suffix = 'n'  THEN 0.000000001
        WHEN suffix = 'u'  THEN 0.000001
        WHEN suffix = 'm'  THEN 0.001
        WHEN suffix = 'k'  THEN 1e3
        WHEN suffix = 'M'  THEN 1e6
        WHEN suffix = 'G'  THEN 1e9
        WHEN suffix = 'T'  THEN 1e12
        WHEN suffix = 'P'  THEN 1e15
        WHEN suffix = 'E'  THEN 1e18
        WHEN suffix = 'Ki' THEN 2::numeric ^ 10
        WHEN suffix = 'Mi' THEN 2::numeric ^ 20
        WHEN suffix = 'Gi' THEN 2::numeric ^ 30
        WHEN suffix = 'Ti' THEN 2::numeric ^ 40
        WHEN suffix = 'Pi' THEN 2::numeric ^ 50
        WHEN suffix = 'Ei' THEN 2::numeric ^ 60
        ELSE 10::numeric ^ substr(suffix, 2)::integer   -- decimal exponent
    END;
END
$$;

-- YAML turns "cpu: 1" into a number: accept numbers, keep them as text.
CREATE FUNCTION api.quantity_text(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN jsonb_typeof(v) IN ('string', 'number') THEN v #>> '{}' END
$$;

-- A quantity in base units, rounded up to the stored unit: scale 1000 for
-- CPU (millicores), 1 for memory and storage (bytes).
CREATE FUNCTION api.quantity_units(q text, scale integer) RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN ceil(api.parse_quantity(q) * scale) <= 9223372036854775807
                THEN ceil(api.parse_quantity(q) * scale)::bigint END
$$;

CREATE FUNCTION api.check_quantity(v jsonb, field text, scale integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT api.present(v) THEN
        RETURN '[]';
    END IF;
    IF api.parse_quantity(api.quantity_text(v)) IS NULL THEN
        RETURN api.field_error(field, api.pattern_message('quantity'));
    END IF;
    IF api.quantity_units(api.quantity_text(v), scale) IS NULL THEN
        RETURN api.field_error(field, 'is too large');
    END IF;
    RETURN '[]';
END
$$;

-- A Kubernetes label key: [prefix/]name, prefix a DNS subdomain (<= 253),
-- name <= 63.  Null when valid, else why not.
CREATE FUNCTION api.label_key_problem(k text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    prefix  text;
    nm      text := k;
BEGIN
    IF position('/' IN k) > 0 THEN
        prefix := split_part(k, '/', 1);
        nm := substr(k, length(prefix) + 2);
        IF prefix = '' OR length(prefix) > 253 OR prefix !~ api.pattern('dns_subdomain') THEN
            RETURN 'invalid label key: the prefix ' || api.pattern_message('dns_subdomain');
        END IF;
    END IF;
    IF nm = '' OR length(nm) > 63 OR nm !~ api.pattern('label_name') THEN
        RETURN 'invalid label key: the name (at most 63 characters) '
               || api.pattern_message('label_name');
    END IF;
    RETURN NULL;
END
$$;

-- Labels and selectors: an object of Kubernetes label keys to label values.
CREATE FUNCTION api.check_label_map(v jsonb, field text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    errors   jsonb := '[]';
    k        text;
    val      jsonb;
    problem  text;
BEGIN
    IF NOT api.present(v) THEN
        RETURN '[]';
    END IF;
    IF jsonb_typeof(v) <> 'object' THEN
        RETURN api.field_error(field, 'must be an object of label keys to string values');
    END IF;
    FOR k, val IN SELECT * FROM jsonb_each(v) ORDER BY 1 LOOP
        problem := api.label_key_problem(k);
        IF problem IS NOT NULL THEN
            errors := errors || api.field_error(api.field_path(field, k), problem);
        END IF;
        IF jsonb_typeof(val) <> 'string' THEN
            errors := errors || api.field_error(api.field_path(field, k), 'must be a string');
        ELSIF length(val #>> '{}') > 63
              OR (val #>> '{}' <> '' AND val #>> '{}' !~ api.pattern('label_name')) THEN
            errors := errors || api.field_error(api.field_path(field, k),
                'invalid label value: at most 63 characters that '
                || api.pattern_message('label_name'));
        END IF;
    END LOOP;
    RETURN errors;
END
$$;

-- A future RFC 3339 timestamp (token expiry).
CREATE FUNCTION api.check_future_timestamp(v jsonb, field text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t  timestamptz;
BEGIN
    IF NOT api.present(v) THEN
        RETURN '[]';
    END IF;
    IF jsonb_typeof(v) <> 'string' OR v #>> '{}' !~ api.pattern('rfc3339') THEN
        RETURN api.field_error(field, api.pattern_message('rfc3339'));
    END IF;
    BEGIN
        t := (v #>> '{}')::timestamptz;
    EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
        RETURN api.field_error(field, api.pattern_message('rfc3339'));
    END;
    IF t <= now() THEN
        RETURN api.field_error(field, 'must be in the future');
    END IF;
    RETURN '[]';
END
$$;


-- Validated values, with the default for "not given".
CREATE FUNCTION api.int_or(v jsonb, default_value bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN api.present(v) THEN v::numeric::bigint ELSE default_value END
$$;

CREATE FUNCTION api.text_or(v jsonb, default_value text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN api.present(v) THEN v #>> '{}' ELSE default_value END
$$;

CREATE FUNCTION api.bool_or(v jsonb, default_value boolean) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN api.present(v) THEN v::boolean ELSE default_value END
$$;

CREATE FUNCTION api.json_or(v jsonb, default_value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN api.present(v) THEN v ELSE default_value END
$$;


------------------------------------------------------------------------
-- Request envelope
------------------------------------------------------------------------

CREATE FUNCTION api.param(e jsonb, key text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT e -> 'params' ->> key
$$;

-- The body of a POST, PUT or PATCH: must be a JSON object.
CREATE FUNCTION api.body_object(e jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT api.present(e -> 'body') THEN
        PERFORM api.fail(422, 'invalid_field', 'a request body is required',
                         api.field_error('', 'required'));
    END IF;
    IF jsonb_typeof(e -> 'body') <> 'object' THEN
        PERFORM api.fail(422, 'invalid_field', 'the request body must be a JSON object',
                         api.field_error('', 'must be an object'));
    END IF;
    RETURN e -> 'body';
END
$$;


------------------------------------------------------------------------
-- Secrets: bearer tokens and join tokens
------------------------------------------------------------------------

-- A new secret: the prefix and 43 characters of base64url (32 random
-- bytes).  Shown once; only api.secret_hash() of it is stored.
CREATE FUNCTION api.new_secret(prefix text) RETURNS text
LANGUAGE sql VOLATILE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT prefix || rtrim(translate(encode(gen_random_bytes(32), 'base64'),
                                     '+/', '-_'), '=')
$$;

-- What nginx computes from a presented secret (the Authorization header):
-- lowercase hex SHA-256 of its bytes.
CREATE FUNCTION api.secret_hash(secret text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT encode(sha256(convert_to(secret, 'UTF8')), 'hex')
$$;


------------------------------------------------------------------------
-- Authentication and roles
------------------------------------------------------------------------

-- The caller, or null when the bearer token is missing, unknown, revoked or
-- expired (or its user is gone).  last_used_at is written at most once a
-- minute per token so that reads stay (nearly) read-only.
CREATE FUNCTION api.authenticate(e jsonb) RETURNS api.caller
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    hash  text := lower(e ->> 'token_hash');
    tok   record;
BEGIN
    IF e -> 'bootstrap_admin' = 'true'::jsonb THEN
        RETURN ROW('bootstrap-admin', NULL, 'admin', NULL, true)::api.caller;
    END IF;
    IF hash IS NULL OR hash !~ api.pattern('token_hash') THEN
        RETURN NULL;
    END IF;
    SELECT t.id, t.last_used_at, u.name, u.role, u.tenant INTO tok
    FROM tokens t JOIN users u ON u.name = t.user_name
    WHERE t.token_hash = hash
      AND t.revoked_at IS NULL
      AND (t.expires_at IS NULL OR t.expires_at > now())
      AND t.kube_cluster IS NULL;    -- proxy kubeconfig tokens: kube proxy only
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF tok.last_used_at IS NULL OR tok.last_used_at < now() - interval '1 minute' THEN
        UPDATE tokens SET last_used_at = now() WHERE id = tok.id;
    END IF;
    RETURN ROW('user:' || tok.name, tok.name, tok.role, tok.tenant,
               tok.role = 'admin')::api.caller;
END
$$;

CREATE FUNCTION api.require_admin(c api.caller) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT c.is_admin THEN
        PERFORM api.fail_forbidden('only admins may do this');
    END IF;
END
$$;

-- A tenant user may not learn whether another tenant exists: anything
-- outside their own tenant is "not found", never "forbidden".
CREATE FUNCTION api.require_tenant_visible(c api.caller, tenant_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT c.is_admin AND c.tenant IS DISTINCT FROM tenant_name THEN
        PERFORM api.fail_not_found('tenant');
    END IF;
END
$$;

-- The tenant of a nested resource (users, apps), checked for the caller:
-- 404 when not visible or missing; for writes (need_owner) 403 for a
-- read-only member and 409 while the tenant is being deleted.  Writes lock
-- the tenant row, which serialises writes inside one tenant (desired state,
-- the "last owner" rule).
CREATE FUNCTION api.tenant_scope(c api.caller, tenant_name text, need_owner boolean)
RETURNS tenants
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t  tenants;
BEGIN
    PERFORM api.require_tenant_visible(c, tenant_name);
    IF need_owner THEN
        SELECT * INTO t FROM tenants WHERE name = tenant_name FOR UPDATE;
    ELSE
        SELECT * INTO t FROM tenants WHERE name = tenant_name;
    END IF;
    IF NOT FOUND THEN
        PERFORM api.fail_not_found('tenant');
    END IF;
    IF need_owner AND NOT c.is_admin AND c.role <> 'owner' THEN
        PERFORM api.fail_forbidden('read-only users may not change anything');
    END IF;
    IF need_owner AND t.status = 'deleting' THEN
        PERFORM api.fail(409, 'conflict', 'the tenant is being deleted');
    END IF;
    RETURN t;
END
$$;


------------------------------------------------------------------------
-- Pagination: ?limit= (1..500, default 100), ?continue= (opaque: base64url
-- of the last key of the previous page)
------------------------------------------------------------------------

-- (Usage reads have pages of rows of figures: larger ones.)
CREATE FUNCTION api.page_limit(e jsonb, max_limit integer DEFAULT 500,
                               default_limit integer DEFAULT 100) RETURNS integer
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v  text := e -> 'query' ->> 'limit';
BEGIN
    IF v IS NULL THEN
        RETURN default_limit;
    END IF;
    IF v !~ '^[0-9]{1,9}$' OR v::integer NOT BETWEEN 1 AND max_limit THEN
        PERFORM api.fail(400, 'invalid_query',
                         'limit must be an integer from 1 to ' || max_limit);
    END IF;
    RETURN v::integer;
END
$$;

CREATE FUNCTION api.encode_continue(key text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT rtrim(translate(encode(convert_to(key, 'UTF8'), 'base64'), E'+/\n', '-_'), '=')
$$;

-- What api.encode_continue encoded, or null when v is not such a value.
CREATE FUNCTION api.decode_continue(v text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF length(v) > 400 OR v !~ '^[A-Za-z0-9_-]+$' THEN
        RETURN NULL;
    END IF;
    RETURN convert_from(decode(translate(v, '-_', '+/')
                               || repeat('=', (4 - length(v) % 4) % 4), 'base64'),
                        'UTF8');
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

-- The key after which the page starts (null: from the beginning).
CREATE FUNCTION api.page_after(e jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v    text := e -> 'query' ->> 'continue';
    key  text;
BEGIN
    IF v IS NULL OR v = '' THEN
        RETURN NULL;
    END IF;
    key := api.decode_continue(v);
    IF key IS NULL OR length(key) > 253 OR key !~ '^[!-~]+$' THEN
        PERFORM api.fail(400, 'invalid_query', 'continue is not a value from a previous page');
    END IF;
    RETURN key;
END
$$;

-- items: up to limit + 1 of them in page order; the extra one only says that
-- there is a next page, which starts after the key of the last item shown.
CREATE FUNCTION api.page_result(items jsonb, page_limit integer, key_field text DEFAULT 'name')
RETURNS api.result
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT api.ok(200, CASE
        WHEN jsonb_array_length(items) > page_limit
        THEN jsonb_build_object('items', items - page_limit,
                                'continue', api.encode_continue(items -> (page_limit - 1) ->> key_field))
        ELSE jsonb_build_object('items', items, 'continue', NULL)
    END)
$$;


------------------------------------------------------------------------
-- Writes: If-Match, merge patch, audit
------------------------------------------------------------------------

-- If-Match: absent matches; "*" matches any existing object; "<gen>" (also
-- W/"<gen>", or a comma-separated list of them) must name the current
-- generation.  Nothing matches a missing object.
CREATE FUNCTION api.if_match_ok(header text, generation bigint) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    tag  text;
BEGIN
    IF header IS NULL OR btrim(header) = '' THEN
        RETURN true;
    END IF;
    IF generation IS NULL THEN
        RETURN false;
    END IF;
    FOREACH tag IN ARRAY string_to_array(header, ',') LOOP
        tag := btrim(tag);
        IF tag = '*' OR (tag ~ '^(W/)?"[0-9]{1,18}"$'
                         AND substring(tag FROM '"([0-9]+)"')::bigint = generation) THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;

-- 412 unless If-Match allows the write; generation null = no such object.
-- Callers read the row FOR UPDATE first, so two writers with the same
-- If-Match get one success and one 412.
CREATE FUNCTION api.check_if_match(e jsonb, generation bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT api.if_match_ok(e ->> 'if_match', generation) THEN
        PERFORM api.fail(412, 'precondition_failed',
            CASE WHEN generation IS NULL THEN 'If-Match given but the object does not exist'
                 ELSE 'If-Match does not match the current generation ("' || generation || '")'
            END);
    END IF;
END
$$;

-- RFC 7386 JSON merge patch.
CREATE FUNCTION api.merge_patch(target jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    result  jsonb;
    k       text;
    v       jsonb;
BEGIN
    IF jsonb_typeof(patch) IS DISTINCT FROM 'object' THEN
        RETURN patch;
    END IF;
    result := CASE WHEN jsonb_typeof(target) = 'object' THEN target ELSE '{}' END;
    FOR k, v IN SELECT * FROM jsonb_each(patch) LOOP
        IF jsonb_typeof(v) = 'null' THEN
            result := result - k;
        ELSE
            result := result || jsonb_build_object(k, api.merge_patch(result -> k, v));
        END IF;
    END LOOP;
    RETURN result;
END
$$;

CREATE FUNCTION api.audit(c api.caller, tenant_name text, op text, resource text,
                          status integer) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, public, pg_temp AS $$
    INSERT INTO audit_log (principal, tenant, action, resource, status)
    VALUES (c.principal, tenant_name, op, resource, status)
$$;


------------------------------------------------------------------------
-- Desired state: what each cluster should run (table desired_state)
------------------------------------------------------------------------

-- Clusters a tenant's placement names or selects, whatever its status.  An
-- empty selector selects nothing (not everything, as in Kubernetes): a
-- tenant lands on every cluster only when asked for explicitly.
CREATE FUNCTION api.placed_clusters(t tenants) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(array_agg(cl.name ORDER BY cl.name), '{}')
    FROM clusters cl
    WHERE cl.name IN (SELECT jsonb_array_elements_text(
                                 coalesce(t.placement -> 'clusters', '[]')))
       OR (t.placement -> 'cluster_selector' <> '{}'
           AND cl.labels @> (t.placement -> 'cluster_selector'))
$$;

-- The plan's quotas with the tenant's overrides on top.
CREATE FUNCTION api.effective_quota(t tenants) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object('cpu', p.cpu, 'memory', p.memory, 'storage', p.storage,
                              'pods', p.pods, 'load_balancers', p.load_balancers,
                              'gpus', p.gpus)
           || t.quota_overrides
    FROM plans p
    WHERE p.name = t.plan
$$;

-- What a cluster needs to know about a tenant.
CREATE FUNCTION api.tenant_spec(t tenants) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object('plan', t.plan,
                              'quota', api.effective_quota(t),
                              'labels', t.labels,
                              'suspended', t.suspended,
                              'ingress_hostnames', to_jsonb(t.ingress_hostnames),
                              'cluster_resources', to_jsonb(t.cluster_resources))
$$;

-- The live rows a tenant should have: on every cluster it is placed on, the
-- tenant itself and each of its active apps.  Nothing while it is deleting.
CREATE FUNCTION api.wanted_desired_state(tenant_name text)
RETURNS TABLE (cluster text, kind text, name text, spec jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT pc.cluster, 'Tenant', t.name, api.tenant_spec(t)
    FROM tenants t, unnest(api.placed_clusters(t)) AS pc (cluster)
    WHERE t.name = tenant_name AND t.status = 'active'
    UNION ALL
    SELECT pc.cluster, 'Application', t.name || '/' || a.name, a.document
    FROM tenants t, unnest(api.placed_clusters(t)) AS pc (cluster), applications a
    WHERE t.name = tenant_name AND t.status = 'active'
      AND a.tenant = t.name AND a.status = 'active'
$$;

-- Bring a tenant's desired_state rows in line with its placement, spec and
-- apps: upsert what is wanted (new generation only when something changed),
-- tombstone (deleted = true, new generation) what is no longer wanted.
-- Call it after every change that may affect a tenant; it locks the tenant
-- row so that two syncs of one tenant never interleave.
CREATE FUNCTION api.sync_desired_state(tenant_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM 1 FROM tenants WHERE name = tenant_name FOR UPDATE;

    INSERT INTO desired_state AS d (cluster, kind, name, tenant, generation, spec, deleted)
    SELECT w.cluster, w.kind, w.name, tenant_name,
           nextval('desired_state_generation_seq'), w.spec, false
    FROM api.wanted_desired_state(tenant_name) AS w
    ORDER BY w.cluster, w.kind, w.name
    ON CONFLICT (cluster, kind, name) DO UPDATE
        SET spec = excluded.spec, deleted = false, tenant = excluded.tenant,
            generation = excluded.generation, updated_at = now()
        WHERE d.deleted OR d.spec IS DISTINCT FROM excluded.spec;

    UPDATE desired_state AS d
    SET deleted = true, generation = nextval('desired_state_generation_seq'),
        updated_at = now()
    WHERE d.tenant = tenant_name AND NOT d.deleted
      AND (d.cluster, d.kind, d.name) NOT IN
          (SELECT w.cluster, w.kind, w.name FROM api.wanted_desired_state(tenant_name) AS w);

    -- kubeconfigs only for the clusters the tenant runs on: none once it is
    -- deleting or placed elsewhere (their tokens die with its namespaces)
    DELETE FROM kubeconfigs k
    WHERE k.tenant = tenant_name
      AND k.cluster NOT IN (SELECT w.cluster FROM api.wanted_desired_state(tenant_name) AS w
                            WHERE w.kind = 'Tenant');
END
$$;

-- The desired state of one application on its tenant's clusters: what an
-- application write changes, without revisiting the tenant's other objects
-- (api.sync_desired_state does the whole tenant and grows with its apps).
CREATE FUNCTION api.sync_app_desired_state(t tenants, app_name text)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    object_name  text := t.name || '/' || app_name;
    clusters     text[] := CASE WHEN t.status = 'active'
                                THEN api.placed_clusters(t) ELSE '{}' END;
BEGIN
    INSERT INTO desired_state AS d (cluster, kind, name, tenant, generation, spec, deleted)
    SELECT pc.cluster, 'Application', object_name, t.name,
           nextval('desired_state_generation_seq'), a.document, false
    FROM unnest(clusters) AS pc (cluster), applications a
    WHERE a.tenant = t.name AND a.name = app_name AND a.status = 'active'
    ORDER BY pc.cluster
    ON CONFLICT (cluster, kind, name) DO UPDATE
        SET spec = excluded.spec, deleted = false, tenant = excluded.tenant,
            generation = excluded.generation, updated_at = now()
        WHERE d.deleted OR d.spec IS DISTINCT FROM excluded.spec;

    UPDATE desired_state AS d
    SET deleted = true, generation = nextval('desired_state_generation_seq'),
        updated_at = now()
    WHERE d.kind = 'Application' AND d.name = object_name AND NOT d.deleted
      AND NOT (d.cluster = ANY (clusters) AND EXISTS (
              SELECT 1 FROM applications a
              WHERE a.tenant = t.name AND a.name = app_name
                AND a.status = 'active'));
END
$$;


-- Where one desired_state row stands on its cluster, from the cluster's
-- applied_state row (nulls: none yet): "synced" once the cluster acked the
-- desired generation (or a later one), "error" when its last ack of the
-- desired generation (or a later one) failed, else "pending".
CREATE FUNCTION api.sync_state(desired bigint, applied bigint, ok boolean,
                               error_generation bigint) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN NOT ok AND error_generation >= desired THEN 'error'
                WHEN applied >= desired THEN 'synced'
                ELSE 'pending' END
$$;

-- Where an object stands on each cluster it is placed on (live rows only:
-- a tombstone's cluster is no longer a placement), for the REST views
-- (states of api.sync_state).  Index lookups only: desired_state_object,
-- then applied_state's primary key.
CREATE FUNCTION api.sync_status(object_kind text, object_name text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'cluster', x.cluster, 'state', x.state, 'generation', x.generation,
               'applied_generation', x.applied_generation,
               'error', CASE WHEN x.state = 'error' THEN x.error END)
           ORDER BY x.cluster), '[]')
    FROM (SELECT d.cluster, d.generation, s.generation AS applied_generation, s.error,
                 api.sync_state(d.generation, s.generation, s.ok,
                                s.error_generation) AS state
          FROM desired_state d
          LEFT JOIN applied_state s
                 ON s.cluster = d.cluster AND s.kind = d.kind AND s.name = d.name
          WHERE d.kind = object_kind AND d.name = object_name AND NOT d.deleted) x
$$;

-- Does an object still run (or is about to run) somewhere?  Decides between
-- 202 (delete through tombstones) and 204 (gone at once).
CREATE FUNCTION api.has_live_state(kind text, name text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM desired_state d
                   WHERE d.kind = has_live_state.kind AND d.name = has_live_state.name
                     AND NOT d.deleted)
$$;

-- Remove, for good, the deleting apps and the deleting tenant that no
-- cluster holds any more (no desired_state row of theirs left).
CREATE FUNCTION api.finalize_deletions(tenant_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    DELETE FROM applications a
    WHERE a.tenant = tenant_name AND a.status = 'deleting'
      AND NOT EXISTS (SELECT 1 FROM desired_state d
                      WHERE d.kind = 'Application' AND d.name = tenant_name || '/' || a.name);
    DELETE FROM tenants t
    WHERE t.name = tenant_name AND t.status = 'deleting'
      AND NOT EXISTS (SELECT 1 FROM desired_state d WHERE d.tenant = tenant_name);
END
$$;

-- For the gateway: the cluster has removed an object it was told to delete.
-- Removes the tombstone (only the one of that generation: a newer row means
-- the object came back), then finishes the deletion of a deleting app or
-- tenant that no cluster holds any more.  True when a tombstone went.
CREATE FUNCTION api.ack_deleted(cluster_name text, object_kind text, object_name text,
                                object_generation bigint) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    tenant_name  text;
BEGIN
    SELECT d.tenant INTO tenant_name FROM desired_state d
    WHERE d.cluster = cluster_name AND d.kind = object_kind AND d.name = object_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- tenant first, then desired_state: the order every API write uses
    PERFORM 1 FROM tenants WHERE name = tenant_name FOR UPDATE;
    DELETE FROM desired_state d
    WHERE d.cluster = cluster_name AND d.kind = object_kind AND d.name = object_name
      AND d.deleted AND d.generation = object_generation;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM api.finalize_deletions(tenant_name);
    RETURN true;
END
$$;
