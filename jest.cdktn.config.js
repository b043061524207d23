/**
 * The same tests against CDK Terrain (cdktn), the maintained fork of cdktf: `cdktf` (and `cdktf/…`) resolve to the
 * cdktn that .ci/cdktn installs under that name, as a user's `overrides` does, and `constructs` to the version cdktn
 * accepts. .ci/run runs the synth, plan and retire tests this way; test/support/cdktn-check.ts fails the run if cdktf
 * is not cdktn there.
 */
const base = require('./jest.config');

const CDKTN = '<rootDir>/.ci/cdktn/node_modules';

module.exports = {
  ...base,
  moduleNameMapper: {
    '^cdktf$': `${CDKTN}/cdktf`,
    '^cdktf/(.*)$': `${CDKTN}/cdktf/$1`,
    '^constructs$': `${CDKTN}/constructs`,
  },
  setupFiles: ['<rootDir>/test/support/cdktn-check.ts'],
};
