// Logging reverse proxy between wildduck-webmail (or the walk-through) and eider-local.
//
// Every request is forwarded unchanged and written as one JSON line to PROXY_LOG:
// method, path, a summary of the request body, status, and the response body (in full,
// up to 16 KiB, for non-2xx; the first 4 KiB for 2xx, so the walk-through can read ids
// and seeds from it). Streams (text/event-stream) are logged when they start and when
// they end. Requests the walk-through makes itself carry `x-harness: 1` (not forwarded)
// and are logged with `"by": "harness"`; everything else is `"by": "client"`.
//
// A small control API: `POST /__harness/step {"step": "<name>"}` names the current step,
// which every following log line carries.
//
// Env: PROXY_LISTEN (host:port), PROXY_TARGET (http://host:port), PROXY_LOG (file),
// PROXY_ACCESS_TOKEN (optional: eider-local's EIDER_ACCESS_TOKEN; a request carrying it is
// logged as `"accessToken": "configured"` instead of the token's first characters).

import http from 'node:http';
import fs from 'node:fs';

const [listenHost, listenPort] = (process.env.PROXY_LISTEN || '127.0.0.1:0').split(':');
const target = new URL(process.env.PROXY_TARGET || 'http://127.0.0.1:8080');
const logFile = process.env.PROXY_LOG || 'api-log.jsonl';
const accessToken = process.env.PROXY_ACCESS_TOKEN || '';

const state = { step: '' };
const out = fs.createWriteStream(logFile, { flags: 'a' });

const OK_CAP = 4096;
const ERR_CAP = 16384;

function summarizeBody(buf, contentType) {
    if (!buf || !buf.length) {
        return undefined;
    }
    if (/json/i.test(contentType || '') || /^\s*[{[]/.test(buf.subarray(0, 1).toString())) {
        try {
            const obj = JSON.parse(buf.toString('utf8'));
            if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
                const copy = {};
                for (const [k, v] of Object.entries(obj)) {
                    if (k === 'raw' && typeof v === 'string') {
                        copy[k] = `<base64, ${v.length} chars>`;
                    } else if (typeof v === 'string' && v.length > 300) {
                        copy[k] = v.slice(0, 300) + `…<${v.length} chars>`;
                    } else {
                        copy[k] = v;
                    }
                }
                return copy;
            }
            return obj;
        } catch {
            // fall through
        }
    }
    const s = buf.toString('utf8');
    return s.length > 500 ? s.slice(0, 500) + `…<${s.length} bytes>` : s;
}

function parseMaybeJson(s) {
    try {
        return JSON.parse(s);
    } catch {
        return s;
    }
}

// keeps the shape of a JSON answer but cuts long strings and long arrays
function shrink(v, depth) {
    if (typeof v === 'string') {
        return v.length > 400 ? v.slice(0, 400) + `…<${v.length} chars>` : v;
    }
    if (Array.isArray(v)) {
        const a = v.slice(0, 25).map(x => shrink(x, depth + 1));
        if (v.length > 25) {
            a.push(`…<${v.length} items>`);
        }
        return a;
    }
    if (v && typeof v === 'object') {
        if (depth > 6) {
            return '<…>';
        }
        const o = {};
        for (const [k, x] of Object.entries(v)) {
            o[k] = shrink(x, depth + 1);
        }
        return o;
    }
    return v;
}

function write(line) {
    out.write(JSON.stringify(line) + '\n');
}

const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', c => chunks.push(c));
    req.on('end', () => {
        const body = Buffer.concat(chunks);

        // control API
        if (req.url.startsWith('/__harness/')) {
            let data = {};
            try {
                data = body.length ? JSON.parse(body.toString()) : {};
            } catch {
                // ignore
            }
            if (req.url.startsWith('/__harness/step')) {
                state.step = String(data.step || '');
            }
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify(state));
            return;
        }

        const started = Date.now();
        const by = req.headers['x-harness'] ? 'harness' : 'client';
        const headers = { ...req.headers, host: target.host };
        delete headers['x-harness'];
        const reqSummary = summarizeBody(body, req.headers['content-type']);
        headers['content-length'] = String(body.length);

        const upstream = http.request(
            {
                hostname: target.hostname,
                port: target.port,
                method: req.method,
                path: req.url,
                headers
            },
            up => {
                const ctype = up.headers['content-type'] || '';
                const isStream = /event-stream/i.test(ctype);
                const ok = up.statusCode >= 200 && up.statusCode < 300;
                const line = {
                    t: new Date(started).toISOString(),
                    step: state.step,
                    by,
                    method: req.method,
                    path: req.url,
                    accessToken: req.headers['x-access-token'] ? (req.headers['x-access-token'] === accessToken ? 'configured' : String(req.headers['x-access-token']).slice(0, 20)) : undefined,
                    req: reqSummary,
                    status: up.statusCode,
                    ctype: ctype || undefined,
                    location: up.headers.location
                };

                if (isStream) {
                    res.writeHead(up.statusCode, up.headers);
                    write({ ...line, stream: 'open' });
                    let captured = '';
                    up.on('data', c => {
                        if (captured.length < OK_CAP) {
                            captured += c.toString('utf8');
                        }
                        res.write(c);
                    });
                    let logged = false;
                    const done = how => {
                        if (!logged) {
                            logged = true;
                            write({ ...line, t: new Date().toISOString(), stream: 'closed', closedBy: how, ms: Date.now() - started, res: captured.slice(0, OK_CAP) });
                        }
                    };
                    up.on('end', () => {
                        done('server');
                        res.end();
                    });
                    res.on('close', () => {
                        done('client');
                        up.destroy();
                    });
                    up.on('close', () => done('server'));
                    return;
                }

                const resChunks = [];
                up.on('data', c => resChunks.push(c));
                up.on('end', () => {
                    const resBody = Buffer.concat(resChunks);
                    const resHeaders = { ...up.headers };
                    resHeaders['content-length'] = String(resBody.length);
                    delete resHeaders['transfer-encoding'];
                    res.writeHead(up.statusCode, resHeaders);
                    res.end(resBody);

                    line.ms = Date.now() - started;
                    line.bytes = resBody.length;
                    const textual = /json|text|xml/i.test(ctype) || !ctype;
                    if (textual) {
                        const s = resBody.toString('utf8');
                        const cap = ok ? OK_CAP : ERR_CAP;
                        const parsed = parseMaybeJson(s);
                        if (typeof parsed === 'object' && parsed !== null) {
                            line.res = shrink(parsed, 0);
                        } else {
                            line.res = s.length > cap ? s.slice(0, cap) + '…' : s;
                        }
                    } else {
                        line.res = `<${ctype}, ${resBody.length} bytes>`;
                    }
                    write(line);
                });
            }
        );
        upstream.on('error', err => {
            write({ t: new Date(started).toISOString(), step: state.step, by, method: req.method, path: req.url, req: reqSummary, status: 0, error: err.message });
            if (!res.headersSent) {
                res.writeHead(502, { 'content-type': 'application/json' });
            }
            res.end(JSON.stringify({ error: 'proxy: ' + err.message }));
        });
        res.on('close', () => {
            upstream.destroy();
        });
        upstream.end(body);
    });
});

server.keepAliveTimeout = 5000;
server.listen(Number(listenPort), listenHost, () => {
    const a = server.address();
    console.log(`proxy listening on ${a.address}:${a.port} -> ${target.origin}, log ${logFile}`);
});

process.on('SIGTERM', () => {
    out.end(() => process.exit(0));
});
