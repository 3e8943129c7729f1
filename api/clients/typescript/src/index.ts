export * from "./errors.js";
export * from "./types.js";
export { PIVOTClient, retryAfterMs } from "./pivot-client.js";
export type { ClientOptions, MetricStream, StreamOptions } from "./pivot-client.js";
