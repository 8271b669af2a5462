#!/usr/bin/env node
'use strict';
require('../dist/crit/cli.js').main(process.argv.slice(2));
