-- Canary traffic (OpenKruise Rollout, nginx): the app's Service and
-- Ingress a canary stage routes requests through. Both or neither.
ALTER TABLE apps ADD COLUMN service TEXT;
ALTER TABLE apps ADD COLUMN ingress TEXT;
