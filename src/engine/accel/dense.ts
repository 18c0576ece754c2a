/** `none`: no acceleration — every step is the model's dense forward (the official samplers' arithmetic). */
import type { AccelMethod, AccelOptions } from './types.js';

export const dense: AccelMethod = {
  name: 'none',
  source: '',
  options: [],
  dense: true,
  benchRows: [{ name: 'dense', options: {}, color: '#555555' }],
  resolve: (): AccelOptions => ({ method: 'none' }),
  create: ({ model }) => ({
    forward: (batch) => model.forward(batch),
    // A device-resident model's dense forward is asynchronous (models/types.ts forwardAsync).
    ...(model.forwardAsync ? { forwardAsync: (batch, _active, _step, stats) => model.forwardAsync!(batch, stats) } : {}),
    telemetry: () => null,
  }),
  cacheBytesPerToken: () => 0,
  label: () => 'dense',
};
