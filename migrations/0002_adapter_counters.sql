-- The last version number handed out per user and model. DELETE of an adapter leaves this row in
-- place, so numbering continues after a DELETE: a version number, and with it the R2 key
-- adapters/<model>/<user>/<version>.safetensors, never names two different uploads.
CREATE TABLE adapter_counters (
  model TEXT    NOT NULL,
  user  TEXT    NOT NULL,
  last  INTEGER NOT NULL,
  PRIMARY KEY (model, user)
);

INSERT INTO adapter_counters (model, user, last)
SELECT model, user, MAX(version) FROM adapter_versions GROUP BY model, user;
