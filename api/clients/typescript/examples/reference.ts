// The API reference's TypeScript example (SDKs), verbatim but for the import path.
import { PIVOTClient } from '../src/pivot-client.js';

const client = new PIVOTClient('http://localhost:8000');

// Create and start session
const session = await client.createSession({
  config_path: 'configs/train.yaml',
  session_name: 'my_experiment'
});

await client.startTraining(session.session_id);

// Stream updates via WebSocket
client.streamMetrics(session.session_id, (metrics) => {
  console.log(`Epoch ${metrics.epoch}: Loss ${metrics.val_loss}`);
});
