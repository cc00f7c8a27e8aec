// SPDX-License-Identifier: MIT
// ws_driver.js — Node's `ws` package as a WebSocket client the e2e tests
// drive line by line (tests/e2e/test_conformance_node_ws.py).
//
// stdin: one JSON command per line, stdout: one JSON event per line.
//   {"op":"open","id":"c1","url":"ws://..","protocols":[..],"perMessageDeflate":true|false|{..},
//    "ca":"PEM"}
//   {"op":"send","id":"c1","text":"..."} | {"op":"send","id":"c1","b64":"..."}
//       optional "fin": false sends a fragment (the next send continues it)
//   {"op":"ping","id":"c1","data":"x"}
//   {"op":"close","id":"c1","code":4001,"reason":"bye"}
//   {"op":"exit"}
// events: {"id","ev":"open","protocol","extensions"} | {"ev":"message","text"|"b64"}
//   | {"ev":"ping"|"pong","data"} | {"ev":"close","code","reason"}
//   | {"ev":"error","message"} | {"ev":"unexpected-response","status","body"}
// Nothing here decides pass or fail: the Python test does.
'use strict';
const readline = require('readline');
const WebSocket = require('ws');

const conns = new Map();
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function open(cmd) {
  // perMessageDeflate: false, true (ws's defaults) or ws's options object
  // (e.g. {"threshold": 0}: compress every message, fragments included)
  const pmd = cmd.perMessageDeflate === undefined ? true : cmd.perMessageDeflate;
  const opts = { perMessageDeflate: pmd, handshakeTimeout: 10000 };
  if (cmd.ca) opts.ca = cmd.ca; // PEM text, for wss:// with a test CA
  const ws = new WebSocket(cmd.url, cmd.protocols || [], opts);
  const id = cmd.id;
  conns.set(id, ws);
  ws.on('open', () => out({ id, ev: 'open', protocol: ws.protocol, extensions: ws.extensions }));
  ws.on('message', (data, isBinary) => {
    if (isBinary) out({ id, ev: 'message', b64: Buffer.from(data).toString('base64') });
    else out({ id, ev: 'message', text: data.toString('utf8') });
  });
  ws.on('ping', (d) => out({ id, ev: 'ping', data: d.toString('utf8') }));
  ws.on('pong', (d) => out({ id, ev: 'pong', data: d.toString('utf8') }));
  ws.on('close', (code, reason) => out({ id, ev: 'close', code, reason: reason.toString('utf8') }));
  ws.on('error', (e) => out({ id, ev: 'error', message: String(e && e.message) }));
  ws.on('unexpected-response', (req, res) => {
    let body = '';
    res.on('data', (c) => { body += c; });
    res.on('end', () => {
      out({ id, ev: 'unexpected-response', status: res.statusCode, body });
      req.destroy();
    });
  });
}

function run(cmd) {
  const ws = conns.get(cmd.id);
  switch (cmd.op) {
    case 'open': return open(cmd);
    case 'send': {
      const data = cmd.b64 !== undefined ? Buffer.from(cmd.b64, 'base64') : cmd.text;
      return ws.send(data, { binary: cmd.b64 !== undefined, fin: cmd.fin !== false });
    }
    case 'ping': return ws.ping(cmd.data || '');
    case 'close': return ws.close(cmd.code, cmd.reason);
    case 'exit': process.exit(0);
    default: out({ ev: 'error', message: 'unknown op ' + cmd.op });
  }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  try {
    run(JSON.parse(line));
  } catch (e) {
    out({ ev: 'error', message: 'driver: ' + e.message });
  }
});
process.stdin.on('end', () => process.exit(0));
