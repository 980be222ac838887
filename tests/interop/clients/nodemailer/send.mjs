// Send one raw message with Nodemailer's SMTP transport, for tests/interop/test_nodemailer.py.
//
// The whole job is one JSON object, read from standard input (so a password or token
// never appears on a command line) or, for jobs without secrets, from argv[2]:
//
//   host, port          where to connect
//   secure              implicit TLS from the first byte (submissions)
//   requireTLS          STARTTLS or fail (never fall back to plaintext)
//   ignoreTLS           never STARTTLS, even when offered
//   ca                  PEM file of the only trust anchor, or null for Node's built-in roots
//   servername          TLS SNI and the name the certificate must cover (default: host)
//   name                EHLO name
//   auth                {user, pass} or {type: "OAuth2", user, accessToken}, or null
//   authMethod          PLAIN, LOGIN or CRAM-MD5 (Nodemailer chooses when absent)
//   forceAuth           AUTH even when the server does not advertise it
//   envelope            {from, to: [...]}
//   raw                 the message, sent byte for byte (Nodemailer's `raw` option)
//   timeoutMs           connection, greeting and socket timeouts (default 20000)
//
// It prints one JSON line: {ok: true, accepted, rejected, response, transcript} or
// {ok: false, error: {code, responseCode, response, command, message}, transcript},
// and exits 0 on success, 1 when sending failed, 2 when the job itself was unusable.
// `transcript` is the SMTP dialogue from Nodemailer's transaction log, "C: " for what
// the client sent and "S: " for what the server answered; Nodemailer writes
// "/* secret */" in place of passwords and tokens there.

import { readFileSync } from 'node:fs';
import { format } from 'node:util';
import nodemailer from 'nodemailer';

const DEFAULT_TIMEOUT_MS = 20000;

function readJob() {
    const text = process.argv.length > 2 ? process.argv[2] : readFileSync(0, 'utf-8');
    return JSON.parse(text);
}

// A bunyan-shaped logger that keeps only the SMTP dialogue.
function transcriptLogger(lines) {
    const log = (entry, message, ...args) => {
        const prefix = { client: 'C: ', server: 'S: ' }[entry && entry.tnx];
        if (prefix) {
            lines.push(prefix + format(message, ...args));
        }
    };
    return Object.fromEntries(['trace', 'debug', 'info', 'warn', 'error', 'fatal'].map(l => [l, log]));
}

function transportOptions(job, lines) {
    const timeout = job.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // Explicit, so NODE_TLS_REJECT_UNAUTHORIZED=0 in a developer's environment cannot
    // turn the certificate tests into passes.
    const tls = { rejectUnauthorized: true };
    if (job.ca) {
        tls.ca = readFileSync(job.ca, 'utf-8');
    }
    if (job.servername) {
        tls.servername = job.servername;
    }
    const options = {
        host: job.host,
        port: job.port,
        secure: Boolean(job.secure),
        requireTLS: Boolean(job.requireTLS),
        ignoreTLS: Boolean(job.ignoreTLS),
        name: job.name ?? 'nodemailer.client.test',
        tls,
        connectionTimeout: timeout,
        greetingTimeout: timeout,
        socketTimeout: timeout,
        logger: transcriptLogger(lines),
        debug: true
    };
    if (job.servername) {
        options.servername = job.servername;
    }
    if (job.auth) {
        options.auth = job.auth;
    }
    if (job.authMethod) {
        options.authMethod = job.authMethod;
    }
    if (job.forceAuth) {
        options.forceAuth = true;
    }
    return options;
}

async function main() {
    let job;
    try {
        job = readJob();
    } catch (err) {
        process.stdout.write(JSON.stringify({ ok: false, error: { code: 'EJOB', message: err.message } }) + '\n');
        return 2;
    }
    const lines = [];
    const transport = nodemailer.createTransport(transportOptions(job, lines));
    try {
        const info = await transport.sendMail({
            envelope: job.envelope,
            raw: Buffer.from(job.raw, 'utf-8')
        });
        const result = {
            ok: true,
            accepted: info.accepted,
            rejected: info.rejected,
            response: info.response,
            transcript: lines
        };
        process.stdout.write(JSON.stringify(result) + '\n');
        return 0;
    } catch (err) {
        const error = {
            code: err.code ?? null,
            responseCode: err.responseCode ?? null,
            response: err.response ?? null,
            command: err.command ?? null,
            message: err.message,
            // Node's own TLS error code, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE, when Nodemailer
            // replaced it with its own (ESOCKET, ETLS).
            originalCode: err.originalCode ?? null,
            reason: err.reason ?? null
        };
        process.stdout.write(JSON.stringify({ ok: false, error, transcript: lines }) + '\n');
        return 1;
    } finally {
        transport.close();
    }
}

process.exitCode = await main();
