import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CommanderError } from 'commander';
import {
  CONFIG_KEYS,
  ConfigError,
  PACKAGE_ROOT,
  SERVER_DEFAULTS,
  buildProgram,
  configTableMarkdown,
  envName,
  flagName,
  loadConfig,
  resolveConfig,
  shownDefault,
  toEngineOptions,
} from '../../src/config.ts';
import { ENGINE_DEFAULTS } from '../../src/engine/options.ts';

function configFile(values: unknown): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'specserve-config-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, typeof values === 'string' ? values : JSON.stringify(values));
  return file;
}

describe('config', () => {
  test('defaults: server constants and ENGINE_DEFAULTS; model relative to the package, not the cwd', () => {
    const config = resolveConfig({ cwd: '/tmp' });
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 8000);
    assert.equal(config.bodyLimit, 1024 * 1024);
    assert.equal(config.model, path.join(PACKAGE_ROOT, 'models', 'specserve-tiny'));
    assert.equal(config.apiKey, undefined);
    assert.equal(config.modelId, undefined);
    for (const [key, value] of Object.entries(SERVER_DEFAULTS)) assert.equal(config[key as keyof typeof config], value, key);
    const engine = toEngineOptions(config);
    for (const [key, value] of Object.entries(ENGINE_DEFAULTS)) assert.equal(engine[key as keyof typeof engine], value, key);
    assert.equal(engine.modelDir, config.model);
  });

  test('priority: CLI flag > env var > config file > default', () => {
    const file = configFile({ port: 1001, host: '0.0.0.0', maxBatchSize: 4, threads: 2 });
    const env = { PORT: '1002', SPECSERVE_MAX_BATCH_SIZE: '8', SPECSERVE_CONFIG: file };
    const config = resolveConfig({ cli: { port: '1003' }, env });
    assert.equal(config.port, 1003);
    assert.equal(config.maxBatchSize, 8);
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.threads, 2);
    assert.equal(resolveConfig({ env }).port, 1002);
    assert.equal(resolveConfig({ cli: { config: file } }).port, 1001);
  });

  test('loadConfig parses argv; npm-style "--port 9000" wins over PORT', () => {
    assert.equal(loadConfig(['--port', '9000'], { PORT: '1' }).port, 9000);
    assert.equal(loadConfig([], { PORT: '1' }).port, 1);
    const config = loadConfig(['--max-batch-size', '3', '--api-key', 'k', '--kv-cache-bytes', '64MiB'], {});
    assert.equal(config.maxBatchSize, 3);
    assert.equal(config.apiKey, 'k');
    assert.equal(config.kvCacheBytes, 64 * 2 ** 20);
  });

  test('the well-known env names', () => {
    const config = resolveConfig({
      env: { HOST: '::1', PORT: '1234', SPECSERVE_MODEL: 'm', SPECSERVE_API_KEY: 'sekret', SPECSERVE_DEFAULT_DRAFTER: 'hydra' },
      cwd: '/srv',
    });
    assert.deepEqual([config.host, config.port, config.model, config.apiKey, config.defaultDrafter], ['::1', 1234, '/srv/m', 'sekret', 'hydra']);
  });

  test('an empty env var counts as unset', () => {
    assert.equal(resolveConfig({ env: { SPECSERVE_API_KEY: '', PORT: '' } }).apiKey, undefined);
  });

  test('a relative model path in the config file is relative to the file', () => {
    const file = configFile({ model: 'weights/tiny' });
    assert.equal(resolveConfig({ cli: { config: file } }).model, path.join(path.dirname(file), 'weights/tiny'));
  });

  test('byte sizes accept unit suffixes', () => {
    assert.equal(resolveConfig({ cli: { bodyLimit: '2MiB' } }).bodyLimit, 2 * 2 ** 20);
    assert.equal(resolveConfig({ cli: { bodyLimit: '10k' } }).bodyLimit, 10_000);
    assert.equal(resolveConfig({ cli: { bodyLimit: '4096' } }).bodyLimit, 4096);
  });

  test('invalid values name the field and where they came from', () => {
    assert.throws(() => resolveConfig({ cli: { port: '70000' } }), (error: Error) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /port/);
      assert.match(error.message, /--port/);
      return true;
    });
    assert.throws(() => resolveConfig({ env: { SPECSERVE_MAX_BATCH_SIZE: 'lots' } }), /maxBatchSize.*SPECSERVE_MAX_BATCH_SIZE/);
    assert.throws(() => resolveConfig({ cli: { provider: 'tpu' } }), /provider/);
    assert.throws(() => resolveConfig({ cli: { bodyLimit: '12 parsecs' } }), /bodyLimit/);
    assert.throws(() => resolveConfig({ cli: { config: configFile({ threads: -1 }) } }), /threads.*config\.json/);
  });

  test('config file problems: unknown key, bad JSON, not an object, missing file', () => {
    assert.throws(() => resolveConfig({ cli: { config: configFile({ prot: 1 }) } }), /Unknown key 'prot'/);
    assert.throws(() => resolveConfig({ cli: { config: configFile('{port: 1') } }), ConfigError);
    assert.throws(() => resolveConfig({ cli: { config: configFile([1]) } }), /JSON object/);
    assert.throws(() => resolveConfig({ cli: { config: '/nonexistent/specserve.json' } }), /Cannot read config file/);
  });

  test('unknown flags are a CommanderError', () => {
    assert.throws(() => loadConfig(['--prot', '1'], {}), CommanderError);
  });

  test('configTableMarkdown has a row per field with flag, env var and default', () => {
    const lines = configTableMarkdown().split('\n');
    for (const key of CONFIG_KEYS) {
      const row = lines.find((line) => line.startsWith(`| \`${flagName(key)}\` |`));
      assert.ok(row, key);
      assert.ok(row.includes(`\`${envName(key)}\``), row);
      const shown = shownDefault(key);
      if (shown !== undefined) assert.ok(row.includes(`\`${shown}\``), row);
    }
    assert.equal(lines.length, CONFIG_KEYS.length + 3);
  });

  test('--help lists every option with its env var and default', () => {
    const help = buildProgram('0.0.0').helpInformation({ error: false }).replace(/\s+/g, ' ');
    for (const key of CONFIG_KEYS) {
      assert.ok(help.includes(flagName(key)), `${key} flag`);
      assert.ok(help.includes(`env: ${envName(key)}`), `${key} env`);
      const shown = shownDefault(key);
      if (shown !== undefined) assert.ok(help.includes(`default: ${shown}`), `${key} default`);
    }
    assert.ok(help.includes('--config'));
  });
});

describe('cli process', () => {
  const run = promisify(execFile);
  const cli = (args: string[]) => run(process.execPath, ['--import', 'tsx', path.join(PACKAGE_ROOT, 'src/cli.ts'), ...args], { cwd: PACKAGE_ROOT });

  test('invalid config exits 2 with a message naming the field', async () => {
    await assert.rejects(cli(['--port', '-5']), (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 2);
      assert.match(error.stderr, /Invalid configuration: port/);
      return true;
    });
  });

  test('--help exits 0', async () => {
    const { stdout } = await cli(['--help']);
    assert.match(stdout, /--max-batch-size <n>/);
  });
});
