-- The database side of the Operator gateway (docs/api-design.md, "Operator
-- gateway: the database side").  nginx terminates each cluster's gRPC
-- stream (proto/kubenova.proto) and turns every Operator message into one
-- statement, SELECT * FROM gateway.<function>(...), with text parameters.
-- Like schema "api", this one is dropped and recreated by every run of
-- sql/migrate; it comes after 00_common.sql (it uses api.ack_deleted) and
-- nothing in "api" depends on it.
--
-- Conventions:
--   * answers are rows, never exceptions, for anything the Operator can
--     get wrong: a status column holds the gRPC status code (0 OK,
--     3 INVALID_ARGUMENT, 16 UNAUTHENTICATED) and message says why;
--     functions that validate nothing have no status column.  Where the
--     first column was given to the C side as the answer (ack, usage,
--     app_status), status and message come after it.  Invalid input
--     changes nothing;
--   * an exception means a bug on the calling side (say, no stream id) or
--     a database failure: the C side answers INTERNAL or UNAVAILABLE;
--   * each function's parameters are referred to as <function>.<name>, and
--     #variable_conflict use_column makes any unqualified name a column.
--
-- Lock order, as in schema "api": the clusters row, then tenants (in name
-- order), then desired_state rows.

DROP SCHEMA IF EXISTS gateway CASCADE;
CREATE SCHEMA gateway;


------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------

-- An integer from JSON: a number without fraction, or a string of digits
-- (proto3's JSON mapping writes int64 as a string); null when it is
-- neither or does not fit a bigint.
CREATE FUNCTION gateway.json_int(v jsonb) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    n  numeric;
BEGIN
    IF jsonb_typeof(v) = 'number' THEN
        n := v::numeric;
    ELSIF jsonb_typeof(v) = 'string' AND v #>> '{}' ~ '^-?[0-9]{1,19}$' THEN
        n := (v #>> '{}')::numeric;
    ELSE
        RETURN NULL;
    END IF;
    IF n <> trunc(n) OR n NOT BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
        RETURN NULL;
    END IF;
    RETURN n::bigint;
END
$$;

-- A string of 1 to max_length characters, or null.
CREATE FUNCTION gateway.json_name(v jsonb, max_length integer) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'string'
                     AND length(v #>> '{}') BETWEEN 1 AND max_length
                THEN v #>> '{}' END
$$;

-- An object reference (ObjectRef, Ack): null when fine, else why not.
-- what names it in the message ("applied[3]", "ack").
CREATE FUNCTION gateway.ref_problem(what text, kind text, name text, generation bigint)
RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE
        WHEN coalesce(length(ref_problem.kind), 0) NOT BETWEEN 1 AND 63
            THEN what || ': kind must be a string of 1 to 63 characters'
        WHEN coalesce(length(ref_problem.name), 0) NOT BETWEEN 1 AND 253
            THEN what || ': name must be a string of 1 to 253 characters'
        WHEN ref_problem.generation IS NULL OR ref_problem.generation < 0
            THEN what || ': generation must be a non-negative integer'
    END
$$;

-- The applied list of a Hello, [{"kind", "name", "generation"}, ...]; JSON
-- null counts as empty.  Null when fine, else the first problem.
CREATE FUNCTION gateway.applied_problem(applied jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    item     jsonb;
    i        bigint;
    problem  text;
    dup      record;
BEGIN
    IF applied_problem.applied IS NULL OR jsonb_typeof(applied_problem.applied) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(applied_problem.applied) <> 'array' THEN
        RETURN 'applied must be an array of {kind, name, generation}';
    END IF;
    FOR item, i IN SELECT x, n - 1 FROM jsonb_array_elements(applied_problem.applied)
                                     WITH ORDINALITY AS a (x, n) LOOP
        IF jsonb_typeof(item) <> 'object' THEN
            RETURN 'applied[' || i || ']: must be an object {kind, name, generation}';
        END IF;
        problem := gateway.ref_problem('applied[' || i || ']',
                                       gateway.json_name(item -> 'kind', 63),
                                       gateway.json_name(item -> 'name', 253),
                                       gateway.json_int(item -> 'generation'));
        IF problem IS NOT NULL THEN
            RETURN problem;
        END IF;
    END LOOP;
    SELECT r.kind, r.name INTO dup FROM gateway.applied_refs(applied_problem.applied) r
    GROUP BY r.kind, r.name HAVING count(*) > 1
    ORDER BY r.kind, r.name LIMIT 1;
    IF FOUND THEN
        RETURN 'applied: ' || dup.kind || ' ' || dup.name || ' is listed more than once';
    END IF;
    RETURN NULL;
END
$$;

-- The rows of a valid applied list.
CREATE FUNCTION gateway.applied_refs(applied jsonb)
RETURNS TABLE (kind text, name text, generation bigint)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT x ->> 'kind', x ->> 'name', gateway.json_int(x -> 'generation')
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(applied_refs.applied) = 'array'
                                   THEN applied_refs.applied ELSE '[]' END) AS a (x)
$$;

-- The cluster no longer holds an object: drop what it had reported about it.
CREATE FUNCTION gateway.forget(cluster text, kind text, name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
BEGIN
    DELETE FROM applied_state a
    WHERE a.cluster = forget.cluster AND a.kind = forget.kind AND a.name = forget.name;
    IF forget.kind = 'Application' THEN
        DELETE FROM app_status s
        WHERE s.cluster = forget.cluster
          AND s.tenant = split_part(forget.name, '/', 1)
          AND s.app = substr(forget.name, length(split_part(forget.name, '/', 1)) + 2);
    END IF;
END
$$;


------------------------------------------------------------------------
-- The stream: hello, heartbeat, disconnect
------------------------------------------------------------------------

-- The first message of a stream.  Authenticates the cluster, makes
-- stream_id the cluster's current stream, records what the cluster has
-- applied, and answers the difference (see docs/api-design.md).  The
-- credential is the verified client certificate nginx read (cert_serial,
-- lowercase hex; nginx already checked its subject names this cluster):
-- it must be one the Manager issued to this cluster, not revoked, not
-- expired.
CREATE FUNCTION gateway.credential_ok(cluster text, cert_serial text)
RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM cluster_certificates k
                   WHERE k.serial = lower(cert_serial) AND k.cluster = credential_ok.cluster
                     AND k.revoked_at IS NULL AND k.not_after > now())
$$;

CREATE FUNCTION gateway.hello(cluster text, cert_serial text, operator_version text,
                              kubernetes_version text, applied jsonb, stream_id text)
RETURNS TABLE (status integer, message text, kind text, name text, generation bigint,
               deleted boolean, spec text)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    cl       clusters;
    problem  text;
    t        record;
BEGIN
    IF hello.stream_id IS NULL OR hello.stream_id !~ '^[!-~]{1,128}$' THEN
        RAISE EXCEPTION 'gateway.hello: stream_id must be 1 to 128 printable ASCII characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- one answer for "no such cluster" and "wrong credential": a caller
    -- learns nothing about which clusters exist
    SELECT * INTO cl FROM clusters c WHERE c.name = hello.cluster;
    IF NOT FOUND
       OR NOT gateway.credential_ok(cl.name, hello.cert_serial) THEN
        RETURN QUERY SELECT 16, 'unknown cluster, or its certificate is revoked or expired',
                            NULL::text, NULL::text, NULL::bigint, NULL::boolean, NULL::text;
        RETURN;
    END IF;

    problem := gateway.applied_problem(hello.applied);
    IF problem IS NOT NULL THEN
        RETURN QUERY SELECT 3, problem,
                            NULL::text, NULL::text, NULL::bigint, NULL::boolean, NULL::text;
        RETURN;
    END IF;

    -- the certificate may have been revoked since the check above: recheck on the locked row
    UPDATE clusters c
    SET connected = true, last_seen_at = now(), connected_at = now(),
        operator_version = nullif(left(hello.operator_version, 253), ''),
        kubernetes_version = nullif(left(hello.kubernetes_version, 253), ''),
        stream_id = hello.stream_id
    WHERE c.name = cl.name
      AND gateway.credential_ok(c.name, hello.cert_serial);
    IF NOT FOUND THEN
        RETURN QUERY SELECT 16, 'unknown cluster, or its certificate is revoked or expired',
                            NULL::text, NULL::text, NULL::bigint, NULL::boolean, NULL::text;
        RETURN;
    END IF;
    -- whoever serves an older stream of this cluster closes it
    PERFORM pg_notify('kubenova_stream', cl.name || E'\t' || hello.stream_id);

    DELETE FROM applied_state a WHERE a.cluster = cl.name;
    INSERT INTO applied_state (cluster, kind, name, generation, ok)
    SELECT cl.name, r.kind, r.name, r.generation, true
    FROM gateway.applied_refs(hello.applied) r;

    -- tombstones of objects the cluster does not hold: already done
    FOR t IN SELECT d.kind, d.name, d.generation FROM desired_state d
             WHERE d.cluster = cl.name AND d.deleted
               AND NOT EXISTS (SELECT 1 FROM applied_state a
                               WHERE a.cluster = d.cluster AND a.kind = d.kind
                                 AND a.name = d.name)
             ORDER BY d.tenant, d.generation LOOP   -- tenants locked in name order
        PERFORM api.ack_deleted(cl.name, t.kind, t.name, t.generation);
        PERFORM gateway.forget(cl.name, t.kind, t.name);
    END LOOP;

    RETURN QUERY
    SELECT 0, NULL::text, x.kind, x.name, x.generation, x.deleted, x.spec
    FROM (-- new, or newer than what the cluster applied
          SELECT d.kind, d.name, d.generation, false AS deleted, d.spec::text AS spec
          FROM desired_state d
          LEFT JOIN applied_state a
                 ON a.cluster = d.cluster AND a.kind = d.kind AND a.name = d.name
          WHERE d.cluster = cl.name AND NOT d.deleted
            AND (a.generation IS NULL OR a.generation < d.generation)
          UNION ALL
          -- to be deleted, and the cluster still holds it
          SELECT d.kind, d.name, d.generation, true, NULL
          FROM desired_state d
          JOIN applied_state a
            ON a.cluster = d.cluster AND a.kind = d.kind AND a.name = d.name
          WHERE d.cluster = cl.name AND d.deleted
          UNION ALL
          -- held, but the Manager knows nothing of it on this cluster
          SELECT a.kind, a.name, a.generation, true, NULL
          FROM applied_state a
          WHERE a.cluster = cl.name
            AND NOT EXISTS (SELECT 1 FROM desired_state d
                            WHERE d.cluster = a.cluster AND d.kind = a.kind
                              AND d.name = a.name)) x
    ORDER BY x.generation, x.kind, x.name;

    IF NOT FOUND THEN   -- nothing differs: one row all the same
        RETURN QUERY SELECT 0, NULL::text,
                            NULL::text, NULL::text, NULL::bigint, NULL::boolean, NULL::text;
    END IF;
END
$$;

-- Is stream_id still the cluster's stream?  If so, the cluster was seen now.
CREATE FUNCTION gateway.heartbeat(cluster text, stream_id text)
RETURNS TABLE (current boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
BEGIN
    UPDATE clusters c SET last_seen_at = now()
    WHERE c.name = heartbeat.cluster AND c.stream_id = heartbeat.stream_id;
    RETURN QUERY SELECT FOUND;
END
$$;

-- The stream ended.  Only the current stream disconnects the cluster: an
-- older one that ends late must not undo a newer Hello.
CREATE FUNCTION gateway.disconnect(cluster text, stream_id text)
RETURNS TABLE (done boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
BEGIN
    UPDATE clusters c SET connected = false, stream_id = NULL
    WHERE c.name = disconnect.cluster AND c.stream_id = disconnect.stream_id;
    RETURN QUERY SELECT FOUND;
END
$$;


------------------------------------------------------------------------
-- Desired state out, acks in
------------------------------------------------------------------------

-- The current desired_state row of one object (0 or 1 row): what a
-- "kubenova_desired_state" notification is about.  spec is null for a
-- tombstone (deleted).
CREATE FUNCTION gateway.object(cluster text, kind text, name text)
RETURNS TABLE (generation bigint, deleted boolean, spec text)
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT d.generation, d.deleted, CASE WHEN NOT d.deleted THEN d.spec::text END
    FROM desired_state d
    WHERE d.cluster = object.cluster AND d.kind = object.kind AND d.name = object.name
$$;

-- The cluster applied (ok) or failed to apply (not ok) an object's
-- generation.  Recorded only while stream_id is the cluster's stream: a
-- replaced stream's acks are left to the Hello that replaced it (current
-- false tells the C side to close the stream).  An ok ack of a deletion (a
-- tombstone of that generation or older, or an object the Manager has no
-- row for) finishes it: the tombstone goes (api.ack_deleted), and so does
-- what the cluster had reported about the object.
CREATE FUNCTION gateway.ack(cluster text, stream_id text, kind text, name text,
                            generation bigint, ok boolean, error text)
RETURNS TABLE (current boolean, status integer, message text)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    problem  text;
    d        record;
BEGIN
    -- FOR SHARE: a Hello replacing the stream waits for this ack, or this
    -- ack sees the new stream and records nothing
    PERFORM 1 FROM clusters c
    WHERE c.name = ack.cluster AND c.stream_id = ack.stream_id
    FOR SHARE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, 0, NULL::text;
        RETURN;
    END IF;

    problem := coalesce(gateway.ref_problem('ack', ack.kind, ack.name, ack.generation),
                        CASE WHEN ack.ok IS NULL THEN 'ack: ok must be true or false' END);
    IF problem IS NOT NULL THEN
        RETURN QUERY SELECT true, 3, problem;
        RETURN;
    END IF;

    IF NOT ack.ok THEN
        -- keep the last generation applied; remember the newest failure
        INSERT INTO applied_state AS a (cluster, kind, name, generation, ok, error,
                                        error_generation, acked_at)
        VALUES (ack.cluster, ack.kind, ack.name, NULL, false,
                nullif(left(ack.error, 1000), ''), ack.generation, now())
        ON CONFLICT ON CONSTRAINT applied_state_pkey DO UPDATE
            SET ok = false, error = excluded.error,
                error_generation = excluded.error_generation, acked_at = now()
            WHERE (a.generation IS NULL OR a.generation < excluded.error_generation)
              AND (a.error_generation IS NULL
                   OR a.error_generation <= excluded.error_generation);
        RETURN QUERY SELECT true, 0, NULL::text;
        RETURN;
    END IF;

    SELECT s.generation, s.deleted INTO d FROM desired_state s
    WHERE s.cluster = ack.cluster AND s.kind = ack.kind AND s.name = ack.name;
    IF NOT FOUND OR (d.deleted AND d.generation <= ack.generation) THEN
        IF FOUND THEN
            PERFORM api.ack_deleted(ack.cluster, ack.kind, ack.name, d.generation);
        END IF;
        PERFORM gateway.forget(ack.cluster, ack.kind, ack.name);
        RETURN QUERY SELECT true, 0, NULL::text;
        RETURN;
    END IF;

    -- never back to an older generation; a failure of a newer generation
    -- than this one stands
    INSERT INTO applied_state AS a (cluster, kind, name, generation, ok, error,
                                    error_generation, acked_at)
    VALUES (ack.cluster, ack.kind, ack.name, ack.generation, true, NULL, NULL, now())
    ON CONFLICT ON CONSTRAINT applied_state_pkey DO UPDATE
        SET generation = greatest(a.generation, excluded.generation),
            ok = CASE WHEN a.error_generation > excluded.generation THEN a.ok ELSE true END,
            error = CASE WHEN a.error_generation > excluded.generation THEN a.error END,
            error_generation = CASE WHEN a.error_generation > excluded.generation
                                    THEN a.error_generation END,
            acked_at = now();
    RETURN QUERY SELECT true, 0, NULL::text;
END
$$;


------------------------------------------------------------------------
-- Reports: usage and application status
------------------------------------------------------------------------

-- The counters of TenantUsage, in proto order.  Absent or null is 0
-- (proto3 leaves zeros out).
CREATE FUNCTION gateway.usage_counters() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT ARRAY['cpu_request_millicores', 'memory_request_bytes', 'storage_request_bytes',
                 'load_balancers', 'pods', 'namespaces', 'applications', 'gpu_requests',
                 'quota_violations']
$$;

-- The tenants of a UsageReport are certainly fine: objects with a tenant
-- name of 1 to 253 characters, each listed once, every counter absent,
-- null, or a JSON integer of at most 18 digits.  One set-based pass, so
-- that a report of thousands of tenants is checked at once; false sends
-- the report to gateway.usage_problem, which finds the problem (or finds
-- that an unusual form, such as an integer as a string, is fine).
CREATE FUNCTION gateway.usage_plain(tenants jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_typeof(usage_plain.tenants) = 'array'
       AND (SELECT coalesce(bool_and(
                       jsonb_typeof(a.x) = 'object'
                       AND jsonb_typeof(a.x -> 'tenant') = 'string'
                       AND length(a.x ->> 'tenant') BETWEEN 1 AND 253
                       AND NOT EXISTS (
                           SELECT 1 FROM jsonb_each(a.x) AS e (k, v)
                           WHERE e.k = ANY (gateway.usage_counters())
                             AND jsonb_typeof(e.v) <> 'null'
                             AND (jsonb_typeof(e.v) <> 'number'
                                  OR e.v::text !~ '^[0-9]{1,18}$'))), true)
                   AND count(DISTINCT a.x ->> 'tenant') = count(*)
            FROM jsonb_array_elements(usage_plain.tenants) AS a (x))
$$;

-- The tenants of a UsageReport: null when fine, else the first problem.
CREATE FUNCTION gateway.usage_problem(tenants jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    item     jsonb;
    i        bigint;
    counter  text;
    v        bigint;
    dup      text;
BEGIN
    IF usage_problem.tenants IS NULL OR jsonb_typeof(usage_problem.tenants) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(usage_problem.tenants) <> 'array' THEN
        RETURN 'tenants must be an array of TenantUsage objects';
    END IF;
    FOR item, i IN SELECT x, n - 1 FROM jsonb_array_elements(usage_problem.tenants)
                                     WITH ORDINALITY AS a (x, n) LOOP
        IF jsonb_typeof(item) <> 'object' THEN
            RETURN 'tenants[' || i || ']: must be an object';
        END IF;
        IF gateway.json_name(item -> 'tenant', 253) IS NULL THEN
            RETURN 'tenants[' || i || '].tenant must be a string of 1 to 253 characters';
        END IF;
        FOREACH counter IN ARRAY gateway.usage_counters() LOOP
            CONTINUE WHEN coalesce(jsonb_typeof(item -> counter), 'null') = 'null';
            v := gateway.json_int(item -> counter);
            IF v IS NULL OR v < 0 THEN
                RETURN 'tenants[' || i || '].' || counter || ' must be a non-negative integer';
            END IF;
        END LOOP;
    END LOOP;
    SELECT x ->> 'tenant' INTO dup FROM jsonb_array_elements(usage_problem.tenants) AS a (x)
    GROUP BY x ->> 'tenant' HAVING count(*) > 1 ORDER BY 1 LIMIT 1;
    IF FOUND THEN
        RETURN 'tenants: ' || dup || ' is listed more than once';
    END IF;
    RETURN NULL;
END
$$;

-- A usage report (window in unix seconds), stored once per (cluster,
-- sequence): a repeat changes nothing and answers stored = false, and both
-- answers mean "acknowledge it" (UsageAck).  Kept whether or not the
-- stream is still current: usage is a fact, and idempotent.  The cluster
-- is its row's id, so a cluster deleted and created again under the same
-- name starts afresh; a cluster that no longer exists is answered 16 (not
-- stored, not acknowledged: its Operator keeps the report).  Tenants the
-- Manager does not know (any more) are stored all the same: the figures
-- are what the cluster ran, and a tenant deleted during the window did
-- use it.
CREATE FUNCTION gateway.usage(cluster text, sequence bigint, window_start bigint,
                              window_end bigint, tenants jsonb)
RETURNS TABLE (stored boolean, status integer, message text)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    max_unix  constant bigint := 253402300799;   -- 9999-12-31T23:59:59Z
    problem   text;
    cid       bigint;
BEGIN
    problem := CASE
        WHEN usage.sequence IS NULL OR usage.sequence < 0
            THEN 'sequence must be a non-negative integer'
        WHEN usage.window_start IS NULL OR usage.window_start NOT BETWEEN 0 AND max_unix
            THEN 'window_start_unix must be a time in seconds since 1970 (0 to ' || max_unix || ')'
        WHEN usage.window_end IS NULL OR usage.window_end NOT BETWEEN 0 AND max_unix
            THEN 'window_end_unix must be a time in seconds since 1970 (0 to ' || max_unix || ')'
        WHEN usage.window_end < usage.window_start
            THEN 'window_end_unix is before window_start_unix'
        WHEN usage.window_end - usage.window_start > api.usage_max_window_seconds()
            THEN 'a usage window may last at most ' || api.usage_max_window_seconds()
                 || ' seconds'
    END;
    IF problem IS NOT NULL THEN
        RETURN QUERY SELECT false, 3, problem;
        RETURN;
    END IF;

    SELECT c.id INTO cid FROM clusters c WHERE c.name = usage.cluster;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, 16,
            'cluster ' || usage.cluster || ' is not registered (any more): usage not stored';
        RETURN;
    END IF;

    -- a repeat is known by its key alone: its tenants were checked when it
    -- was stored (an Operator resending its spool is answered at once)
    IF EXISTS (SELECT 1 FROM usage_reports r
               WHERE r.cluster_id = cid AND r.sequence = usage.sequence) THEN
        RETURN QUERY SELECT false, 0, NULL::text;
        RETURN;
    END IF;

    IF NOT gateway.usage_plain(usage.tenants) THEN
        problem := gateway.usage_problem(usage.tenants);
        IF problem IS NOT NULL THEN
            RETURN QUERY SELECT false, 3, problem;
            RETURN;
        END IF;
    END IF;

    INSERT INTO usage_reports (cluster_id, cluster, sequence, window_start, window_end)
    VALUES (cid, usage.cluster, usage.sequence,
            to_timestamp(usage.window_start), to_timestamp(usage.window_end))
    ON CONFLICT ON CONSTRAINT usage_reports_pkey DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, 0, NULL::text;
        RETURN;
    END IF;

    INSERT INTO tenant_usage (cluster_id, cluster, sequence, tenant,
                              cpu_request_millicores, memory_request_bytes,
                              storage_request_bytes, load_balancers, pods, namespaces,
                              applications, gpu_requests, quota_violations,
                              window_start, window_end)
    -- validated: every counter is an integer (a number, or a string of
    -- digits), which numeric takes as it is
    SELECT cid, usage.cluster, usage.sequence, r.tenant,
           coalesce(r.cpu_request_millicores, 0), coalesce(r.memory_request_bytes, 0),
           coalesce(r.storage_request_bytes, 0), coalesce(r.load_balancers, 0),
           coalesce(r.pods, 0), coalesce(r.namespaces, 0), coalesce(r.applications, 0),
           coalesce(r.gpu_requests, 0), coalesce(r.quota_violations, 0),
           to_timestamp(usage.window_start), to_timestamp(usage.window_end)
    FROM jsonb_to_recordset(CASE WHEN jsonb_typeof(usage.tenants) = 'array'
                                 THEN usage.tenants ELSE '[]' END)
         AS r (tenant text, cpu_request_millicores numeric, memory_request_bytes numeric,
               storage_request_bytes numeric, load_balancers numeric, pods numeric,
               namespaces numeric, applications numeric, gpu_requests numeric,
               quota_violations numeric);
    RETURN QUERY SELECT true, 0, NULL::text;
END
$$;

-- The latest status of an application on a cluster.  Never goes back to an
-- older generation (an equal one replaces: the phase moves on within a
-- generation), so a repeat or a late report is harmless.  A status of an
-- application that does not exist (any more) is not stored (stored =
-- false, status 0: acknowledge it all the same).
CREATE FUNCTION gateway.app_status(cluster text, tenant text, app text, generation bigint,
                                   phase text, observed_generation bigint,
                                   workflow_state text, services jsonb)
RETURNS TABLE (stored boolean, status integer, message text)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    problem  text;
    done     boolean;
BEGIN
    problem := CASE
        WHEN coalesce(length(app_status.tenant), 0) NOT BETWEEN 1 AND 253
            THEN 'tenant must be a string of 1 to 253 characters'
        WHEN coalesce(length(app_status.app), 0) NOT BETWEEN 1 AND 253
            THEN 'app must be a string of 1 to 253 characters'
        WHEN app_status.generation IS NULL OR app_status.generation < 0
            THEN 'generation must be a non-negative integer'
        WHEN app_status.observed_generation < 0
            THEN 'observed_generation must be a non-negative integer'
        WHEN length(app_status.phase) > 253
            THEN 'phase must be at most 253 characters'
        WHEN length(app_status.workflow_state) > 253
            THEN 'workflow_state must be at most 253 characters'
        WHEN coalesce(jsonb_typeof(app_status.services), 'null') NOT IN ('null', 'array')
            THEN 'services must be an array of ServiceHealth objects'
        WHEN jsonb_typeof(app_status.services) = 'array'
             AND jsonb_array_length(app_status.services) > 1000
            THEN 'services must have at most 1000 entries'
        WHEN jsonb_typeof(app_status.services) = 'array'
             AND EXISTS (SELECT 1 FROM jsonb_array_elements(app_status.services) AS s (x)
                         WHERE jsonb_typeof(x) <> 'object')
            THEN 'services: every entry must be an object {name, healthy, message}'
    END;
    IF problem IS NOT NULL THEN
        RETURN QUERY SELECT false, 3, problem;
        RETURN;
    END IF;

    BEGIN
        INSERT INTO app_status AS s (cluster, tenant, app, generation, phase,
                                     observed_generation, workflow_state, services, updated_at)
        SELECT app_status.cluster, app_status.tenant, app_status.app, app_status.generation,
               coalesce(app_status.phase, ''), app_status.observed_generation,
               nullif(app_status.workflow_state, ''),
               CASE WHEN jsonb_typeof(app_status.services) = 'array'
                    THEN app_status.services ELSE '[]' END,
               now()
        WHERE EXISTS (SELECT 1 FROM applications a
                      WHERE a.tenant = app_status.tenant AND a.name = app_status.app)
          AND EXISTS (SELECT 1 FROM clusters c WHERE c.name = app_status.cluster)
        ON CONFLICT ON CONSTRAINT app_status_pkey DO UPDATE
            SET generation = excluded.generation, phase = excluded.phase,
                observed_generation = excluded.observed_generation,
                workflow_state = excluded.workflow_state, services = excluded.services,
                updated_at = now()
            WHERE s.generation <= excluded.generation;
        done := FOUND;
    EXCEPTION WHEN foreign_key_violation THEN
        done := false;   -- the app or the cluster went meanwhile
    END;
    RETURN QUERY SELECT done, 0, NULL::text;
END
$$;


-- A kubeconfig an Operator issued, already encrypted by the Manager (the
-- ciphertext arrives base64-encoded).  Stored for an active tenant placed
-- on the cluster only (one being deleted has no kubeconfigs any more);
-- replaced by a newer one for the same (tenant, role).
CREATE FUNCTION gateway.kubeconfig(cluster text, stream_id text, tenant text,
                                   role text, ciphertext text)
RETURNS TABLE (stored boolean, status integer, message text)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    t  tenants;
BEGIN
    IF kubeconfig.role NOT IN ('owner', 'readonly') THEN
        RETURN QUERY SELECT false, 3, 'role must be owner or readonly';
        RETURN;
    END IF;
    SELECT * INTO t FROM tenants WHERE name = kubeconfig.tenant;
    IF NOT FOUND OR t.status <> 'active'
       OR NOT kubeconfig.cluster = ANY (api.placed_clusters(t)) THEN
        RETURN QUERY SELECT false, 0, NULL::text;   -- not ours to keep
        RETURN;
    END IF;
    INSERT INTO kubeconfigs AS k (cluster, tenant, role, ciphertext, issued_at)
    VALUES (kubeconfig.cluster, kubeconfig.tenant, kubeconfig.role,
            decode(kubeconfig.ciphertext, 'base64'), now())
    ON CONFLICT (cluster, tenant, role) DO UPDATE
        SET ciphertext = excluded.ciphertext, issued_at = now();
    RETURN QUERY SELECT true, 0, NULL::text;
END
$$;


------------------------------------------------------------------------
-- Components (NovaClusterConfig): the newest ComponentStatus per cluster
------------------------------------------------------------------------

-- components: [{name, version, state, message}] as the Operator sent them.
-- Kept when it is not older than what is stored (a config generation
-- never goes back); a cluster that no longer exists stores nothing.
CREATE FUNCTION gateway.components(cluster text, config_generation bigint,
                                   components jsonb)
RETURNS TABLE (stored boolean, status integer, message text)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    problem  text;
BEGIN
    problem := CASE
        WHEN components.config_generation IS NULL OR components.config_generation < 0
            THEN 'config_generation must be a non-negative integer'
        WHEN jsonb_typeof(components.components) <> 'array'
            THEN 'components must be an array of Component objects'
        WHEN jsonb_array_length(components.components) > 64
            THEN 'components must have at most 64 entries'
        WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(components.components) AS x (c)
                     WHERE jsonb_typeof(c) <> 'object'
                        OR gateway.json_name(c -> 'name', 63) IS NULL
                        OR coalesce(c ->> 'state', '') NOT IN
                           ('installed', 'installing', 'failed', 'removed'))
            THEN 'components: every entry needs a name (1 to 63 characters) and a state '
                 || '(installed, installing, failed or removed)'
    END;
    IF problem IS NOT NULL THEN
        RETURN QUERY SELECT false, 3, problem;
        RETURN;
    END IF;

    INSERT INTO cluster_components AS cc (cluster, config_generation, components, reported_at)
    SELECT c.name, components.config_generation, components.components, now()
    FROM clusters c WHERE c.name = components.cluster
    ON CONFLICT (cluster) DO UPDATE
        SET config_generation = excluded.config_generation,
            components = excluded.components, reported_at = now()
        WHERE cc.config_generation <= excluded.config_generation;
    RETURN QUERY SELECT FOUND, 0, NULL::text;
END
$$;

-- A renewed certificate of a connected cluster (CertificateRequest on its
-- current stream): records the serial nginx is about to sign.  false when
-- the stream is no longer the cluster's (nothing recorded).
CREATE FUNCTION gateway.certificate(cluster text, stream_id text, serial text,
                                    not_after bigint) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM clusters c
                   WHERE c.name = certificate.cluster
                     AND c.stream_id = certificate.stream_id FOR UPDATE) THEN
        RETURN false;
    END IF;
    INSERT INTO cluster_certificates (serial, cluster, not_after)
    VALUES (lower(certificate.serial), certificate.cluster, to_timestamp(certificate.not_after));
    RETURN true;
END
$$;
