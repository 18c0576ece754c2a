/**
 * load/hub.ts for the browser bundle (scripts/build-web.mjs): the page loads a model from bytes it fetched, never
 * from a folder or the Hugging Face cache, so naming a model by folder or hub id is refused in one line.
 */
export function resolveModelDir(model: string): string {
  throw new Error(`cannot open the model folder or hub id ${JSON.stringify(model)} in the browser; the /local page loads the served model's files`);
}
