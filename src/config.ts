// Server + engine configuration: one zod schema, defaults as named constants, and the sources in
// priority order: CLI flags > environment variables > config file (--config) > defaults.
// Flag and env names derive from the field names (`maxBatchSize` → `--max-batch-size`,
// `SPECSERVE_MAX_BATCH_SIZE`), so adding a field here is all it takes to expose it everywhere.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { z } from 'zod';
import { ENGINE_DEFAULTS, type EngineOptions } from './engine/options.ts';
import { describeSaq, SAQ_DEFAULTS } from './kvcache/paged.ts';
import { STREAM_PACINGS, type StreamPacing } from './server/pacing.ts';

/** Where package.json lives; the default model path is resolved from here, not from the cwd. */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

export const SERVER_DEFAULTS = {
  /** Address to listen on. Defaults to `127.0.0.1` (local only). */
  host: '127.0.0.1',
  /** TCP port. Defaults to `8000`. */
  port: 8000,
  /** Model folder. Defaults to `models/specserve-tiny` in the package. */
  model: path.join(PACKAGE_ROOT, 'models', 'specserve-tiny'),
  /** Largest request body. Defaults to 1 MiB. */
  bodyLimit: 1024 * 1024,
  /** pino log level. Defaults to `info`. */
  logLevel: 'info' as LogLevel,
  /** Mean event-loop delay above which requests get 503 `overloaded`. Defaults to 1000 ms. */
  maxEventLoopDelayMs: 1000,
  /** How long shutdown waits for in-flight requests before aborting them. Defaults to 30 s. */
  shutdownTimeoutMs: 30_000,
  /** How streamed tokens are spaced when a request does not say. Defaults to `off` (as they come). */
  streamPacing: 'off' as StreamPacing,
};

/** Grace on top of shutdownTimeoutMs for aborting and closing the engine before a hard exit (the
 *  Kubernetes manifests' termination grace period must cover it too). */
export const SHUTDOWN_MARGIN_MS = 5000;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

// Env vars and flags arrive as strings; a JSON config file gives real numbers. Accept both.
const numeric = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => (typeof value === 'string' && value.trim() !== '' ? Number(value) : value), schema);
const integer = (min: number, max = Number.MAX_SAFE_INTEGER) => numeric(z.number().int().min(min).max(max));

const BYTE_UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 2 ** 10, mi: 2 ** 20, gi: 2 ** 30 };
/** "512MiB", "1M", "65536" → bytes; anything else is left for zod to reject. */
export function parseBytes(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(k|m|g|ki|mi|gi)?b?\s*$/i.exec(value);
  if (!match) return value;
  return Math.round(Number(match[1]) * BYTE_UNITS[(match[2] ?? '').toLowerCase()]);
}
const bytes = z.preprocess(parseBytes, z.number().int().min(1));

export const ConfigSchema = z
  .object({
    host: z.string().min(1).default(SERVER_DEFAULTS.host).describe('Address to listen on (0.0.0.0 for all interfaces)'),
    port: integer(0, 65535).default(SERVER_DEFAULTS.port).describe('TCP port (0 = any free port)'),
    model: z.string().min(1).default(SERVER_DEFAULTS.model).describe('Model folder (config.json, tokenizer.json, onnx/)'),
    modelId: z.string().min(1).optional().describe('Model name served in /v1/models and expected in requests (default: the folder name)'),
    apiKey: z.string().min(1).optional().describe('Require "Authorization: Bearer KEY" on all routes except /health and /metrics'),
    bodyLimit: bytes.default(SERVER_DEFAULTS.bodyLimit).describe('Largest request body in bytes (k, M, G, KiB, MiB, GiB suffixes allowed)'),
    logLevel: z.enum(LOG_LEVELS).default(SERVER_DEFAULTS.logLevel).describe(`Log level: ${LOG_LEVELS.join(', ')}`),
    maxEventLoopDelayMs: integer(0)
      .default(SERVER_DEFAULTS.maxEventLoopDelayMs)
      .describe('Answer 503 overloaded while the mean event-loop delay exceeds this (0 = never)'),
    shutdownTimeoutMs: integer(0)
      .default(SERVER_DEFAULTS.shutdownTimeoutMs)
      .describe('On SIGTERM/SIGINT, wait this long for in-flight requests before aborting them'),
    streamPacing: z
      .enum(STREAM_PACINGS)
      .default(SERVER_DEFAULTS.streamPacing)
      .describe('Streaming cadence when a request does not choose (stream_options.pacing): off (tokens leave as each step makes them) or smooth (a step\'s tokens spread over the measured step interval)'),
    provider: z.enum(['auto', 'cuda', 'cpu']).default(ENGINE_DEFAULTS.provider).describe('Execution provider: auto (CUDA, else CPU), cuda, cpu'),
    dtype: z
      .enum(['auto', 'fp32', 'int8', 'int4'])
      .default(ENGINE_DEFAULTS.dtype)
      .describe("Target weights among the model folder's graphs: auto (int8 on CPU when present, else fp32), fp32, int8, int4"),
    threads: integer(0).default(ENGINE_DEFAULTS.threads).describe('onnxruntime intra-op threads (0 = one fewer than the CPU cores, at least 1)'),
    spinThreads: z
      .union([z.boolean(), z.enum(['true', 'false'])])
      .transform((v) => v === true || v === 'true')
      .default(ENGINE_DEFAULTS.spinThreads)
      .describe("Let onnxruntime's idle threads spin (lower latency for a lone request on an idle machine; takes the cores HTTP/SSE needs under load)"),
    maxBatchSize: integer(1).default(ENGINE_DEFAULTS.maxBatchSize).describe('Most sequences decoded together in one forward pass'),
    maxQueuedRequests: integer(0).default(ENGINE_DEFAULTS.maxQueuedRequests).describe('Requests waiting beyond the running batch before new ones get 429'),
    kvCacheBytes: bytes.default(ENGINE_DEFAULTS.kvCacheBytes).describe('KV cache budget in bytes (suffixes allowed)'),
    kvCache: z
      .enum(['fp32', 'saq'])
      .default(ENGINE_DEFAULTS.kvCache)
      .describe(
        `KV cache precision: fp32 (exact) or saq (lossy, about a quarter of the bytes at 1,000 tokens: ${describeSaq(SAQ_DEFAULTS)}, ` +
          'keys per channel, values per token)',
      ),
    defaultDrafter: z.string().min(1).default(ENGINE_DEFAULTS.defaultDrafter).describe('Drafter for requests that do not choose one ("none" = plain decoding)'),
    maxDraftTokens: integer(1).default(ENGINE_DEFAULTS.maxDraftTokens).describe('Draft tokens verified per step when a request does not say'),
    requestTimeoutMs: integer(0).default(ENGINE_DEFAULTS.requestTimeoutMs).describe('Per-request deadline in ms (0 = none)'),
    prefillChunk: integer(1).default(ENGINE_DEFAULTS.prefillChunk).describe('Prompt tokens prefilled per step, so long prompts do not stall streams'),
    draftPolicy: z
      .enum(['goodput', 'static'])
      .default(ENGINE_DEFAULTS.draftPolicy)
      .describe('Draft tokens per sequence and step: goodput (measured tokens/ms per cap and batch size; speculation off where it does not pay) or static (32 per step shared over the batch)'),
    kangarooThreshold: numeric(z.number().gt(0).max(1))
      .optional()
      .describe("Kangaroo's stop threshold: drafting stops once the adapter's confidence falls below it (default: the value calibrated when the adapter was trained, kangaroo/manifest.json)"),
  })
  .strict();

export type Config = z.output<typeof ConfigSchema>;
export type ConfigKey = keyof Config;
/** What the HTTP layer (buildApp) needs. */
export type ServerConfig = Pick<Config, 'apiKey' | 'bodyLimit' | 'logLevel' | 'maxEventLoopDelayMs' | 'streamPacing'>;

export const CONFIG_KEYS = Object.keys(ConfigSchema.shape) as ConfigKey[];

/** Conventional names that do not follow the SPECSERVE_ pattern. */
const ENV_NAME_OVERRIDES: Partial<Record<ConfigKey, string>> = { host: 'HOST', port: 'PORT' };
const CONFIG_FILE_ENV = 'SPECSERVE_CONFIG';

export function envName(key: ConfigKey): string {
  return ENV_NAME_OVERRIDES[key] ?? `SPECSERVE_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

export function flagName(key: ConfigKey): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** Default as shown in --help and the README. */
export function shownDefault(key: ConfigKey): string | undefined {
  if (key === 'model') return 'models/specserve-tiny (in the package)';
  const value = ConfigSchema.shape[key].parse(undefined);
  return value === undefined ? undefined : String(value);
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

interface Sources {
  /** Values given as CLI flags (strings), keyed by field name. */
  cli?: Partial<Record<ConfigKey | 'config', string>>;
  env?: Record<string, string | undefined>;
  /** Relative paths on the command line and in env vars resolve from here. */
  cwd?: string;
}

export function resolveConfig({ cli = {}, env = {}, cwd = process.cwd() }: Sources): Config {
  const configFile = cli.config ?? nonEmpty(env[CONFIG_FILE_ENV]);
  const file = configFile === undefined ? undefined : readConfigFile(path.resolve(cwd, configFile));

  const merged: Record<string, unknown> = {};
  const origin: Partial<Record<ConfigKey, string>> = {};
  for (const key of CONFIG_KEYS) {
    const fromEnv = nonEmpty(env[envName(key)]);
    if (cli[key] !== undefined) {
      merged[key] = cli[key];
      origin[key] = flagName(key);
    } else if (fromEnv !== undefined) {
      merged[key] = fromEnv;
      origin[key] = envName(key);
    } else if (file && key in file.values) {
      merged[key] = file.values[key];
      origin[key] = file.path;
    }
  }
  // A relative model path means: relative to where it was written.
  if (typeof merged.model === 'string') {
    merged.model = path.resolve(origin.model === file?.path ? path.dirname(file!.path) : cwd, merged.model);
  }

  const result = ConfigSchema.safeParse(merged);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const key = String(issue.path[0] ?? '');
  const from = origin[key as ConfigKey];
  const shown = from === undefined ? '' : ` (from ${from}: ${JSON.stringify(merged[key])})`;
  throw new ConfigError(`Invalid configuration: ${key}${shown}: ${issue.message}`);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function readConfigFile(filePath: string): { path: string; values: Record<string, unknown> } {
  let values: unknown;
  try {
    values = JSON.parse(readFileSync(filePath, 'utf8'));
  } catch (error) {
    throw new ConfigError(`Cannot read config file ${filePath}: ${(error as Error).message}`);
  }
  if (values === null || typeof values !== 'object' || Array.isArray(values)) {
    throw new ConfigError(`Config file ${filePath} must hold a JSON object`);
  }
  const unknown = Object.keys(values).filter((key) => !(CONFIG_KEYS as string[]).includes(key));
  if (unknown.length > 0) {
    throw new ConfigError(`Unknown key '${unknown[0]}' in config file ${filePath}; known keys: ${CONFIG_KEYS.join(', ')}`);
  }
  return { path: filePath, values: values as Record<string, unknown> };
}

/**
 * The commander program: one option per config field, each showing its default and env var in
 * --help. Values are read back only where their source is the command line, because env vars and
 * the config file are merged by resolveConfig in the documented order.
 */
export function buildProgram(version: string): Command {
  const program = new Command('specserve')
    .description('OpenAI-compatible LLM inference server with speculative decoding')
    .version(version)
    .exitOverride()
    .allowExcessArguments(false)
    .addOption(new Option('--config <file>', 'JSON config file with any of the fields below (camelCase keys)').env(CONFIG_FILE_ENV));
  for (const key of CONFIG_KEYS) {
    const option = new Option(`${flagName(key)} <${valueName(key)}>`, ConfigSchema.shape[key].description ?? key).env(envName(key));
    const shown = shownDefault(key);
    // Shown only: values whose source is 'default' are ignored by loadConfig.
    if (shown !== undefined) option.default(shown, shown);
    program.addOption(option);
  }
  return program;
}

const VALUE_NAMES: Partial<Record<ConfigKey, string>> = {
  host: 'addr',
  model: 'dir',
  modelId: 'id',
  apiKey: 'key',
  logLevel: 'level',
  provider: 'name',
  defaultDrafter: 'name',
  spinThreads: 'true|false',
};

function valueName(key: ConfigKey): string {
  if (VALUE_NAMES[key]) return VALUE_NAMES[key];
  if (key.endsWith('Ms')) return 'ms';
  if (key.endsWith('Bytes') || key === 'bodyLimit') return 'bytes';
  return 'n';
}

/** Parses argv (user arguments only) and merges every source. Throws CommanderError or ConfigError. */
export function loadConfig(argv: string[], env: Record<string, string | undefined>, cwd = process.cwd()): Config {
  const program = buildProgram(packageVersion());
  program.parse(argv, { from: 'user' });
  const cli: Partial<Record<ConfigKey | 'config', string>> = {};
  for (const key of [...CONFIG_KEYS, 'config'] as const) {
    if (program.getOptionValueSource(key) === 'cli') cli[key] = program.getOptionValue(key) as string;
  }
  return resolveConfig({ cli, env, cwd });
}

/** The configuration table for the README, generated so it cannot drift from the schema. */
export function configTableMarkdown(): string {
  const rows = CONFIG_KEYS.map((key) => {
    const shown = shownDefault(key);
    const description = (ConfigSchema.shape[key].description ?? '').replaceAll('|', '\\|');
    return `| \`${flagName(key)}\` | \`${envName(key)}\` | ${shown === undefined ? '—' : `\`${shown}\``} | ${description} |`;
  });
  return [
    '| flag | env | default | meaning |',
    '| --- | --- | --- | --- |',
    `| \`--config <file>\` | \`${CONFIG_FILE_ENV}\` | — | JSON file with any of the fields below (camelCase keys) |`,
    ...rows,
  ].join('\n');
}

export function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

export function toEngineOptions(config: Config): EngineOptions {
  return {
    provider: config.provider,
    dtype: config.dtype,
    threads: config.threads,
    spinThreads: config.spinThreads,
    maxBatchSize: config.maxBatchSize,
    maxQueuedRequests: config.maxQueuedRequests,
    kvCacheBytes: config.kvCacheBytes,
    kvCache: config.kvCache,
    defaultDrafter: config.defaultDrafter,
    maxDraftTokens: config.maxDraftTokens,
    requestTimeoutMs: config.requestTimeoutMs,
    prefillChunk: config.prefillChunk,
    draftPolicy: config.draftPolicy,
    kangarooThreshold: config.kangarooThreshold,
    modelDir: config.model,
    modelId: config.modelId,
  };
}
