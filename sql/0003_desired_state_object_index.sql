-- Application writes look their desired state up by object, on every
-- cluster at once (api.sync_app_desired_state).
CREATE INDEX desired_state_object ON desired_state (kind, name);
