/** Prometheus text exposition (format 0.0.4) of the server's counters, gauges and histograms. No dependency. */

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

class Histogram {
  readonly counts = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  sum = 0;
  count = 0;
  observe(v: number): void {
    this.sum += v;
    this.count++;
    LATENCY_BUCKETS.forEach((b, i) => v <= b && this.counts[i]++);
  }
  render(name: string, help: string): string {
    const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
    LATENCY_BUCKETS.forEach((b, i) => lines.push(`${name}_bucket{le="${b}"} ${this.counts[i]}`));
    lines.push(`${name}_bucket{le="+Inf"} ${this.count}`, `${name}_sum ${this.sum}`, `${name}_count ${this.count}`);
    return lines.join('\n');
  }
}

export class Metrics {
  readonly requests = new Map<string, number>(); // "route|status" → count
  readonly cancelled = new Map<string, number>(); // reason → count
  generatedTokens = 0;
  promptTokens = 0;
  committedTokens = 0;
  ticks = 0;
  mergedRequests = 0;
  salientSum = 0;
  salientCount = 0;
  lastSalient = 1;
  engineRestarts = 0;
  tokenizerRestarts = 0;
  /** Requests that failed because the worker running them died. */
  workerFailedRequests = 0;
  readonly step = new Histogram();
  readonly request = new Histogram();

  countRequest(route: string, status: number): void {
    const k = `${route}|${status}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
  }

  countCancel(reason: string): void {
    this.cancelled.set(reason, (this.cancelled.get(reason) ?? 0) + 1);
  }

  render(g: { queued: number; live: number; inflight: number; draining: boolean; engineUp: boolean }): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, rows: string[]): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...rows);
    };
    metric('dyllm_requests_total', 'counter', 'HTTP requests by route and status.',
      [...this.requests].map(([k, n]) => {
        const [route, status] = k.split('|');
        return `dyllm_requests_total{route="${route}",status="${status}"} ${n}`;
      }));
    metric('dyllm_requests_cancelled_total', 'counter', 'Generations cancelled before they finished, by reason.',
      ['disconnect', 'timeout', 'shutdown'].map((r) => `dyllm_requests_cancelled_total{reason="${r}"} ${this.cancelled.get(r) ?? 0}`));
    metric('dyllm_queue_depth', 'gauge', 'Accepted requests waiting for a batch slot.', [`dyllm_queue_depth ${g.queued}`]);
    metric('dyllm_active_requests', 'gauge', 'Requests being denoised now.', [`dyllm_active_requests ${g.live}`]);
    metric('dyllm_inflight_requests', 'gauge', 'Generation requests accepted and not yet answered.', [`dyllm_inflight_requests ${g.inflight}`]);
    metric('dyllm_draining', 'gauge', '1 while the server drains after SIGTERM.', [`dyllm_draining ${g.draining ? 1 : 0}`]);
    metric('dyllm_engine_up', 'gauge', '1 while the engine and tokenizer workers run; 0 while one restarts or is down.', [`dyllm_engine_up ${g.engineUp ? 1 : 0}`]);
    metric('dyllm_engine_restarts_total', 'counter', 'Restarts of the engine worker after it died (exit, uncaught error, out of memory).', [`dyllm_engine_restarts_total ${this.engineRestarts}`]);
    metric('dyllm_tokenizer_restarts_total', 'counter', 'Restarts of the tokenizer worker after it died.', [`dyllm_tokenizer_restarts_total ${this.tokenizerRestarts}`]);
    metric('dyllm_worker_failed_requests_total', 'counter', 'Requests answered with an error because the worker running them died.', [`dyllm_worker_failed_requests_total ${this.workerFailedRequests}`]);
    metric('dyllm_generated_tokens_total', 'counter', 'Completion tokens of finished requests (the canvas, up to the end token when stopped early).', [`dyllm_generated_tokens_total ${this.generatedTokens}`]);
    metric('dyllm_prompt_tokens_total', 'counter', 'Prompt tokens of finished requests.', [`dyllm_prompt_tokens_total ${this.promptTokens}`]);
    metric('dyllm_committed_tokens_total', 'counter', 'Canvas positions committed by denoising steps.', [`dyllm_committed_tokens_total ${this.committedTokens}`]);
    metric('dyllm_scheduler_ticks_total', 'counter', 'Scheduler ticks (one step of every live request).', [`dyllm_scheduler_ticks_total ${this.ticks}`]);
    metric('dyllm_merged_requests_total', 'counter', 'Request-steps run inside a merged dense forward (÷ ticks = mean dense batch).', [`dyllm_merged_requests_total ${this.mergedRequests}`]);
    out.push(this.step.render('dyllm_step_latency_seconds', 'Scheduler tick latency (one denoising step of every live request).'));
    out.push(this.request.render('dyllm_request_duration_seconds', 'Generation time of finished requests, admission to last step.'));
    metric('dyllm_salient_fraction', 'summary', 'FFN rows recomputed ÷ dense per finished request (1 without acceleration).',
      [`dyllm_salient_fraction_sum ${this.salientSum}`, `dyllm_salient_fraction_count ${this.salientCount}`]);
    metric('dyllm_last_salient_fraction', 'gauge', 'Salient fraction of the last finished accelerated request.', [`dyllm_last_salient_fraction ${this.lastSalient}`]);
    return out.join('\n') + '\n';
  }
}
