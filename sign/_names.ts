// How evidence names a model, and when two names are the same model. One
// rule for model.sig statements, embedded claims and lockfile entries.

const lastSegment = (name: string) => name.slice(name.lastIndexOf("/") + 1);

/**
 * Whether evidence that names `stated` speaks for the model asked for as
 * `asked`. Equal names match. A bare name asked (no `/`, e.g. a local
 * model id) matches any name with that last segment: `tiny-bert` accepts
 * `acme/tiny-bert`. A qualified name asked (a hub id, or a local model's
 * full path) accepts a qualified name it ends with on a `/` boundary
 * (`/models/acme/tiny-bert` accepts `acme/tiny-bert`), and a bare name equal
 * to its last segment only from an OMS statement, which records the signed
 * folder's name (`model_signing`'s convention): `acme/tiny-bert` accepts OMS
 * `tiny-bert` but not an embedded claim `tiny-bert`, and never
 * `evil/tiny-bert`.
 *
 * @param asked The model asked for.
 * @param stated The name the evidence states.
 * @param folderName Whether `stated` is an OMS folder name.
 * @returns Whether they match.
 *
 * @example
 * ```ts
 * import { sameModelName } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * assert.ok(sameModelName("acme/tiny-bert", "tiny-bert", true));
 * assert.ok(!sameModelName("acme/tiny-bert", "tiny-bert", false));
 * assert.ok(!sameModelName("acme/tiny-bert", "evil/tiny-bert", true));
 * assert.ok(sameModelName("tiny-bert", "acme/tiny-bert", false));
 * assert.ok(sameModelName("/models/acme/tiny-bert", "acme/tiny-bert", false));
 * ```
 */
export function sameModelName(asked: string, stated: string, folderName: boolean): boolean {
  if (asked === stated) return true;
  if (stated === "" || asked === "") return false;
  if (!asked.includes("/")) return lastSegment(stated) === asked;
  if (!stated.includes("/") && !folderName) return false;
  return asked.endsWith(`/${stated}`);
}
