// Comparison server for `wschat bench`: the `ws` README's "broadcast to everyone else" example,
// plus a welcome text on connect and an echo path.
//
//   node server.js [PORT]        (or PORT=... node server.js; default 8080, binds 127.0.0.1)
//
// ws://127.0.0.1:PORT/      relays each message to every other OPEN client (isBinary preserved)
// ws://127.0.0.1:PORT/echo  echoes each message back to its sender
'use strict';

const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || process.env.PORT || 8080);
// `backlog` left at Node's default (511).
const wss = new WebSocketServer({ host: '127.0.0.1', port });

wss.on('connection', function connection(ws, req) {
  ws.on('error', console.error);

  if (req.url === '/echo') {
    ws.isEcho = true;
    ws.on('message', function message(data, isBinary) {
      ws.send(data, { binary: isBinary });
    });
  } else {
    ws.on('message', function message(data, isBinary) {
      wss.clients.forEach(function each(client) {
        if (client !== ws && !client.isEcho && client.readyState === WebSocket.OPEN) {
          client.send(data, { binary: isBinary });
        }
      });
    });
  }

  ws.send('welcome');
});

wss.on('listening', () => {
  console.error(`node-ws listening on ws://127.0.0.1:${port}/ (echo on /echo)`);
});

process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
