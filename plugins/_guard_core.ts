// The state the guard's wrappers (fetch, cache, session gate) share, built
// once by installGuard (_guard.ts) from resolved options.
import type { Decisions } from "./_guard_decisions.ts";
import type { VerifiedCopies } from "./_guard_copies.ts";
import type { Locator } from "./_guard_locate.ts";
import type { CacheTags } from "./_cache_tags.ts";
import type { GuardPlatform, Store, TransformersEnv } from "./_guard_types.ts";

export interface GuardCore {
  env: TransformersEnv;
  mode: "enforce" | "warn";
  /** Weights kept as verified buffers instead of private files. */
  inMemory: boolean;
  platform: GuardPlatform;
  decisions: Decisions;
  copies: VerifiedCopies;
  locator: Locator;
  /** The fetch transformers.js had before the guard. */
  originalFetch: TransformersEnv["fetch"];
  /** The cache transformers.js would use now (read at each call). */
  store(): Store | undefined;
  /** Responses over local files made by the guarded fetch: read from the file itself. */
  localBodies: WeakMap<Response, string>;
  /** transformers.js had `useFS` on: local files are read directly, not through its fetch. */
  readLocalsDirectly: boolean;
  /** Browsers with `verifiedStore`: the Web Cache tagging key (see _cache_tags.ts). */
  tags?: Promise<CacheTags | undefined>;
  /** transformers.js 3: no env.fetch; the guard wraps the global fetch for its model files. */
  legacy: boolean;
  /** Warnings already printed (warn mode prints each once). */
  warned: Set<string>;
}
