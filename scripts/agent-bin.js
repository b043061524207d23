#!/usr/bin/env node
// The `tula-dsr` bin (copied to dist/agent/tula-dsr.js by scripts/bundle-agent.mjs): runs the bundled agent CLI
// (tula-dsr-agent.js) with V8's code cache (see agent/bundle-loader.ts), so that a run does not compile the same
// 800 KiB again.
'use strict';
void require('./bundle-loader').loadAgentCli().main();
