-- Edge API index. D1 is the source of truth for adapter versions and jobs;
-- KV holds the current adapter bytes for the hot read path, R2 holds every version's bytes.

-- The current adapter of one user for one model (one row per pair).
CREATE TABLE adapter_heads (
  model   TEXT    NOT NULL,
  user    TEXT    NOT NULL,
  version INTEGER NOT NULL,
  etag    TEXT    NOT NULL,
  updated TEXT    NOT NULL,
  PRIMARY KEY (model, user)
);

-- Every accepted upload. The primary key makes a version number a one-writer claim.
CREATE TABLE adapter_versions (
  model   TEXT    NOT NULL,
  user    TEXT    NOT NULL,
  version INTEGER NOT NULL,
  etag    TEXT    NOT NULL,
  bytes   INTEGER NOT NULL,
  created TEXT    NOT NULL,
  source  TEXT    NOT NULL,
  PRIMARY KEY (model, user, version)
);

-- Training jobs, claimed oldest first (rowid order). lease_expires is epoch milliseconds; data_key names the R2 object
-- holding the training data until the job ends.
CREATE TABLE jobs (
  id            TEXT    PRIMARY KEY,
  model         TEXT    NOT NULL,
  user          TEXT    NOT NULL,
  status        TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
  attempts      INTEGER NOT NULL DEFAULT 0,
  max_attempts  INTEGER NOT NULL,
  created       TEXT    NOT NULL,
  updated       TEXT    NOT NULL,
  lease_id      TEXT,
  lease_owner   TEXT,
  lease_expires INTEGER,
  error         TEXT,
  version       INTEGER,
  result_etag   TEXT,
  options       TEXT    NOT NULL,
  data_key      TEXT
);
CREATE INDEX jobs_by_queue ON jobs (status, lease_expires);
CREATE INDEX jobs_by_user ON jobs (model, user);

-- Fixed-window write counters per subject (the rate limit). D1 serialises writes,
-- so an upsert with RETURNING is an exact counter, unlike eventually consistent KV.
CREATE TABLE rate_windows (
  subject TEXT    NOT NULL,
  window  INTEGER NOT NULL,
  count   INTEGER NOT NULL,
  PRIMARY KEY (subject, window)
);
