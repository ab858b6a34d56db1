/** A demo user: its id (the JWT sub), a local token and where its adapter came from. */
export interface DemoUser {
  id: string;
  token: string;
  source: "shipped" | "random" | "token";
}

/** What `npm start` writes into the local assets (never deployed). */
export interface DemoConfig {
  model: string;
  users: DemoUser[];
}

/** The local demo config, or null on a deployed page (then a token is pasted instead). */
export async function loadDemoConfig(): Promise<DemoConfig | null> {
  const response = await fetch("/demo-config.json", { cache: "no-store" });
  if (!response.ok) return null;
  const config = (await response.json()) as DemoConfig;
  if (typeof config.model !== "string" || !Array.isArray(config.users)) {
    throw new Error(`demo-config.json is malformed: ${JSON.stringify(config).slice(0, 200)}`);
  }
  return config;
}

/** A user from a pasted token: its `sub` claim, read (not verified: the API verifies it). */
export function userFromToken(token: string): DemoUser {
  const part = token.split(".")[1];
  if (part === undefined) throw new Error("the token is not a JWT (header.payload.signature)");
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
  const sub = (JSON.parse(json) as { sub?: unknown }).sub;
  if (typeof sub !== "string")
    throw new Error(`the token has no string sub claim (got ${JSON.stringify(sub)})`);
  return { id: sub, token, source: "token" };
}
