import { App } from 'cdktf';
import { ExampleStack } from './lab/example-stack';
import { loadInventory } from './lab/inventory';
import { explainAndExit } from './constructs/explain';

// `cdktf synth` runs this file (see cdktf.json). TULA_DSR_INVENTORY points at a lab's inventory; without it the
// stack targets the lab's default addresses.
try {
  const engine = process.env.TULA_DSR_ENGINE;
  const app = new App(engine ? { context: { 'tula-dsr:engine': engine } } : {});
  new ExampleStack(app, 'dsr', loadInventory(process.env.TULA_DSR_INVENTORY));
  app.synth();
} catch (error) {
  explainAndExit(error);
}
