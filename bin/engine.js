#!/usr/bin/env node
'use strict';
require('../dist/engine/cli.js').main(process.argv.slice(2));
