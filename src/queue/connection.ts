/**
 * Redis connections for the queue: the URL users give (`--queue redis://HOST:PORT/DB`), the connection options
 * every client shares, and the lazy import of BullMQ and ioredis (a command that does not use --queue never loads
 * them).
 *
 * Reconnection is ioredis's: its retry strategy reconnects forever with a capped delay, and
 * `maxRetriesPerRequest: null` (which BullMQ requires of workers) keeps commands queued while Redis is away, so a
 * Redis restart pauses workers and coordinator instead of failing them. Only the first connection is checked
 * eagerly: an unreachable Redis at start is a one-line error, not a silent wait.
 */
import type { RedisOptions } from 'bullmq';
import { UsageError } from '../cli/args.js';

export interface RedisTarget {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username?: string;
  readonly password?: string;
  readonly tls: boolean;
  /** The URL without its password, for messages. */
  readonly display: string;
}

const EXPECTED = 'redis://[USER[:PASSWORD]@]HOST[:PORT][/DB] (or rediss:// for TLS)';

/** Parse `--queue`; a malformed URL is a UsageError saying what is expected. */
export function parseRedisUrl(v: unknown, flag = 'queue'): RedisTarget {
  if (typeof v !== 'string' || v.trim() === '') throw new UsageError(`--${flag}: expected ${EXPECTED}, found ${v === undefined ? 'nothing' : `"${String(v)}"`}`);
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new UsageError(`--${flag}: expected ${EXPECTED}, found "${v}"`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new UsageError(`--${flag}: expected ${EXPECTED}, found the scheme "${u.protocol}"`);
  if (u.hostname === '') throw new UsageError(`--${flag}: expected a host in ${EXPECTED}, found "${v}"`);
  const port = u.port === '' ? 6379 : Number(u.port);
  const path = u.pathname.replace(/^\//, '');
  const db = path === '' ? 0 : Number(path);
  if (!/^\d{0,5}$/.test(path) || !Number.isSafeInteger(db) || db > 65535) throw new UsageError(`--${flag}: expected a database number 0..65535 after the port, found "/${path}"`);
  if (u.search !== '' || u.hash !== '') throw new UsageError(`--${flag}: expected no query or fragment in ${EXPECTED}, found "${u.search}${u.hash}"`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    host, port, db,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === 'rediss:',
    display: `${u.protocol}//${u.username || u.password ? `${u.username}${u.password ? ':***' : ''}@` : ''}${u.host}/${db}`,
  };
}

/** Options for every long-lived client: reconnect forever (delay 100 ms, growing to 2 s), never fail a queued command. */
export function connectionOptions(t: RedisTarget): RedisOptions {
  return {
    host: t.host, port: t.port, db: t.db, username: t.username, password: t.password,
    ...(t.tls ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: (times: number) => Math.min(100 * times, 2000),
  };
}

export type BullMQ = typeof import('bullmq');
export type IORedis = typeof import('ioredis');

/** BullMQ and ioredis, imported on first use. */
export async function queueLibs(): Promise<{ bullmq: BullMQ; Redis: IORedis['Redis'] }> {
  try {
    const [bullmq, ioredis] = await Promise.all([import('bullmq'), import('ioredis')]);
    return { bullmq, Redis: ioredis.Redis };
  } catch (e) {
    throw new Error(`--queue needs the bullmq and ioredis packages, which could not be loaded (${(e as Error).message.split('\n')[0]}); run npm ci in the dyllm folder`);
  }
}

/**
 * Connect once, without retrying, and fail with one line if Redis cannot be reached; also checks that the server
 * is recent enough for BullMQ (Redis ≥ 6.2 is recommended; 5 is the minimum BullMQ accepts).
 */
export async function checkRedis(t: RedisTarget, timeoutMs = 5000): Promise<void> {
  const { Redis } = await queueLibs();
  const r = new Redis({ ...connectionOptions(t), lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: timeoutMs });
  let last: Error | null = null;
  r.on('error', (e: Error) => (last = e));
  try {
    await r.connect();
    const info = await r.info('server');
    const v = /redis_version:(\d+)\.(\d+)/.exec(info);
    if (v && Number(v[1]) < 5) throw new Error(`expected Redis ≥ 5 for BullMQ, found ${v[1]}.${v[2]}`);
  } catch (e) {
    // ioredis rejects connect() with "Connection is closed."; the cause (ECONNREFUSED, …) came as an error event.
    const why = ((last as Error | null) ?? (e as Error)).message.split('\n')[0];
    throw new Error(`cannot use Redis at ${t.display}: ${why} (start redis-server there, or fix --queue)`);
  } finally {
    r.disconnect();
  }
}
