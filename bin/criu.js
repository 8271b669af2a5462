#!/usr/bin/env node
'use strict';
require('../dist/engine/criu/cli.js').main(process.argv.slice(2));
