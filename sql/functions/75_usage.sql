-- Usage and billing (docs/api-design.md, "Usage and billing"):
--
--   GET /tenants/{t}/usage    usage.get     admins, the tenant's members
--   GET /usage                usage.list    admins; ?tenant= filters
--   GET /tenants/{t}/invoice  invoice.get   admins, the tenant's members
--
-- A usage report (gateway.usage, table tenant_usage) says: from
-- window_start to window_end, this cluster ran these figures for the
-- tenant.  Levels held over the window (CPU, memory and storage requests,
-- load balancers, GPUs, pods, namespaces, applications) become figure x
-- seconds, split between the buckets (or invoice periods) the window
-- overlaps by the seconds of each overlap, and summed over windows and
-- clusters in numeric: exact integers until the one division that makes
-- resource-hours (or an average) of them.  Quota violations are events:
-- they count in the bucket where their window starts.
--
-- Buckets are hours, days or months in UTC (the functions below run with
-- TimeZone UTC), cut to [from, to).


------------------------------------------------------------------------
-- Shared pieces
------------------------------------------------------------------------

-- The longest window a report may cover (gateway.usage refuses longer
-- ones): a read of [from, to) needs windows starting from this far before
-- from, and no earlier, so it stays an index range.
CREATE FUNCTION api.usage_max_window_seconds() RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT 31 * 86400::bigint
$$;

-- Seconds per unit of each priced resource (the divisor that turns its
-- figure x seconds into resource-hours): millicore-seconds per core-hour,
-- byte-seconds per GiB-hour, count-seconds per hour.
CREATE FUNCTION api.usage_unit_seconds(resource text) RETURNS numeric
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE resource
        WHEN 'cpu'            THEN 3600 * 1000::numeric
        WHEN 'memory'         THEN 3600 * 1073741824::numeric
        WHEN 'storage'        THEN 3600 * 1073741824::numeric
        WHEN 'load_balancers' THEN 3600::numeric
        WHEN 'gpus'           THEN 3600::numeric
    END
$$;

-- A figure for people: 6 decimals (rounded half up), no trailing zeros.
CREATE FUNCTION api.usage_decimal(num numeric, den numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT trim_scale(round(num / den, 6))
$$;

-- num / den rounded half up to an integer (both >= 0), exactly: div()
-- truncates without rounding whatever the scale of its arguments.
CREATE FUNCTION api.round_half_up(num numeric, den numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT div(2 * num + den, 2 * den)
$$;

-- One CSV field (RFC 4180): quoted when it holds a comma, a quote, a line
-- break or surrounding blanks.
CREATE FUNCTION api.csv_field(v text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT CASE WHEN v ~ '[",\r\n]' OR v ~ '^\s|\s$'
                THEN '"' || replace(v, '"', '""') || '"'
                ELSE coalesce(v, '') END
$$;

-- The tenant of a usage or invoice read: the caller's own (others: 404),
-- or for admins any tenant that exists or existed (its history is kept).
CREATE FUNCTION api.usage_tenant_scope(c api.caller, tenant_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM api.require_tenant_visible(c, tenant_name);
    IF NOT EXISTS (SELECT 1 FROM tenants t WHERE t.name = tenant_name)
       AND NOT EXISTS (SELECT 1 FROM tenant_plan_history h WHERE h.tenant = tenant_name) THEN
        PERFORM api.fail_not_found('tenant');
    END IF;
END
$$;

-- ?from= and ?to=: an RFC 3339 time or a date (midnight UTC), from 1970 to
-- 9999, in whole seconds (a fraction is dropped); null when absent.
CREATE FUNCTION api.query_time(e jsonb, key text) RETURNS timestamptz
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC' AS $$
DECLARE
    v  text := e -> 'query' ->> key;
    t  timestamptz;
BEGIN
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    IF v ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' THEN
        v := v || 'T00:00:00Z';
    END IF;
    IF v ~ api.pattern('rfc3339') THEN
        BEGIN
            t := date_trunc('second', v::timestamptz);
        EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
            t := NULL;
        END;
    END IF;
    IF t IS NULL OR t < '1970-01-01T00:00:00Z' OR t >= '10000-01-01T00:00:00Z' THEN
        PERFORM api.fail(400, 'invalid_query',
            key || ' must be an RFC 3339 time such as "2030-01-31T12:00:00Z" or a date '
            || 'such as "2030-01-31", from 1970 to 9999');
    END IF;
    RETURN t;
END
$$;


------------------------------------------------------------------------
-- Usage: GET /tenants/{t}/usage, GET /usage
------------------------------------------------------------------------

-- A usage read, from the query: ?from= (default: the start of the month
-- of to), ?to= (default: now), ?granularity= hour|day|month (default
-- day), ?limit= rows (1 to 10000, default 1000), ?continue=, and
-- csv (Accept: text/csv, from nginx).
CREATE TYPE api.usage_query AS (
    tenant        text,          -- null: every tenant
    from_ts       timestamptz,
    to_ts         timestamptz,
    granularity   text,
    page_limit    integer,
    after_tenant  text,          -- the last row of the previous page
    after_start   timestamptz,
    csv           boolean
);

CREATE FUNCTION api.usage_query(e jsonb, tenant_name text) RETURNS api.usage_query
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC' AS $$
DECLARE
    q    api.usage_query;
    v    text := e -> 'query' ->> 'continue';
    key  text[];
BEGIN
    q.tenant := tenant_name;
    q.granularity := coalesce(e -> 'query' ->> 'granularity', 'day');
    IF q.granularity NOT IN ('hour', 'day', 'month') THEN
        PERFORM api.fail(400, 'invalid_query', 'granularity must be hour, day or month');
    END IF;
    q.to_ts := coalesce(api.query_time(e, 'to'), date_trunc('second', now()));
    q.from_ts := coalesce(api.query_time(e, 'from'),
                          date_trunc('month', q.to_ts - interval '1 second'));
    IF q.from_ts >= q.to_ts THEN
        PERFORM api.fail(400, 'invalid_query', 'from must be before to');
    END IF;
    q.page_limit := api.page_limit(e, 10000, 1000);
    IF v IS NOT NULL AND v <> '' THEN
        -- "<unix seconds of the row's start>:<tenant>"
        key := regexp_match(api.decode_continue(v), '^([0-9]{1,12}):(.+)$');
        IF key IS NULL THEN
            PERFORM api.fail(400, 'invalid_query', 'continue is not a value from a previous page');
        END IF;
        q.after_start := to_timestamp(key[1]::bigint);
        q.after_tenant := key[2];
    END IF;
    q.csv := coalesce(e ->> 'format' = 'csv', false);
    RETURN q;
END
$$;

-- One row of a usage read: exact sums over one tenant and bucket.
-- *_seconds are figure x seconds; *_max add up each cluster's highest
-- figure in the bucket (the peak if every cluster peaked at once).
CREATE TYPE api.usage_row AS (
    tenant                 text,
    bucket_start           timestamptz,
    bucket_end             timestamptz,
    cpu_millicore_seconds  numeric,
    memory_byte_seconds    numeric,
    storage_byte_seconds   numeric,
    load_balancer_seconds  numeric,
    gpu_seconds            numeric,
    pod_seconds            numeric,
    pods_max               numeric,
    namespace_seconds      numeric,
    namespaces_max         numeric,
    application_seconds    numeric,
    applications_max       numeric,
    quota_violations       numeric
);

-- The rows of a usage read (at most page_limit + 1: the extra one says
-- that there is a next page), by tenant, then time.  One statement, built
-- for the tenant condition at hand so that its index range is planned
-- with the values.
CREATE FUNCTION api.usage_rows(q api.usage_query) RETURNS SETOF api.usage_row
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC' AS $$
DECLARE
    tenant_cond  text;
BEGIN
    tenant_cond := CASE
        WHEN q.tenant IS NOT NULL THEN 'u.tenant = $1'
        WHEN q.after_tenant IS NOT NULL THEN 'u.tenant >= $2'
        ELSE 'true'
    END;
    RETURN QUERY EXECUTE format($q$
        WITH page_tenants AS (
            -- every tenant has a row, but the previous page's last one may
            -- have none left: limit + 2 tenants are enough
            SELECT DISTINCT u.tenant FROM tenant_usage u
            WHERE %1$s AND %2$s
            ORDER BY u.tenant LIMIT $8 + 2
        ),
        pieces AS (
            SELECT u.tenant, u.cluster_id, u.window_start,
                   greatest(b.s, $3) AS bs, least(b.s + $6, $4) AS be,
                   greatest(0, extract(epoch FROM least(u.window_end, b.s + $6, $4)
                                                  - greatest(u.window_start, b.s, $3)))::numeric
                       AS secs,
                   u.cpu_request_millicores, u.memory_request_bytes, u.storage_request_bytes,
                   u.load_balancers, u.gpu_requests, u.pods, u.namespaces, u.applications,
                   u.quota_violations
            FROM tenant_usage u
            JOIN page_tenants p ON p.tenant = u.tenant
            CROSS JOIN LATERAL generate_series(
                date_trunc($5, greatest(u.window_start, $3)),
                greatest(date_trunc($5, greatest(u.window_start, $3)),
                         least(u.window_end, $4) - interval '1 microsecond'),
                $6) AS b (s)
            WHERE %1$s AND %2$s
        ),
        per_cluster AS (
            SELECT x.tenant, x.bs, x.be,
                   sum(x.cpu_request_millicores * x.secs) AS cpu,
                   sum(x.memory_request_bytes * x.secs) AS memory,
                   sum(x.storage_request_bytes * x.secs) AS storage,
                   sum(x.load_balancers * x.secs) AS lbs,
                   sum(x.gpu_requests * x.secs) AS gpus,
                   sum(x.pods * x.secs) AS pods, max(x.pods) AS pods_max,
                   sum(x.namespaces * x.secs) AS nss, max(x.namespaces) AS nss_max,
                   sum(x.applications * x.secs) AS apps, max(x.applications) AS apps_max,
                   coalesce(sum(x.quota_violations)
                            FILTER (WHERE x.window_start >= x.bs AND x.window_start < x.be), 0)
                       AS violations
            FROM pieces x
            GROUP BY x.tenant, x.bs, x.be, x.cluster_id
        )
        SELECT y.tenant::text, y.bs, y.be, sum(y.cpu), sum(y.memory), sum(y.storage),
               sum(y.lbs), sum(y.gpus), sum(y.pods), sum(y.pods_max), sum(y.nss),
               sum(y.nss_max), sum(y.apps), sum(y.apps_max), sum(y.violations)
        FROM per_cluster y
        WHERE $2 IS NULL OR (y.tenant, y.bs) > ($2, $7)
        GROUP BY y.tenant, y.bs, y.be
        ORDER BY y.tenant, y.bs
        LIMIT $8 + 1
        $q$,
        tenant_cond,
        -- windows that overlap [from, to), or lie in it (a window of no
        -- length), and reach past the previous page's last row; none is
        -- longer than usage_max_window_seconds()
        format('u.window_start < $4 AND u.window_start >= $3 - interval %L '
               'AND (u.window_end > $3 OR u.window_start >= $3) '
               'AND ($2 IS NULL OR u.tenant > $2 OR u.window_end > $7)',
               api.usage_max_window_seconds() || ' seconds'))
    USING q.tenant, q.after_tenant, q.from_ts, q.to_ts, q.granularity,
          ('1 ' || q.granularity)::interval, q.after_start, q.page_limit;
END
$$;

-- The members of a usage row, in the order of the CSV columns.
CREATE FUNCTION api.usage_row_json(r api.usage_row) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    secs  numeric := extract(epoch FROM r.bucket_end - r.bucket_start);
BEGIN
    RETURN jsonb_build_object(
        'tenant', r.tenant,
        'start', api.ts(r.bucket_start),
        'end', api.ts(r.bucket_end),
        'cpu_core_hours', api.usage_decimal(r.cpu_millicore_seconds, api.usage_unit_seconds('cpu')),
        'memory_gib_hours', api.usage_decimal(r.memory_byte_seconds, api.usage_unit_seconds('memory')),
        'storage_gib_hours', api.usage_decimal(r.storage_byte_seconds, api.usage_unit_seconds('storage')),
        'load_balancer_hours', api.usage_decimal(r.load_balancer_seconds,
                                                 api.usage_unit_seconds('load_balancers')),
        'gpu_hours', api.usage_decimal(r.gpu_seconds, api.usage_unit_seconds('gpus')),
        'pods_avg', api.usage_decimal(r.pod_seconds, secs),
        'pods_max', r.pods_max,
        'namespaces_avg', api.usage_decimal(r.namespace_seconds, secs),
        'namespaces_max', r.namespaces_max,
        'applications_avg', api.usage_decimal(r.application_seconds, secs),
        'applications_max', r.applications_max,
        'quota_violations', r.quota_violations);
END
$$;

CREATE FUNCTION api.usage_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT ARRAY['tenant', 'start', 'end', 'cpu_core_hours', 'memory_gib_hours',
                 'storage_gib_hours', 'load_balancer_hours', 'gpu_hours', 'pods_avg',
                 'pods_max', 'namespaces_avg', 'namespaces_max', 'applications_avg',
                 'applications_max', 'quota_violations']
$$;

-- The answer of a usage read: {"items", "continue"} with the query's
-- range, or (q.csv) {"csv": text, "continue"}, which nginx sends as
-- text/csv (the continue value in a header).
CREATE FUNCTION api.usage_result(q api.usage_query) RETURNS api.result
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC' AS $$
DECLARE
    items  jsonb;
    more   boolean;
    last   jsonb;
    next   text;
    cols   text[] := api.usage_columns();
BEGIN
    SELECT coalesce(jsonb_agg(api.usage_row_json(r) ORDER BY r.tenant, r.bucket_start), '[]')
    INTO items
    FROM api.usage_rows(q) AS r;

    more := jsonb_array_length(items) > q.page_limit;
    IF more THEN
        items := items - q.page_limit;
        last := items -> (q.page_limit - 1);
        next := api.encode_continue(
                    extract(epoch FROM (last ->> 'start')::timestamptz)::bigint
                    || ':' || (last ->> 'tenant'));
    END IF;

    IF q.csv THEN
        RETURN api.ok(200, jsonb_build_object(
            'csv', array_to_string(cols, ',') || E'\r\n'
                   || coalesce((SELECT string_agg(
                                    (SELECT string_agg(api.csv_field(a.item ->> c.k), ','
                                                       ORDER BY c.n)
                                     FROM unnest(cols) WITH ORDINALITY AS c (k, n))
                                    || E'\r\n', '' ORDER BY a.i)
                                FROM jsonb_array_elements(items) WITH ORDINALITY AS a (item, i)),
                               ''),
            'continue', next));
    END IF;

    RETURN api.ok(200, jsonb_build_object(
        'tenant', q.tenant,
        'from', api.ts(q.from_ts), 'to', api.ts(q.to_ts),
        'granularity', q.granularity,
        'items', items,
        'continue', next));
END
$$;

CREATE FUNCTION api.usage_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    tenant_name  text := api.param(e, 'tenant');
BEGIN
    PERFORM api.usage_tenant_scope(c, tenant_name);
    RETURN api.usage_result(api.usage_query(e, tenant_name));
END
$$;

CREATE FUNCTION api.usage_list(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    tenant_name  text := e -> 'query' ->> 'tenant';
BEGIN
    PERFORM api.require_admin(c);
    IF length(tenant_name) NOT BETWEEN 1 AND 253 THEN
        PERFORM api.fail(400, 'invalid_query', 'tenant must be a name of 1 to 253 characters');
    END IF;
    RETURN api.usage_result(api.usage_query(e, tenant_name));
END
$$;


------------------------------------------------------------------------
-- Invoices: GET /tenants/{t}/invoice?month=YYYY-MM
------------------------------------------------------------------------

-- The periods of [from_ts, to_ts) with one plan and one set of prices:
-- tenant_plan_history cut by plan_price_history.  Usage is priced by the
-- plan in force; before the tenant's first record by its first plan, and
-- after its deletion by its last one (reports of the last windows may
-- arrive then).  live: the tenant existed (the plan's monthly fee runs).
-- A plan's first prices also count for any time before them.
CREATE FUNCTION api.invoice_periods(tenant_name text, from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (period_start timestamptz, period_end timestamptz, plan text, live boolean,
               currency text, price_monthly numeric, price_cpu_core_hour numeric,
               price_memory_gib_hour numeric, price_storage_gib_hour numeric,
               price_load_balancer_hour numeric, price_gpu_hour numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    WITH hist AS (
        SELECT h.valid_from, h.plan,
               lead(h.valid_from, 1, 'infinity') OVER (ORDER BY h.valid_from) AS valid_until,
               -- the plan in force, or the last one before a deletion
               (SELECT h2.plan FROM tenant_plan_history h2
                WHERE h2.tenant = h.tenant AND h2.valid_from <= h.valid_from
                  AND h2.plan IS NOT NULL
                ORDER BY h2.valid_from DESC LIMIT 1) AS priced_plan
        FROM tenant_plan_history h
        WHERE h.tenant = tenant_name
    ),
    tenant_periods AS (
        SELECT '-infinity'::timestamptz AS ps, min(h.valid_from) AS pe,
               (SELECT h1.plan FROM hist h1 WHERE h1.plan IS NOT NULL
                ORDER BY h1.valid_from LIMIT 1) AS plan,
               false AS live
        FROM hist h
        UNION ALL
        SELECT h.valid_from, h.valid_until, h.priced_plan, h.plan IS NOT NULL
        FROM hist h
    ),
    price_periods AS (
        SELECT p.*,
               CASE WHEN row_number() OVER w = 1 THEN '-infinity'::timestamptz
                    ELSE p.valid_from END AS ps,
               lead(p.valid_from, 1, 'infinity') OVER w AS pe
        FROM plan_price_history p
        WHERE p.plan IN (SELECT t.plan FROM tenant_periods t)
        WINDOW w AS (PARTITION BY p.plan ORDER BY p.valid_from)
    )
    SELECT greatest(t.ps, p.ps, from_ts), least(t.pe, p.pe, to_ts), t.plan, t.live,
           p.currency, p.price_monthly, p.price_cpu_core_hour, p.price_memory_gib_hour,
           p.price_storage_gib_hour, p.price_load_balancer_hour, p.price_gpu_hour
    FROM tenant_periods t
    LEFT JOIN price_periods p
           ON p.plan = t.plan AND p.ps < least(t.pe, to_ts) AND p.pe > greatest(t.ps, from_ts)
    WHERE t.ps < to_ts AND t.pe > from_ts
    ORDER BY 1
$$;

-- The invoice of one month (default: the current one, so far).  One line
-- per period and resource with a quantity: the plan's monthly fee for the
-- share of the month the tenant existed on it (up to now), and each
-- resource's hours at the plan's price.  Each line's amount is its exact
-- quantity x unit price rounded half up to a whole minor unit; the total
-- is the sum of the lines.
CREATE FUNCTION api.invoice_get(c api.caller, e jsonb) RETURNS api.result
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp
SET TimeZone = 'UTC' AS $$
DECLARE
    tenant_name  text := api.param(e, 'tenant');
    m            text := e -> 'query' ->> 'month';
    from_ts      timestamptz;
    to_ts        timestamptz;
    month_secs   numeric;
    currencies   text[];
    missing      text;
    lines        jsonb;
    total        numeric;
BEGIN
    PERFORM api.usage_tenant_scope(c, tenant_name);
    IF m IS NULL THEN
        from_ts := date_trunc('month', now());
    ELSIF m !~ '^[0-9]{4}-(0[1-9]|1[0-2])$' OR left(m, 4)::integer < 1970 THEN
        PERFORM api.fail(400, 'invalid_query',
                         'month must be a month such as "2030-01", from 1970-01 on');
    ELSE
        from_ts := (m || '-01T00:00:00Z')::timestamptz;
    END IF;
    to_ts := from_ts + interval '1 month';
    month_secs := extract(epoch FROM to_ts - from_ts);

    SELECT array_agg(DISTINCT p.currency), min(p.plan) FILTER (WHERE p.currency IS NULL)
    INTO currencies, missing
    FROM api.invoice_periods(tenant_name, from_ts, to_ts) p;
    IF missing IS NOT NULL OR currencies IS NULL THEN
        PERFORM api.fail(409, 'conflict', 'no prices are known for plan '
                         || coalesce(missing, '(none)') || ' of tenant ' || tenant_name);
    END IF;
    IF cardinality(currencies) > 1 THEN
        PERFORM api.fail(409, 'conflict',
            'the plans of tenant ' || tenant_name || ' bill in ' || array_to_string(currencies, ' and ')
            || ' during ' || to_char(from_ts, 'YYYY-MM') || ': an invoice has one currency');
    END IF;

    WITH periods AS (
        SELECT * FROM api.invoice_periods(tenant_name, from_ts, to_ts)
    ),
    used AS (
        SELECT p.period_start,
               coalesce(sum(u.cpu_request_millicores * o.secs), 0) AS cpu,
               coalesce(sum(u.memory_request_bytes * o.secs), 0) AS memory,
               coalesce(sum(u.storage_request_bytes * o.secs), 0) AS storage,
               coalesce(sum(u.load_balancers * o.secs), 0) AS lbs,
               coalesce(sum(u.gpu_requests * o.secs), 0) AS gpus
        FROM periods p
        LEFT JOIN tenant_usage u
               ON u.tenant = tenant_name AND u.window_start < p.period_end
              AND u.window_start >= p.period_start
                                    - make_interval(secs => api.usage_max_window_seconds())
              AND u.window_end > p.period_start
        LEFT JOIN LATERAL (
            SELECT extract(epoch FROM least(u.window_end, p.period_end)
                                      - greatest(u.window_start, p.period_start)) AS secs) o
               ON true
        GROUP BY p.period_start
    ),
    items AS (
        SELECT p.period_start, p.period_end, p.plan, l.n, l.resource, l.unit,
               l.quantity, l.per_unit, l.price,
               api.round_half_up(l.quantity * l.price, l.per_unit) AS amount
        FROM periods p
        JOIN used ON used.period_start = p.period_start
        CROSS JOIN LATERAL (VALUES
            (1, 'base', 'month',
             CASE WHEN p.live
                  THEN greatest(0, extract(epoch FROM least(p.period_end, now()) - p.period_start))
                  ELSE 0 END,
             month_secs, p.price_monthly),
            (2, 'cpu', 'core-hour', used.cpu, api.usage_unit_seconds('cpu'),
             p.price_cpu_core_hour),
            (3, 'memory', 'GiB-hour', used.memory, api.usage_unit_seconds('memory'),
             p.price_memory_gib_hour),
            (4, 'storage', 'GiB-hour', used.storage, api.usage_unit_seconds('storage'),
             p.price_storage_gib_hour),
            (5, 'load_balancers', 'hour', used.lbs, api.usage_unit_seconds('load_balancers'),
             p.price_load_balancer_hour),
            (6, 'gpus', 'hour', used.gpus, api.usage_unit_seconds('gpus'),
             p.price_gpu_hour))
            AS l (n, resource, unit, quantity, per_unit, price)
        WHERE l.quantity > 0
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'from', api.ts(i.period_start), 'to', api.ts(i.period_end),
               'plan', i.plan, 'resource', i.resource, 'unit', i.unit,
               'quantity', api.usage_decimal(i.quantity, i.per_unit),
               'unit_price', trim_scale(i.price),
               'amount', i.amount) ORDER BY i.period_start, i.n), '[]'),
           coalesce(sum(i.amount), 0)
    INTO lines, total
    FROM items i;

    RETURN api.ok(200, jsonb_build_object(
        'tenant', tenant_name,
        'month', to_char(from_ts, 'YYYY-MM'),
        'from', api.ts(from_ts), 'to', api.ts(to_ts),
        'currency', currencies[1],
        'final', to_ts <= now(),
        'lines', lines,
        'total', total));
END
$$;
