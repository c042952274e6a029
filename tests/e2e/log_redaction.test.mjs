// Secrets never reach the gateway's stdout (access log) or stderr (operational log) in
// any spelling (issue #11 item 3): requests carry a secret as token / X-Amz-Signature /
// … under percent-encoded names, inside nested URLs encoded once or twice, with '+' and
// mixed case; an upstream failure names an origin URL carrying one; a policy logs a URL
// carrying one. The whole captured output is searched for the secret and its encodings.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { get, startGateway, waitFor } from './lib/gateway.mjs';

const SECRET = 'Zq7SecretXw9';
const enc = encodeURIComponent;
const twice = (s) => enc(enc(s));

const POLICY = `
local hg = require("hlsgate")
return { on_request = function(req)
  if req.path == "/fetch" then -- an origin that refuses: the error names the URL
    return { origin = { type = "http", url = req.query.u, allow_private = true }, timeout = 2 }
  end
  if req.path == "/say" then hg.log("warn", "fetching", req.query.u) return "said" end
  return hg.json(200, { token = req.query.token and "present" or "absent" })
end }
`;

const nested = `https://o.example/a.m3u8?x=1&token=${SECRET}&X-Amz-Signature=${SECRET}`;
const TARGETS = [
  `/a?token=${SECRET}`,
  `/a?TOKEN=${SECRET}`,
  `/a?%74oken=${SECRET}`,
  `/a?%54%6f%4B%65%6E=${SECRET}`,
  `/a?%2574oken=${SECRET}`,
  `/a?x-amz-signature=${SECRET}&X-Amz-Credential=${SECRET}%2F20250101&X-Amz-Security-Token=${SECRET}`,
  `/a?access_token=${SECRET}&jwt=${SECRET}&sig=${SECRET}&password=${SECRET}&key=${SECRET}`,
  `/proxy?url=${enc(nested)}`,
  `/proxy?url=${twice(nested)}`,
  `/proxy?url=${enc(nested).toLowerCase()}`,
  `/proxy?url=${enc(nested).replace(/%2F/g, '/')}`,
  `/proxy?url=${enc(`https://o/p?url=${enc(nested)}`)}`,
  `/proxy?url=${enc(`https://o/a?q=a+b&Token=${SECRET}`)}`,
  `/proxy/${enc(nested)}`,
];

describe('no secret in the logs, in any spelling', () => {
  let gw;
  before(async () => {
    gw = await startGateway({ policy: POLICY, workers: 1 });
  });
  after(async () => {
    const { code } = await gw.stop();
    assert.equal(code, 0, gw.stderrText.slice(-3000));
  });

  it('serves the requests, then finds no secret in stdout or stderr', async () => {
    for (const t of TARGETS) {
      for (let k = 0; k < 2; k++) { // the second from the log's memo of recent targets
        const res = await get(gw.port, t);
        assert.ok(res.status < 500, `${t}: ${res.status}`);
      }
    }
    await waitFor(() => gw.accessLog().length >= 2 * TARGETS.length, 5000, 'access log lines');
    const lines = gw.accessLog();
    for (let i = 0; i < TARGETS.length; i++) assert.equal(lines[2 * i + 1].path, lines[2 * i].path, TARGETS[i]);
    // the decoder accepted the encoded name: the token was seen by the policy
    assert.equal(JSON.parse((await get(gw.port, `/a?%74oken=${SECRET}`)).body).token, 'present');
    const bad = await get(gw.port, `/fetch?u=${enc(`http://127.0.0.1:1/a.m3u8?X-Amz-Signature=${SECRET}&token=${SECRET}`)}`);
    assert.ok(bad.status >= 500);
    assert.equal((await get(gw.port, `/say?u=${enc(nested)}`)).body, 'said');
    await gw.waitForStderr(/fetching/);
    const out = gw.stdoutText + gw.stderrText;
    assert.ok(gw.accessLog().length >= 2 * TARGETS.length, 'one access-log line per request');
    for (const form of [SECRET, enc(SECRET), twice(SECRET), SECRET.toLowerCase(), 'Zq7Secret', 'SecretXw9']) {
      const at = out.indexOf(form);
      assert.equal(at, -1, `"${form}" in the output: …${out.slice(Math.max(0, at - 200), at + 50)}`);
    }
    assert.match(gw.stdoutText, /REDACTED/);
  });
});
