/**
 * `dyllm serve`: flags → startServer. Prints one line with the URL on stdout once the model is loaded; SIGTERM
 * and SIGINT drain in-flight requests (new ones get 503) and then exit. Wrong flags are UsageErrors (exit 2).
 * Listening beyond loopback without an API key prints a one-line warning on stderr.
 */
import { SERVER_DEFAULTS, startServer } from '../server/app.js';
import { isLoopbackAddress, parseCorsOrigins } from '../server/security.js';
import { BACKEND_HELP, LOAD_FLAGS, MAX_THREADS, applyPackCacheFlag, generateBackend, modelDir as resolveModelArg, parse, quantOption, refuseQuantOnGpu, UsageError } from './args.js';


export const SERVE_HELP = `Usage: dyllm serve [options]

  --model M           model folder, HF id org/name[@rev] or bundled name (default: dyllm-demo)
  --host H            listen address (default ${SERVER_DEFAULTS.host})
  --port N            port, 0 = any free port (default ${SERVER_DEFAULTS.port})
  --backend B         ${BACKEND_HELP}
  --quant Q           none | int8 | q4: quantise the linear layers while loading (default none; docs/quantization.md)
  --pack-cache        map the packed weights from a cache file, writing it on first use (same as
                      DYLLM_PACK_CACHE=1; docs/loading.md)
  --threads N         kernel threads, 1-${MAX_THREADS} (default: env DYLLM_THREADS, else every CPU)
  --max-batch N       requests denoised together, one merged forward per step (default ${SERVER_DEFAULTS.maxBatch})
  --max-queue N       requests waiting beyond the batch before 503 (default ${SERVER_DEFAULTS.maxQueue})
  --max-tokens N      cap on max_tokens, the canvas length (default ${SERVER_DEFAULTS.maxTokens})
  --max-prompt-tokens N  cap on prompt length in tokens (default ${SERVER_DEFAULTS.maxPromptTokens})
  --timeout-ms N      per-request limit, 0 = none (default ${SERVER_DEFAULTS.timeoutMs})
  --body-limit N      request body limit in bytes (default ${SERVER_DEFAULTS.bodyLimit})
  --model-name NAME   model id in /v1/models and responses (default: the folder name)
  --api-key KEY       require "Authorization: Bearer KEY" on every route but /health and the web view
                      (default: env DYLLM_API_KEY, else none; prefer the variable: flags show in ps)
  --cors-origin O     allow browser requests from origin O (http://host:port, or *); repeatable or a
                      comma list. Other origins are refused (403); a loopback server refuses non-loopback Host names

Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, /health, /metrics, / (web view).
Request fields and the denoise-streaming extension: docs/server.md.`;

function intFlag(values: Record<string, unknown>, flag: string, min: number): number | undefined {
  const v = values[flag];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${flag}: expected an integer ≥ ${min}, found "${String(v)}"`);
  return n;
}

export async function cmdServe(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    model: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    backend: { type: 'string' },
    'max-batch': { type: 'string' },
    'max-queue': { type: 'string' },
    'max-tokens': { type: 'string' },
    'max-prompt-tokens': { type: 'string' },
    'timeout-ms': { type: 'string' },
    'body-limit': { type: 'string' },
    'model-name': { type: 'string' },
    'api-key': { type: 'string' },
    'cors-origin': { type: 'string', multiple: true },
    help: { type: 'boolean', short: 'h' },
    ...LOAD_FLAGS,
  }, false);
  if (values.help) {
    process.stdout.write(SERVE_HELP + '\n');
    return;
  }
  // WebGPU: the adapter is probed here (none: one line, exit 2); the engine worker builds the GPU model as generate
  // does, and requests whose acceleration the GPU does not run are refused one by one (400).
  const choice = generateBackend(values.backend);
  const webgpu = typeof choice === 'object' ? choice.webgpu : null;
  const backend = webgpu !== null ? 'webgpu' : (choice as Exclude<typeof choice, object>);
  const quant = quantOption(values.quant);
  if (webgpu !== null) refuseQuantOnGpu(quant);
  applyPackCacheFlag(values);
  const port = intFlag(values, 'port', 0);
  if (port !== undefined && port > 65535) throw new UsageError(`--port: expected 0..65535, found ${port}`);
  // An empty DYLLM_API_KEY counts as unset; an empty --api-key is a mistake.
  const apiKey = (values['api-key'] as string | undefined) ?? (process.env.DYLLM_API_KEY?.trim() || undefined);
  if (apiKey !== undefined && apiKey.trim() === '') throw new UsageError('--api-key: expected a non-empty key, found an empty string');
  if (apiKey !== undefined && /\s/.test(apiKey.trim())) {
    throw new UsageError(`${values['api-key'] !== undefined ? '--api-key' : 'DYLLM_API_KEY'}: expected a key without spaces (it travels as "Authorization: Bearer KEY")`);
  }
  let corsOrigins: string[];
  try {
    corsOrigins = parseCorsOrigins((values['cors-origin'] as string[] | undefined) ?? []);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const host = (values.host as string | undefined) ?? SERVER_DEFAULTS.host;
  const modelDir = resolveModelArg(values.model);
  const server = await startServer({
    modelDir,
    backend,
    quant,
    host,
    port,
    maxBatch: intFlag(values, 'max-batch', 1),
    maxQueue: intFlag(values, 'max-queue', 0),
    maxTokens: intFlag(values, 'max-tokens', 1),
    maxPromptTokens: intFlag(values, 'max-prompt-tokens', 1),
    timeoutMs: intFlag(values, 'timeout-ms', 0),
    bodyLimit: intFlag(values, 'body-limit', 1),
    modelName: values['model-name'] as string | undefined,
    apiKey: apiKey?.trim() ?? null,
    corsOrigins,
  });
  if (!isLoopbackAddress(host) && apiKey === undefined) {
    process.stderr.write(`dyllm: warning: listening on ${host} without an API key: anyone who can reach this address can run generations (set DYLLM_API_KEY or --api-key)\n`);
  }
  if (webgpu !== null) process.stderr.write(`dyllm: --backend webgpu: running on ${webgpu}\n`);
  process.stdout.write(`dyllm: serving ${modelDir} (${server.model.arch}, ${server.model.backend}) on ${server.url}\n`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`dyllm: ${sig}: draining in-flight requests\n`);
      server.drain().then(() => {
        process.stderr.write('dyllm: drained, exiting\n');
        resolve();
      }, () => resolve());
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
