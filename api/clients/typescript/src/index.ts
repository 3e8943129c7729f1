export * from "./errors.js";
export * from "./types.js";
export { LineSplitter, PIVOTClient, SSEParser, retryAfterMs } from "./pivot-client.js";
export type {
  ClientOptions,
  EventStream,
  EventStreamOptions,
  LiveOptions,
  LiveState,
  LogOptions,
  MetricStream,
  SSEMessage,
  StreamOptions,
} from "./pivot-client.js";
