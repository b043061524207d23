#!/usr/bin/env node
// @ts-check
'use strict';
/**
 * Offline stand-in for the hashicorp/null 3.2.4 provider binary: a go-plugin gRPC server that
 * speaks Terraform plugin protocol 5. Terraform starts it from a filesystem_mirror (see
 * lab/terraform/env.ts), through a launcher script that runs `node main.js`.
 *
 * Handshake (hashicorp/go-plugin):
 *   - Terraform sets TF_PLUGIN_MAGIC_COOKIE and PLUGIN_PROTOCOL_VERSIONS;
 *   - the plugin prints `1|5|tcp|127.0.0.1:PORT|grpc` on stdout (core protocol 1, app protocol 5);
 *   - Terraform pings grpc.health.v1.Health/Check (service "plugin") and stops the plugin with
 *     plugin.GRPCController/Shutdown.
 * TLS: not implemented. Terraform must run with TF_DISABLE_PLUGIN_TLS=1 (no AutoMTLS).
 *
 * Set TULA_NULL_PROVIDER_LOG=/abs/file to append one JSON line per provider RPC (tests read it; handy for debugging).
 *
 * LAB AND TEST SUPPORT ONLY: never shipped, and not the provider.
 */
const fs = require('node:fs');
const path = require('node:path');

const MAGIC_COOKIE_KEY = 'TF_PLUGIN_MAGIC_COOKIE';
const MAGIC_COOKIE_VALUE = 'd602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2';
const CORE_PROTOCOL_VERSION = 1;
const APP_PROTOCOL_VERSION = 5;
/** Large messages are fine: go-plugin's client allows up to 256 MiB. */
const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/** @param {string} msg */
function die(msg) {
  process.stderr.write(`${msg}\n`);
  process.exit(1);
}

function main() {
  if (process.env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    die(
      'This binary is a plugin. These are not meant to be executed directly.\n' +
        'Please execute the program that consumes these plugins, which will\nload any plugins automatically',
    );
  }
  const offered = (process.env.PLUGIN_PROTOCOL_VERSIONS || String(APP_PROTOCOL_VERSION)).split(',').map((s) => s.trim());
  if (!offered.includes(String(APP_PROTOCOL_VERSION))) {
    die(`null provider stand-in: Terraform offers plugin protocol versions ${offered.join(',')}, this stand-in speaks only ${APP_PROTOCOL_VERSION}`);
  }
  if (process.env.PLUGIN_CLIENT_CERT) {
    die('null provider stand-in: AutoMTLS is not implemented; run Terraform with TF_DISABLE_PLUGIN_TLS=1');
  }

  // Loaded after the checks so a misuse fails fast.
  const grpc = require('@grpc/grpc-js');
  const protoLoader = require('@grpc/proto-loader');
  const { createProvider } = require('./provider');

  const protoDir = path.join(__dirname, 'proto');
  const definition = protoLoader.loadSync(['tfplugin5.proto', 'health.proto', 'controller.proto'], {
    includeDirs: [protoDir],
    keepCase: true,
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  /** @type {any} */
  const pkg = grpc.loadPackageDefinition(definition);

  const logFile = process.env.TULA_NULL_PROVIDER_LOG;
  /** @param {Record<string, unknown>} entry */
  const log = (entry) => {
    if (!logFile) return;
    try {
      fs.appendFileSync(logFile, `${JSON.stringify({ pid: process.pid, ...entry })}\n`);
    } catch {
      // Logging is best effort.
    }
  };
  /** @type {Record<string, (req: any) => any>} */
  const provider = createProvider(log);

  /** @type {Record<string, import('@grpc/grpc-js').UntypedHandleCall>} */
  const providerImpl = {};
  for (const [name, fn] of Object.entries(provider)) {
    providerImpl[name] = (/** @type {any} */ call, /** @type {any} */ callback) => {
      let response;
      try {
        response = fn(call.request);
      } catch (err) {
        const e = /** @type {Error} */ (err);
        log({ rpc: name, error: e.message });
        // Report failures as diagnostics so Terraform prints them like a provider error.
        response = { diagnostics: [{ severity: 1, summary: `null provider stand-in: ${name} failed`, detail: e.stack || e.message }] };
        if (name === 'Stop') response = { Error: e.message };
      }
      callback(null, response);
    };
  }

  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  });
  server.addService(pkg.tfplugin5.Provider.service, providerImpl);
  server.addService(pkg.grpc.health.v1.Health.service, {
    Check: (/** @type {any} */ _call, /** @type {any} */ callback) => callback(null, { status: 1 /* SERVING */ }),
  });

  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    // Give the Shutdown response time to leave, then exit whatever the server says.
    setTimeout(() => process.exit(0), 200).unref();
    server.tryShutdown(() => process.exit(0));
  };
  server.addService(pkg.plugin.GRPCController.service, {
    Shutdown: (/** @type {any} */ _call, /** @type {any} */ callback) => {
      callback(null, {});
      setImmediate(shutdown);
    },
  });

  // Like go-plugin servers: ignore interrupts, Terraform stops the plugin itself.
  process.on('SIGINT', () => {});
  // Never outlive the Terraform process that started us (for example if it was SIGKILLed).
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0);
  }, 1000).unref();

  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) die(`null provider stand-in: cannot listen: ${err.message}`);
    process.stdout.write(`${CORE_PROTOCOL_VERSION}|${APP_PROTOCOL_VERSION}|tcp|127.0.0.1:${port}|grpc\n`);
  });
}

main();
