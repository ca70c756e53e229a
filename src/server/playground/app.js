// The playground: streams a completion or chat reply with include_token_sources and shows where
// every token came from, live statistics, and (race mode) the same prompt decoded plainly beside it.
// Plain browser JavaScript, served as is by the server (no build step, no CDN).
import { createParser } from '/playground/vendor/eventsource-parser.js';

const $ = (id) => document.getElementById(id);
const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
const KEY_STORE = 'specserve.apiKey';
const DEFAULT_PROMPT =
  'Original: The socket module provides access to the BSD socket interface. It is available on all modern Unix systems.\n' +
  'Rewrite: The socket module';

let apiKey = localStorage.getItem(KEY_STORE) ?? '';
/** The request in progress: its abort controllers. */
let inFlight = null;
let lastSettings = null;

class KeyNeeded extends Error {}

async function api(path, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { ...init, headers });
  if (res.status === 401) {
    showKeyPanel(apiKey ? 'That key was not accepted.' : '');
    throw new KeyNeeded('API key needed');
  }
  if (!res.ok) {
    const body = await res.json().catch(() => null);
    throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
  }
  return res;
}

function showKeyPanel(message) {
  $('key-panel').hidden = false;
  $('key-error').textContent = message;
  $('api-key').focus();
}

// ---- server, models and drafters --------------------------------------------------------------

async function loadServer() {
  try {
    const health = await (await fetch('/health')).json();
    $('server').textContent = health.status === 'ok' ? `${health.model} · ${health.dtype} · ${health.provider}` : 'loading…';
  } catch {
    $('server').textContent = 'server unreachable';
  }
  try {
    const [models, drafters] = await Promise.all([
      api('/v1/models').then((r) => r.json()),
      api('/v1/drafters').then((r) => r.json()),
    ]);
    fillModels(models.data);
    fillDrafters(drafters);
    $('key-panel').hidden = true;
  } catch (error) {
    if (!(error instanceof KeyNeeded)) showError(`Could not load the model list: ${error.message}`);
  }
}

function fillModels(models) {
  const select = $('model');
  select.replaceChildren(...models.map((m) => new Option(m.id, m.id)));
}

function fillDrafters({ data, default: serverDefault }) {
  const select = $('drafter');
  const options = [new Option('none (plain decoding)', 'none')];
  for (const d of data) {
    const option = new Option(d.available ? d.name : `${d.name} (unavailable)`, d.name);
    option.disabled = !d.available;
    option.title = d.available ? d.description : d.reason ?? '';
    options.push(option);
  }
  select.replaceChildren(...options);
  const usable = (name) => data.some((d) => d.name === name && d.available);
  select.value = serverDefault !== 'none' && usable(serverDefault) ? serverDefault : usable('prompt-lookup') ? 'prompt-lookup' : 'none';
}

// ---- one lane: a streamed request and its statistics -------------------------------------------

class Lane {
  constructor(root, { output, detail, stats, chart }) {
    this.root = root;
    this.output = byTestId(output);
    const detailBox = byTestId(detail);
    // what a token is, for the one under the pointer (a title tooltip as well, for keyboards and copies)
    this.output.addEventListener('mouseover', (event) => {
      if (event.target instanceof HTMLElement && event.target.classList.contains('tok')) detailBox.textContent = event.target.title;
    });
    this.statsBox = byTestId(stats);
    this.canvas = chart ? $(chart) : null;
    this.chart = null;
  }

  reset(title) {
    this.output.replaceChildren();
    this.statsBox.replaceChildren();
    this.text = '';
    /** step → { drafted, cap, accepted: Set of draft positions } */
    this.steps = new Map();
    this.tokens = new Set();
    this.started = performance.now();
    this.firstAt = undefined;
    this.lastAt = undefined;
    this.final = null;
    this.finished = false;
    this.pending = false;
    if (title) this.root.querySelector('h2').textContent = title;
    this.render();
  }

  /** Appends a chunk's sources (or plain text when a chunk has none). */
  add(text, sources) {
    const now = performance.now();
    this.firstAt ??= now;
    this.lastAt = now;
    this.text += text;
    const stick = this.output.scrollTop + this.output.clientHeight >= this.output.scrollHeight - 4;
    for (const src of sources ?? [{ text, source: 'target', step: -1, position: 0, drafted: 0, draft_cap: 0, token_id: -1 }]) {
      const span = document.createElement('span');
      span.className = 'tok';
      span.dataset.source = src.source;
      span.dataset.step = String(src.step);
      span.textContent = src.text;
      span.title = describe(src);
      this.output.append(span);
      this.tokens.add(`${src.step}:${src.position}`);
      if (src.step < 0) continue;
      const step = this.steps.get(src.step) ?? { drafted: src.drafted, cap: src.draft_cap, accepted: new Set() };
      if (src.source === 'draft') step.accepted.add(src.position);
      this.steps.set(src.step, step);
    }
    if (stick) this.output.scrollTop = this.output.scrollHeight;
    this.scheduleRender();
  }

  finish(finishReason, speculative) {
    this.finished = true;
    this.finishReason = finishReason;
    this.final = speculative ?? null;
    this.scheduleRender();
  }

  scheduleRender() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  /** The figures shown, from the sources seen so far. */
  figures() {
    const tokens = this.tokens.size;
    const span = this.firstAt !== undefined && this.lastAt > this.firstAt ? (this.lastAt - this.firstAt) / 1000 : 0;
    let drafted = 0;
    let accepted = 0;
    let draftSteps = 0;
    let capSum = 0;
    let maxCap = 0;
    const positions = [];
    for (const step of this.steps.values()) {
      capSum += step.cap;
      maxCap = Math.max(maxCap, step.cap);
      if (step.drafted === 0) continue;
      draftSteps++;
      drafted += step.drafted;
      accepted += step.accepted.size;
      // position k counts in steps that drafted past it; it was accepted when k drafts landed
      for (let k = 0; k < step.drafted; k++) {
        positions[k] ??= { tried: 0, landed: 0 };
        positions[k].tried++;
        if (step.accepted.size > k) positions[k].landed++;
      }
    }
    return {
      tokens,
      steps: this.steps.size,
      tokensPerSecond: span > 0 ? (tokens - 1) / span : 0,
      ttftMs: this.firstAt !== undefined ? this.firstAt - this.started : undefined,
      acceptanceRate: drafted ? accepted / drafted : undefined,
      meanAcceptanceLength: draftSteps ? 1 + accepted / draftSteps : undefined, // as src/engine/stats.ts defines it
      draftSteps,
      maxCap,
      meanCap: this.steps.size ? capSum / this.steps.size : 0,
      positions,
    };
  }

  render() {
    const f = this.figures();
    const stat = (label, value) => {
      const div = document.createElement('div');
      div.className = 'stat';
      const b = document.createElement('b');
      b.textContent = value;
      div.append(b, label);
      return div;
    };
    const pct = (x) => (x === undefined ? '–' : `${(100 * x).toFixed(0)}%`);
    const items = [
      stat('tokens/s', f.tokensPerSecond ? f.tokensPerSecond.toFixed(1) : '–'),
      stat('tokens', String(f.tokens)),
      stat('target steps', String(f.steps)),
      stat('first token', f.ttftMs === undefined ? '–' : `${f.ttftMs.toFixed(0)} ms`),
    ];
    if (f.draftSteps > 0 || this.drafting) {
      items.push(
        stat('acceptance rate', pct(f.acceptanceRate)),
        stat('mean acceptance length', f.meanAcceptanceLength === undefined ? '–' : f.meanAcceptanceLength.toFixed(2)),
        stat('draft cap (mean · max)', `${f.meanCap.toFixed(1)} · ${f.maxCap}`),
      );
    }
    if (this.finished) items.push(stat('finish', this.finishReason ?? '–'));
    this.statsBox.replaceChildren(...items);
    this.renderChart(f.positions);
  }

  renderChart(positions) {
    if (!this.canvas || typeof Chart === 'undefined') return;
    const labels = positions.map((_, k) => `${k + 1}`);
    const data = positions.map((p) => (p.tried ? p.landed / p.tried : 0));
    if (!this.chart) {
      this.chart = new Chart(this.canvas, {
        type: 'bar',
        data: { labels, datasets: [{ label: 'accepted at draft position', data, backgroundColor: '#3a9d4f' }] },
        options: {
          animation: false,
          maintainAspectRatio: false,
          scales: {
            y: { min: 0, max: 1, ticks: { callback: (v) => `${Math.round(v * 100)}%` } },
            x: { title: { display: true, text: 'draft position' } },
          },
          plugins: { legend: { display: false }, title: { display: true, text: 'Acceptance by draft position' } },
        },
      });
      return;
    }
    this.chart.data.labels = labels;
    this.chart.data.datasets[0].data = data;
    this.chart.update('none');
  }
}

function describe(src) {
  if (src.step < 0) return '';
  const where =
    src.source === 'draft'
      ? `draft token ${src.position + 1} of ${src.drafted}, confirmed by the target`
      : src.drafted > 0
        ? `the target's token after ${src.position} of ${src.drafted} draft tokens landed`
        : "the target's token (no draft this step)";
  const logprob = src.logprob === undefined ? '' : ` · logprob ${src.logprob.toFixed(3)}`;
  return `step ${src.step} · ${where} · draft cap ${src.draft_cap}${logprob}`;
}

const lanes = {
  main: new Lane($('lane-main'), { output: 'output', detail: 'token-detail', stats: 'stats', chart: 'positions' }),
  plain: new Lane($('lane-plain'), { output: 'output-plain', detail: 'token-detail-plain', stats: 'stats-plain' }),
};

// ---- sending ----------------------------------------------------------------------------------

function settings() {
  return {
    mode: $('mode').value,
    model: $('model').value || undefined,
    drafter: $('drafter').value || 'none',
    maxTokens: Number($('max-tokens').value) || 128,
    temperature: Number($('temperature').value),
    topP: Number($('top-p').value) || 1,
    race: $('race').checked,
    smooth: $('smooth').checked,
    logprobs: $('logprobs').checked,
    prompt: $('prompt').value,
  };
}

function requestFor(s, drafter) {
  const common = {
    model: s.model,
    max_tokens: s.maxTokens,
    temperature: s.temperature,
    top_p: s.topP,
    stream: true,
    stream_options: { include_token_sources: true, pacing: s.smooth ? 'smooth' : 'off' },
    speculative: { drafter },
  };
  if (s.mode === 'chat') {
    return { path: '/v1/chat/completions', body: { ...common, messages: [{ role: 'user', content: s.prompt }], ...(s.logprobs ? { logprobs: true } : {}) } };
  }
  return { path: '/v1/completions', body: { ...common, prompt: s.prompt, ...(s.logprobs ? { logprobs: 0 } : {}) } };
}

async function runLane(lane, s, drafter, signal) {
  lane.drafting = drafter !== 'none';
  lane.reset(drafter === 'none' ? 'Plain decoding' : `Speculative · ${drafter}`);
  const { path, body } = requestFor(s, drafter);
  const res = await api(path, { method: 'POST', body: JSON.stringify(body), signal });
  const parser = createParser({
    onEvent: (event) => {
      if (event.data === '[DONE]') return;
      const data = JSON.parse(event.data);
      if (data.error) throw new Error(data.error.message);
      for (const choice of data.choices ?? []) {
        const text = s.mode === 'chat' ? choice.delta?.content : choice.text;
        if (text) lane.add(text, choice.token_sources);
        if (choice.finish_reason) lane.finish(choice.finish_reason, data.speculative?.[0]);
      }
    },
  });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.feed(value);
  }
  return lane;
}

async function send(s = settings()) {
  if (inFlight) return;
  if (!s.prompt.trim()) return showError('Write a prompt first.');
  showError('');
  $('race-verdict').textContent = '';
  lastSettings = s;
  const race = s.race && s.drafter !== 'none';
  $('lanes').classList.toggle('race', race);
  $('lane-plain').hidden = !race;
  const controller = new AbortController();
  inFlight = controller;
  setBusy(true);
  try {
    const runs = [runLane(lanes.main, s, s.drafter, controller.signal)];
    if (race) runs.push(runLane(lanes.plain, s, 'none', controller.signal));
    await Promise.all(runs);
    if (race) verdict(s);
  } catch (error) {
    if (error.name !== 'AbortError' && !(error instanceof KeyNeeded)) showError(error.message);
    controller.abort();
  } finally {
    inFlight = null;
    setBusy(false);
  }
}

function verdict(s) {
  const spec = lanes.main.figures();
  const plain = lanes.plain.figures();
  if (!spec.tokensPerSecond || !plain.tokensPerSecond) return;
  const ratio = spec.tokensPerSecond / plain.tokensPerSecond;
  const steps = plain.steps / Math.max(1, spec.steps) * (spec.tokens / Math.max(1, plain.tokens));
  const same = s.temperature === 0 ? (lanes.main.text === lanes.plain.text ? ' Same text, token for token.' : ' The texts differ.') : '';
  // tokens/s depends on what else the machine is doing (this page included); target steps per
  // token is what the drafter bought
  $('race-verdict').textContent =
    `${s.drafter}: ${steps.toFixed(2)}× fewer target steps per token, ${ratio.toFixed(2)}× the tokens/s of plain decoding ` +
    `(${spec.tokensPerSecond.toFixed(1)} vs ${plain.tokensPerSecond.toFixed(1)}; both ran at once on this server).${same}`;
}

function setBusy(busy) {
  $('send').disabled = busy;
  $('stop').disabled = !busy;
  $('regenerate').disabled = busy || !lastSettings;
}

function showError(message) {
  $('error').textContent = message;
}

$('send').addEventListener('click', () => void send());
$('stop').addEventListener('click', () => inFlight?.abort());
$('regenerate').addEventListener('click', () => lastSettings && void send({ ...settings(), prompt: lastSettings.prompt }));
$('prompt').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) void send();
});
$('key-panel').addEventListener('submit', (event) => {
  event.preventDefault();
  apiKey = $('api-key').value.trim();
  localStorage.setItem(KEY_STORE, apiKey);
  void loadServer();
});

$('prompt').value = DEFAULT_PROMPT;
void loadServer();
