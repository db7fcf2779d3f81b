require('../dist/src/cli.cjs');
