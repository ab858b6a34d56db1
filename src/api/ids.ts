// Id patterns of path segments, validated by the route schemas.

/** Model ids: manifest ids, lowercase, usable as a path segment and a key prefix. */
export const MODEL_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** User ids (the JWT sub): no slash, so storage keys stay unambiguous. */
export const USER_ID = /^[A-Za-z0-9._@|:+=-]{1,128}$/;

/** Model file names: one path segment. */
export const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
