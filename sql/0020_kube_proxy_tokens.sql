-- Tokens of proxy kubeconfigs (GET /tenants/{t}/kubeconfig, via=proxy): a
-- user's token bound to one cluster and one role.  Such a token opens the
-- Manager's kube proxy for that cluster only, never the REST API, and its
-- role may be narrower than its user's (an owner's readonly kubeconfig).
ALTER TABLE tokens
    ADD COLUMN kube_cluster text COLLATE "C",
    ADD COLUMN kube_role    text CHECK (kube_role IN ('owner', 'readonly')),
    ADD CHECK ((kube_cluster IS NULL) = (kube_role IS NULL));
