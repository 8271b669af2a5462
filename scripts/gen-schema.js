#!/usr/bin/env node
// Compiles images/proto/*.proto into images/generated/schema.json: a compact table of every
// message (fields in field-number order, with CRIU's (criu).* options) and enum. The runtime
// builds its codecs from this table, so protobufjs is needed only here, at build time.
'use strict';
const fs = require('fs');
const path = require('path');
const protobuf = require('protobufjs');

const protoDir = path.join(__dirname, '..', 'images', 'proto');
const outFile = path.join(__dirname, '..', 'images', 'generated', 'schema.json');

const root = new protobuf.Root();
const descriptorDir = path.dirname(require.resolve('protobufjs/google/protobuf/descriptor.proto'));
root.resolvePath = (_origin, target) => {
  if (target.startsWith('google/protobuf/')) return path.join(descriptorDir, path.basename(target));
  return path.join(protoDir, path.basename(target));
};
const files = fs.readdirSync(protoDir).filter((f) => f.endsWith('.proto')).sort();
root.loadSync(files.map((f) => path.join(protoDir, f)), { keepCase: true });
root.resolveAll();

const messages = {};
const enums = {};
const fileOf = {};

function fullName(obj) {
  return obj.fullName.replace(/^\./, '');
}

function visit(ns) {
  for (const obj of ns.nestedArray) {
    if (obj instanceof protobuf.Type) {
      const name = fullName(obj);
      if (name.startsWith('google.')) continue;
      const fields = obj.fieldsArray
        .slice()
        .sort((a, b) => a.id - b.id)
        .map((f) => {
          const opts = {};
          for (const [k, v] of Object.entries(f.options || {})) {
            const m = /^\(criu\)\.(\w+)$/.exec(k);
            if (m) opts[m[1]] = v;
          }
          let type = f.type;
          let kind = 'scalar';
          if (f.resolvedType instanceof protobuf.Type) { kind = 'message'; type = fullName(f.resolvedType); }
          else if (f.resolvedType instanceof protobuf.Enum) { kind = 'enum'; type = fullName(f.resolvedType); }
          const d = { no: f.id, name: f.name, kind, type, label: f.repeated ? 'repeated' : f.required ? 'required' : 'optional' };
          if (Object.keys(opts).length) d.opts = opts;
          return d;
        });
      messages[name] = { fields, file: obj.filename ? path.basename(obj.filename) : undefined };
      visit(obj);
    } else if (obj instanceof protobuf.Enum) {
      const name = fullName(obj);
      if (name.startsWith('google.')) continue;
      enums[name] = obj.values;
    } else if (obj instanceof protobuf.Namespace) {
      if (obj.name === 'google') continue;
      visit(obj);
    }
  }
}
visit(root);
void fileOf;
fs.mkdirSync(path.dirname(outFile), { recursive: true });
const text = JSON.stringify({ files: files.length, messages, enums });
fs.writeFileSync(outFile + '.tmp', text);
fs.renameSync(outFile + '.tmp', outFile);
console.error(`gen-schema: ${files.length} .proto files, ${Object.keys(messages).length} messages, ${Object.keys(enums).length} enums`);
