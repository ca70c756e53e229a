// `npm run cluster` for real: two replicas of the bundled model behind Debian's HAProxy on
// loopback, under load, with one replica drained (SIGTERM) and one killed (SIGKILL).
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createParser } from 'eventsource-parser';
import { ROOT } from '../helpers/model.ts';

const haproxy = spawnSync('sh', ['-c', 'command -v haproxy || ls /usr/sbin/haproxy'], { encoding: 'utf8' }).stdout.trim();
const skip = haproxy ? undefined : process.env.SPECSERVE_REQUIRE_HAPROXY === '1' ? undefined : 'HAProxy is not installed (apt-get install haproxy)';
if (!haproxy && process.env.SPECSERVE_REQUIRE_HAPROXY === '1') throw new Error('HAProxy is required here (SPECSERVE_REQUIRE_HAPROXY=1) and not installed');

const MODEL = 'specserve-tiny';
const PROMPT = 'The socket module provides access to the BSD socket interface. It is available on';

/** Four consecutive free ports (the balancer and up to three replicas). */
async function freePorts(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    const ok = await Promise.all([0, 1, 2, 3].map((i) => new Promise<boolean>((resolve) => {
      const server = net.createServer().once('error', () => resolve(false)).listen(base + i, '127.0.0.1', () => server.close(() => resolve(true)));
    })));
    if (ok.every(Boolean)) return base;
  }
  throw new Error('no free ports');
}

class Cluster {
  readonly lines: { at: number; text: string }[] = [];
  #waiters: { re: RegExp; since: number; resolve: (m: RegExpExecArray) => void }[] = [];
  constructor(readonly child: ChildProcess, readonly port: number) {
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const text = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        this.lines.push({ at: performance.now(), text });
        this.#check();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  #check(): void {
    this.#waiters = this.#waiters.filter((w) => {
      for (const line of this.lines) {
        if (line.at < w.since) continue;
        const m = w.re.exec(line.text);
        if (m) {
          w.resolve(m);
          return false;
        }
      }
      return true;
    });
  }

  /** The first status line matching `re` printed at or after `since`. */
  waitFor(re: RegExp, since = 0, timeoutMs = 90_000): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line matching ${re} in ${timeoutMs} ms:\n${this.lines.slice(-30).map((l) => l.text).join('\n')}`)), timeoutMs);
      this.#waiters.push({ re, since, resolve: (m) => (clearTimeout(timer), resolve(m)) });
      this.#check();
    });
  }

  /** pid of a replica, from its latest "ready" line. */
  async pidOf(name: string, since = 0): Promise<number> {
    const m = await this.waitFor(new RegExp(`^cluster: replica ${name} ready \\(pid (\\d+)\\)`), since);
    return Number(m[1]);
  }
}

interface StreamResult {
  status: number;
  replica: string | null;
  text: string;
  done: boolean;
  finish: string | null;
  error: string | null;
  endedAt: number;
}

/** One streamed completion; never throws: what happened is in the result. */
async function stream(url: string, maxTokens: number, onHeaders?: (replica: string | null) => void): Promise<StreamResult> {
  const result: StreamResult = { status: 0, replica: null, text: '', done: false, finish: null, error: null, endedAt: 0 };
  try {
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: PROMPT, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, speculative: { drafter: 'none' } }),
    });
    result.status = res.status;
    result.replica = res.headers.get('x-specserve-replica');
    onHeaders?.(result.replica);
    if (res.status !== 200) {
      result.error = await res.text();
      return result;
    }
    const parser = createParser({
      onEvent: (e) => {
        if (e.data === '[DONE]') return void (result.done = true);
        const data = JSON.parse(e.data);
        if (data.error) result.error = data.error.message;
        for (const c of data.choices ?? []) {
          result.text += c.text ?? '';
          if (c.finish_reason) result.finish = c.finish_reason;
        }
      },
    });
    const decoder = new TextDecoder();
    for await (const chunk of res.body!) parser.feed(decoder.decode(chunk, { stream: true }));
  } catch (error) {
    result.error = (error as Error).message;
  } finally {
    result.endedAt = performance.now();
  }
  return result;
}

const complete = (r: StreamResult) => r.status === 200 && r.done && r.finish === 'length' && r.error === null;

describe('npm run cluster: two replicas behind HAProxy', { skip }, () => {
  let cluster: Cluster;
  before(async () => {
    const port = await freePorts();
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts', 'cluster.ts'), '--replicas', '2', '--port', String(port), '--threads', '1', '--health-interval-ms', '300', '--', '--shutdown-timeout-ms', '20000'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cluster = new Cluster(child, port);
    await cluster.waitFor(/^cluster: ready: /);
  });
  after(async () => {
    if (!cluster || cluster.child.exitCode !== null) return;
    const exited = new Promise((resolve) => cluster.child.once('exit', resolve));
    cluster.child.kill('SIGTERM');
    await exited;
  });

  test('24 concurrent streams through the balancer all complete, on both replicas', async () => {
    const results = await Promise.all(Array.from({ length: 24 }, () => stream(cluster.url, 64)));
    const failed = results.filter((r) => !complete(r));
    assert.deepEqual(failed, [], `${failed.length} streams failed`);
    assert.deepEqual(new Set(results.map((r) => r.replica)), new Set(['r1', 'r2']));
    // identical requests, identical greedy text, whichever replica served them
    assert.equal(new Set(results.map((r) => r.text)).size, 1);
  });

  test('a body over the limit gets its 413, directly and through the balancer', async () => {
    const body = JSON.stringify({ model: MODEL, prompt: 'x'.repeat(20 * 1024 * 1024), max_tokens: 1 });
    for (const url of [cluster.url, `http://127.0.0.1:${cluster.port + 1}`]) {
      const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      assert.equal(res.status, 413, url);
      assert.equal((await res.json()).error.code, 'body_too_large', url);
    }
  });

  test('SIGTERM one replica under load: its streams finish, new requests go to the other, none fails', async () => {
    const pid = await cluster.pidOf('r1');
    let signalled = false;
    // long streams, so some are in flight on r1 when it is told to stop
    const inFlight = Array.from({ length: 8 }, () =>
      stream(cluster.url, 600, (replica) => {
        if (replica === 'r1' && !signalled) {
          signalled = true;
          setTimeout(() => process.kill(pid, 'SIGTERM'), 50);
        }
      }),
    );
    // and a steady trickle of new requests while it drains
    const later: Promise<StreamResult>[] = [];
    for (let i = 0; i < 12; i++) {
      await new Promise((r) => setTimeout(r, 100));
      later.push(stream(cluster.url, 16));
    }
    const all = [...(await Promise.all(inFlight)), ...(await Promise.all(later))];
    assert.ok(signalled, 'no stream reached r1');
    const failed = all.filter((r) => !complete(r));
    assert.deepEqual(failed, [], `${failed.length} requests failed`);
    assert.ok(all.slice(0, 8).some((r) => r.replica === 'r1'), 'r1 finished no in-flight stream');
    await cluster.waitFor(/^cluster: replica r1 exited/);
    await cluster.pidOf('r1', performance.now()); // restarted
    await cluster.waitFor(/Server replicas\/r1 is UP/, performance.now() - 60_000);
  });

  test('SIGKILL one replica under load: its streams end at once with an error, later requests succeed, it comes back', async (t) => {
    const pid = await cluster.pidOf('r2');
    let killedAt = 0;
    const inFlight = Array.from({ length: 8 }, () =>
      stream(cluster.url, 900, (replica) => {
        if (replica === 'r2' && !killedAt) {
          killedAt = -1;
          setTimeout(() => {
            killedAt = performance.now();
            process.kill(pid, 'SIGKILL');
          }, 100);
        }
      }),
    );
    const results = await Promise.all(inFlight);
    assert.ok(killedAt > 0, 'no stream reached r2');
    const onDead = results.filter((r) => r.replica === 'r2');
    const cut = onDead.filter((r) => !complete(r));
    assert.ok(cut.length > 0, 'no stream was in flight on r2 when it died');
    for (const r of cut) {
      assert.ok(!r.done, 'a cut stream must not end with [DONE]');
      assert.ok(r.endedAt - killedAt < 5_000, `a stream on the dead replica hung ${(r.endedAt - killedAt).toFixed(0)} ms`);
    }
    for (const r of results.filter((x) => x.replica !== 'r2')) assert.ok(complete(r), `a stream on r1 failed: ${r.error}`);
    // right after the kill: the balancer routes around it (retrying a refused connection elsewhere)
    const after = await Promise.all(Array.from({ length: 8 }, () => stream(cluster.url, 16)));
    assert.deepEqual(after.filter((r) => !complete(r)), []);
    await cluster.waitFor(/Server replicas\/r2 is DOWN/, killedAt - 1_000);
    const downAt = cluster.lines.find((l) => l.at >= killedAt - 1_000 && /Server replicas\/r2 is DOWN/.test(l.text))!.at;
    t.diagnostic(`HAProxy took r2 out of rotation ${(downAt - killedAt).toFixed(0)} ms after the kill; cut streams ended within ${Math.max(...cut.map((r) => r.endedAt - killedAt)).toFixed(0)} ms`);
    await cluster.pidOf('r2', killedAt); // restarted by the cluster command
  });

  test('SIGTERM to the cluster drains and stops everything', async () => {
    const inFlight = stream(cluster.url, 300);
    await new Promise((r) => setTimeout(r, 100));
    const exited = new Promise<number | null>((resolve) => cluster.child.once('exit', resolve));
    cluster.child.kill('SIGTERM');
    const result = await inFlight;
    assert.ok(complete(result), `the in-flight stream failed: ${result.error}`);
    assert.equal(await exited, 0);
    assert.ok(cluster.lines.some((l) => l.text === 'cluster: stopped'));
    const refused = await fetch(`${cluster.url}/health`).then(() => false, () => true);
    assert.ok(refused, 'the balancer still answers after the cluster stopped');
  });
});
