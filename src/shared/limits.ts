/** Named limits of the edge API, each with the reason for its value. */

/** r = 64 over all 224 linear layers of a 7B model in F32 is 3.7 MB; KV values may be 25 MiB. */
export const MAX_ADAPTER_BYTES = 4 * 1024 * 1024;

/** A manifest lists modules and files; thousands of modules stay well under 1 MiB. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

/** Workers accept request bodies up to 100 MB on the Free and Pro plans; bigger files go straight to R2. */
export const MAX_MODEL_FILE_BYTES = 100 * 1024 * 1024;

/** Training data for one user (texts or labelled examples); larger sets belong in a bulk pipeline. */
export const MAX_JOB_BODY_BYTES = 8 * 1024 * 1024;

/** Small JSON control bodies (claim, heartbeat, fail). */
export const MAX_CONTROL_BODY_BYTES = 16 * 1024;

/** Writes (PUT, DELETE, restore, job create) one subject may make per window, unless WRITE_RATE_LIMIT says otherwise. */
export const DEFAULT_WRITE_RATE_LIMIT = 60;

/** The rate-limit window: one minute, fixed. */
export const RATE_WINDOW_SECONDS = 60;

/** Lease a worker gets when it asks for none: a few hundred training steps on one GPU. */
export const DEFAULT_LEASE_SECONDS = 300;

/** Shortest lease: one second (tests and fast workers that heartbeat often). */
export const MIN_LEASE_SECONDS = 1;

/** Longest lease: an hour; longer jobs heartbeat. */
export const MAX_LEASE_SECONDS = 3600;

/** Jobs one claim may take at once: a worker batches many users in one training run. */
export const MAX_CLAIM = 32;

/** A job is tried this many times (claims) before a lost lease or a retried failure fails it. */
export const MAX_JOB_ATTEMPTS = 3;

/** Versions listed per request by default and at most. */
export const DEFAULT_VERSIONS_LISTED = 100;
export const MAX_VERSIONS_LISTED = 1000;

/** How long a parsed manifest stays in an isolate's memory before R2 is read again. */
export const MANIFEST_CACHE_MS = 60_000;

/**
 * Rounds in which a writer that finished out of order re-copies a newer head into KV; each
 * round copies the head of that moment, so a few suffice even under many concurrent writers.
 */
export const MAX_HOT_COPY_ROUNDS = 8;

/** Verified tokens an isolate remembers (about 100 bytes each beside the token). */
export const VERIFIED_TOKEN_CACHE = 10_000;

/** KV takes one write per second per key: a refused hot-copy write waits this long, this many times. */
export const KV_RETRY_MS = 1100;
export const KV_WRITE_ATTEMPTS = 3;

/** Allowed clock skew between token issuer and edge. */
export const CLOCK_TOLERANCE_SECONDS = 5;
