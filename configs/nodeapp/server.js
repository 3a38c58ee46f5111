'use strict';
// The reference stack's web app: counts each session's visits in Redis.
//
// A session is a random id in the `sid` cookie; its state is the hash `session:<sid>` on the
// Redis primary, reached by its link name (REDIS_URL), and copied from there to the replicas.
// Each request is logged twice: to stdout (the log bus reads it from the pipe) and to
// ACCESS_LOG, a file in a volume that the logstash container reads through `volumes_from`.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { createClient } = require('redis');

const PORT = Number(process.env.PORT || 3000);
const REDIS_URL = process.env.REDIS_URL || 'redis://redis_primary:6379';
const ACCESS_LOG = process.env.ACCESS_LOG || '/var/log/nodeapp/access.log';
const SESSION_TTL = 24 * 3600; // seconds

const redis = createClient({
  url: REDIS_URL,
  // Retry quickly and for ever: the primary comes back within a second after a crash, and the
  // commands sent meanwhile wait in the client's queue.
  socket: { reconnectStrategy: (retries) => Math.min(50 * (retries + 1), 1000) },
});
let lastError = '';
redis.on('error', (err) => {
  // One line per distinct error, not one per reconnect attempt.
  if (err.message !== lastError) console.error(`redis: ${err.message}`);
  lastError = err.message;
});
redis.on('ready', () => {
  lastError = '';
  console.log(`redis: connected to ${REDIS_URL}`);
});

// The access log; reopened on SIGHUP, so logrotate's `postrotate kill -HUP` works.
fs.mkdirSync(path.dirname(ACCESS_LOG), { recursive: true });
let accessLog = fs.createWriteStream(ACCESS_LOG, { flags: 'a' });
process.on('SIGHUP', () => {
  const old = accessLog;
  accessLog = fs.createWriteStream(ACCESS_LOG, { flags: 'a' });
  old.end();
});

function sessionOf(req) {
  const cookies = req.headers.cookie || '';
  const m = /(?:^|;\s*)sid=([0-9a-f]{32})(?:;|$)/.exec(cookies);
  return m ? { sid: m[1], fresh: false } : { sid: crypto.randomBytes(16).toString('hex'), fresh: true };
}

function log(req, status, bytes, started, extra) {
  const client = req.socket.remoteAddress || '-';
  const ms = (Number(process.hrtime.bigint() - started) / 1e6).toFixed(1);
  const line = `${client} "${req.method} ${req.url} HTTP/${req.httpVersion}" ${status} ${bytes} ${ms}ms${extra}`;
  console.log(line);
  accessLog.write(`${new Date().toISOString()} ${line}\n`);
}

async function visit(sid) {
  const key = `session:${sid}`;
  const [visits] = await redis.multi()
    .hIncrBy(key, 'visits', 1)
    .hSet(key, 'last_seen', new Date().toISOString())
    .expire(key, SESSION_TTL)
    .exec();
  return Number(visits);
}

const server = http.createServer(async (req, res) => {
  const started = process.hrtime.bigint();
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/healthz') {
    // The healthcheck's probe: not logged, it would drown the requests.
    const ok = redis.isReady && (await redis.ping().catch(() => '')) === 'PONG';
    res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain' });
    res.end(ok ? 'ok\n' : 'redis is not ready\n');
    return;
  }
  if (url.pathname !== '/') {
    const body = 'not found\n';
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end(body);
    log(req, 404, body.length, started, '');
    return;
  }
  const { sid, fresh } = sessionOf(req);
  let status = 200;
  let body;
  let visits = 0;
  try {
    visits = await visit(sid);
    body = `Hello from nodeapp! Visit ${visits} of session ${sid.slice(0, 8)}.\n`;
  } catch (err) {
    status = 503;
    body = `redis: ${err.message}\n`;
  }
  const headers = { 'Content-Type': 'text/plain', 'X-Visits': String(visits) };
  if (fresh) headers['Set-Cookie'] = `sid=${sid}; Path=/; HttpOnly; SameSite=Lax`;
  res.writeHead(status, headers);
  res.end(body);
  log(req, status, Buffer.byteLength(body), started, ` session=${sid.slice(0, 8)} visits=${visits}`);
});

server.listen(PORT, '0.0.0.0', () => console.log(`nodeapp: listening on :${PORT}`));
redis.connect().catch((err) => console.error(`redis: ${err.message}`));
