-- Which cluster-scoped lists a tenant may read through the kube proxy
-- (issue 9, docs/adr/0004), in the order the admin gave; empty: it sees
-- those lists empty.  The names are checked by the API
-- (api.cluster_resource_names() holds the one list of them).
ALTER TABLE tenants ADD COLUMN cluster_resources text[] NOT NULL DEFAULT '{}';
