// s3server.mjs — a private, signature-verifying S3 for the e2e tests.
//
// Starts @20minutes/s3rver 5.0.0 (as a library: its CLI wants Node 24) on 127.0.0.1 at
// an ephemeral port, in a fresh temp directory, with one bucket and one access key pair.
// s3rver verifies SigV4 (header-signed and presigned; a mismatch is 403
// SignatureDoesNotMatch) but lets anonymous requests through, so a middleware in front
// answers 403 AccessDenied to every request that carries no signature at all: the
// bucket is really private, as in production (SPEC §12).
//
//   const s3 = await startS3Server({ bucket: 'hls-bucket', accessKey, secretKey });
//   await s3.putObject('video/seg 001.ts', Buffer.from('...'), 'video/mp2t');
//   ... s3.endpoint === 'http://127.0.0.1:<port>' ...
//   await s3.close();
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';

const require = createRequire(import.meta.url);
const S3rver = require('@20minutes/s3rver');
const AWSAccount = require('@20minutes/s3rver/lib/models/account');
const S3Object = require('@20minutes/s3rver/lib/models/object');

const DEFAULT_KEY = 'S3RVER';
const CORS_ANY = '<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>' +
                 '<AllowedMethod>HEAD</AllowedMethod><AllowedHeader>*</AllowedHeader></CORSRule></CORSConfiguration>'; // s3rver's built-in key pair (S3RVER/S3RVER)

// True when the request carries some form of AWS authentication (s3rver checks it).
function isSigned(ctx) {
  if (ctx.get('authorization')) return true;
  const q = ctx.query;
  return 'X-Amz-Algorithm' in q || 'X-Amz-Signature' in q || 'Signature' in q;
}

function accessDenied(ctx) {
  ctx.status = 403;
  ctx.type = 'application/xml';
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>' +
    '<Message>Access Denied</Message></Error>';
}

/**
 * Starts a private S3 server.
 * @param {object} opts
 * @param {string} opts.bucket      bucket to create
 * @param {string} [opts.accessKey] access key id (default S3RVER)
 * @param {string} [opts.secretKey] secret (default S3RVER)
 * @param {boolean} [opts.cors]     let browsers on any origin GET objects (presigned media
 *                                  fetched by a player on another origin)
 * @returns {Promise<{endpoint: string, port: number, bucket: string, accessKey: string,
 *   secretKey: string, directory: string, putObject: Function, close: Function}>}
 */
export async function startS3Server({ bucket, accessKey = DEFAULT_KEY, secretKey = DEFAULT_KEY, cors = false } = {}) {
  if (!bucket) throw new Error('startS3Server: bucket is required');
  const directory = await mkdtemp(path.join(os.tmpdir(), 'hg-s3rver-'));
  // The account registry is process-wide: register our pair, and drop the well-known
  // default pair unless it is the one asked for, so no one else can sign for the bucket.
  AWSAccount.DUMMY_ACCOUNT.createKeyPair(accessKey, secretKey);
  if (accessKey !== DEFAULT_KEY) AWSAccount.DUMMY_ACCOUNT.revokeAccessKey(DEFAULT_KEY);

  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket, configs: cors ? [CORS_ANY] : [] }],
    allowMismatchedSignatures: false,
    resetOnClose: false,
  });
  // First in the chain: unsigned requests never reach s3rver (CORS preflights do). Every
  // request is logged so tests can see who fetched what, and how it was signed.
  const requests = [];
  server.middleware.unshift(async (ctx, next) => {
    requests.push({ method: ctx.method, path: ctx.path, query: { ...ctx.query },
                    presigned: 'X-Amz-Signature' in ctx.query, headerSigned: !!ctx.get('authorization') });
    if (ctx.method === 'OPTIONS' || isSigned(ctx)) return next();
    accessDenied(ctx);
  });
  const { port } = await server.run();

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    bucket,
    accessKey,
    secretKey,
    directory,
    requests,
    /** Stores an object directly (no HTTP), resolving once it is on disk. */
    async putObject(key, body, contentType = 'binary/octet-stream') {
      const content = Readable.from([Buffer.isBuffer(body) ? body : Buffer.from(body)]);
      await server.store.putObject(new S3Object(bucket, key, content, { 'content-type': contentType }));
    },
    async close() {
      await server.close();
      if (accessKey !== DEFAULT_KEY) {
        AWSAccount.DUMMY_ACCOUNT.revokeAccessKey(accessKey);
        AWSAccount.DUMMY_ACCOUNT.createKeyPair(DEFAULT_KEY, DEFAULT_KEY); // as s3rver ships
      }
      await rm(directory, { recursive: true, force: true });
    },
  };
}
