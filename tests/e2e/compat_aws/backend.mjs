// SPDX-License-Identifier: MIT
// backend.mjs — an API Gateway WebSocket backend written against AWS's
// contract, not wsgate's: an HTTP server hands each Lambda-proxy event to a
// Lambda-style handler that routes on requestContext.routeKey and answers
// through the @connections API with the AWS SDK for JavaScript v3
// (@aws-sdk/client-apigatewaymanagementapi), its endpoint built the usual
// way from requestContext.domainName and stage. For
// tests/e2e/test_compat_aws.py: every event and every SDK outcome is
// printed as one JSON line on stdout; the first line is {"listening": port}.
//
// Env: AWS_KEY_ID, AWS_SECRET, AWS_REGION_NAME (the route's access key and
// region).
import http from 'node:http';
import {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
  GetConnectionCommand,
  DeleteConnectionCommand,
} from '@aws-sdk/client-apigatewaymanagementapi';

const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function client(ctx, secret = process.env.AWS_SECRET, stage = ctx.stage) {
  return new ApiGatewayManagementApiClient({
    endpoint: `http://${ctx.domainName}/${stage}`,
    region: process.env.AWS_REGION_NAME,
    credentials: { accessKeyId: process.env.AWS_KEY_ID, secretAccessKey: secret },
    maxAttempts: 1,
  });
}

// Runs one SDK command and reports its outcome (AWS's error name on failure).
async function call(what, api, cmd) {
  try {
    const out = await api.send(cmd);
    const { $metadata, ...rest } = out;
    say({ sdk: what, ok: true, status: $metadata.httpStatusCode, out: rest });
    return out;
  } catch (e) {
    say({ sdk: what, ok: false, name: e.name, status: e.$metadata?.httpStatusCode,
          message: e.message });
    return null;
  }
}

const post = (ctx, id, data, secret) =>
  call('post', client(ctx, secret),
       new PostToConnectionCommand({ ConnectionId: id, Data: data }));

// The Lambda function.
async function handler(event) {
  const ctx = event.requestContext;
  const me = ctx.connectionId;
  switch (ctx.routeKey) {
    case '$connect':
      if (event.queryStringParameters?.deny) return { statusCode: 403 };
      return { statusCode: 200 };
    case '$disconnect':
      return { statusCode: 200 };
    case 'echo': {
      const body = JSON.parse(event.body);
      await post(ctx, me, JSON.stringify({ echo: body.data, routeKey: ctx.routeKey }));
      return { statusCode: 200 };
    }
    case 'info': {
      const out = await call('get', client(ctx), new GetConnectionCommand({ ConnectionId: me }));
      await post(ctx, me, JSON.stringify({
        info: out && { connectedAt: out.ConnectedAt.toISOString(),
                       lastActiveAt: out.LastActiveAt.toISOString(),
                       sourceIp: out.Identity?.SourceIp },
      }));
      return { statusCode: 200 };
    }
    case 'send-to': {
      const body = JSON.parse(event.body);
      await post(ctx, body.target, body.data);
      return { statusCode: 200 };
    }
    case 'bad-secret':
      await post(ctx, me, 'must not arrive', process.env.AWS_SECRET + 'x');
      await post(ctx, me, 'after bad-secret');
      return { statusCode: 200 };
    case 'other-stage':
      await call('post', client(ctx, process.env.AWS_SECRET, 'otherstage'),
                 new PostToConnectionCommand({ ConnectionId: me, Data: 'must not arrive' }));
      return { statusCode: 200 };
    case 'kick':
      await call('delete', client(ctx), new DeleteConnectionCommand({ ConnectionId: me }));
      return { statusCode: 200 };
    default: // $default: a two-way route answers with its body
      return { statusCode: 200, body: 'default:' + event.body };
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let event;
    try {
      event = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      res.writeHead(400).end();
      return;
    }
    say({ event });
    const out = await handler(event);
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(out));
  });
});
server.listen(0, '127.0.0.1', () => say({ listening: server.address().port }));
process.on('SIGTERM', () => process.exit(0));
