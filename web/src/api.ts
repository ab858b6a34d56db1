// The page's calls to the edge API, through the one API client (src/client/api).

import type { AdapterVersion } from "../../src/client/index.ts";
import { EdgeApi, NotFoundError } from "../../src/client/index.ts";

/** The API of the page's own origin, with the user's token (or none, for public routes). */
export const edgeApi = (token?: string) => new EdgeApi({ api: location.origin, token });

/** Newest first; empty when the user has no adapter yet. */
export async function listVersions(
  model: string,
  user: string,
  token: string,
): Promise<AdapterVersion[]> {
  try {
    return await edgeApi(token).listVersions(model, user);
  } catch (error) {
    if (error instanceof NotFoundError) return [];
    throw error;
  }
}
