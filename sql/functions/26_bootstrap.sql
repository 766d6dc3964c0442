-- One-shot bootstrap (issue 6): POST /clusters may carry the cluster's
-- kubeconfig.  nginx seals it before the body gets here
-- (ngx_kubenova_bootstrap.c): "bootstrap_kubeconfig_sealed" is its base64,
-- or false when the Manager has no kubenova_secret_key_file.  The row of
-- cluster_bootstrap waits for kubenova-bootstrap (bootstrap/), which uses
-- it once and deletes it, with audit entries "cluster.bootstrap".

-- The creation's bootstrap fields: 422 when wrong; the sealed bytes or null.
CREATE FUNCTION api.bootstrap_input(body jsonb) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    sealed  jsonb := body -> 'bootstrap_kubeconfig_sealed';
BEGIN
    -- what nginx left as it was: not a string
    IF api.present(body -> 'bootstrap_kubeconfig') THEN
        PERFORM api.fail_invalid(api.field_error('bootstrap_kubeconfig',
            'must be a string: the kubeconfig (YAML) of a cluster-admin of the new cluster'));
    END IF;
    IF sealed IS NULL OR jsonb_typeof(sealed) = 'null' THEN
        RETURN NULL;
    END IF;
    IF sealed = 'false'::jsonb THEN
        PERFORM api.fail_invalid(api.field_error('bootstrap_kubeconfig',
            'cannot be stored: the Manager has no kubenova_secret_key_file'));
    END IF;
    IF jsonb_typeof(sealed) <> 'string' OR sealed #>> '{}' !~ '^[A-Za-z0-9+/]+={0,2}$' THEN
        -- nginx writes it (and drops one a client sent): a bug if seen
        RAISE EXCEPTION 'bootstrap_kubeconfig_sealed is not base64';
    END IF;
    -- a kubeconfig of a few bytes (29 are the seal itself) is no kubeconfig
    IF length(decode(sealed #>> '{}', 'base64')) < 29 + 16 THEN
        PERFORM api.fail_invalid(api.field_error('bootstrap_kubeconfig',
            'is too short to be a kubeconfig'));
    END IF;
    RETURN decode(sealed #>> '{}', 'base64');
END
$$;

-- After the cluster was stored: its bootstrap waits for the helper.
CREATE FUNCTION api.bootstrap_store(cluster_name text, sealed bytea) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF sealed IS NULL THEN
        RETURN '{}';
    END IF;
    INSERT INTO cluster_bootstrap (cluster, sealed) VALUES (cluster_name, sealed);
    RETURN jsonb_build_object('bootstrap', 'pending');
END
$$;
