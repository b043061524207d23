import { App } from 'cdktf';
import { ExampleStack, parseExampleOptions } from './lab/example-stack';
import { loadInventory } from './lab/inventory';
import { ENGINE_CONTEXT_KEY, explainAndExit } from './constructs';

// `cdktf synth` runs this file (see cdktf.json). TULA_DSR_INVENTORY points at a lab's inventory; without it the
// stack targets the lab's default addresses. TULA_DSR_EXAMPLE (JSON ExampleOptions) picks backends and weights;
// TULA_DSR_ENGINE picks the resource engine (null_resource or terraform_data).
try {
  const engine = process.env.TULA_DSR_ENGINE;
  const app = new App(engine ? { context: { [ENGINE_CONTEXT_KEY]: engine } } : {});
  new ExampleStack(app, 'dsr', loadInventory(process.env.TULA_DSR_INVENTORY), parseExampleOptions(process.env.TULA_DSR_EXAMPLE));
  app.synth();
} catch (error) {
  explainAndExit(error);
}
